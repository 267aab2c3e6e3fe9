"""Training and evaluation engine (paper Sec. 4.1 recipe, Sec. 4 evaluation protocol; spec Sec. 5).

``train`` (the recipe, resumable, DDP), ``evaluate`` (mIoU, per-image FLOPs and gate records), ``checkpoint``
(the one writer and loader of checkpoints), ``common_route`` (Common-A/B/C from a checkpoint), and their parts:
``schedule`` (LR, budget weight w(t), drop path), ``optim`` (SGD groups, clipping), ``precise_bn``,
``metrics``, ``dist`` (device, torchrun/DDP) and ``csv_log``. Submodules are imported by name.
"""
