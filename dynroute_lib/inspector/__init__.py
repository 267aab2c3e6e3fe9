"""Per-image route inspector (paper Sec. 4.3, Fig. 5 for one image): records, figures, widget.

``records`` computes and caches what is shown for one image (prediction, gates, live / computed nodes, FLOPs)
and loads the models to inspect; ``view`` draws a record headless (matplotlib ``Figure``); ``widget`` is the
stock-ipywidgets front end over both (notebook 05). Submodules are imported by name; only ``widget`` needs
ipywidgets.
"""
