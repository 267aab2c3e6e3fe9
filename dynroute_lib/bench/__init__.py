"""Measurements of this implementation on this machine (paper Sec. 3.3 "dynamic inference", Sec. 4.1 training).

``sparse``: dense vs per-sample sparse execution at a FLOPs keep rate (``python -m dynroute_lib bench sparse``);
``train_step``: training-step time of Dynamic-Raw vs Network-Fix (``python -m dynroute_lib bench train-step``).
"""
