"""What the notebooks compute: the paper's Tables 1-4, Fig. 5 and data statistics, from our runs (paper Sec. 4).

``paper`` (the paper's numbers), ``tables`` (cache-or-train, evaluation, Tables 1-4), ``static_costs``
(params/FLOPs vs the static columns), ``route_stats`` (Fig. 5 in numbers), ``data_overview`` (object sizes,
Sec. 1), ``compare`` (the CPU comparison of issue 5), ``plots`` and ``route_plot`` (figures). Submodules are
imported by name.
"""
