"""The paper's numbers, all in one place: Tables 1-4 of Li et al., CVPR 2020 (Sec. 4; model spec Sec. 6.1-6.4).

Pure data (no imports): every layer may read it. ``PAPER`` holds each table row's mIoU, GFLOPs (mean, max,
min) and parameters; ``TABLES`` the rows of each table; ``STATIC`` the static columns (params, GFLOPs at
1024x2048 with every path open) that ``flops`` and ``analysis.static_costs`` compare against; ``TABLE1_MODELED``
the params / GFLOPs of the five classic architectures modeled as routes (``routes.modeled``).
"""
from __future__ import annotations

# preset -> (mIoU %, GFLOPs avg, max, min, params M); max/min only where Table 1 prints them.
PAPER = {
    "fcn32s": (66.9, 35.1, 35.1, 35.1, 2.9), "deeplabv3": (67.0, 42.5, 42.5, 42.5, 3.7),
    "unet": (71.6, 53.9, 53.9, 53.9, 6.1), "hrnetv2": (72.5, 62.5, 62.5, 62.5, 5.4),
    "autodeeplab": (67.2, 33.1, 33.1, 33.1, 2.5), "common_a": (71.6, 41.6, 41.6, 41.6, 4.1),
    "common_b": (73.0, 53.7, 53.7, 53.7, 4.3), "common_c": (73.2, 57.1, 57.1, 57.1, 4.5),
    "dynamic_a": (72.8, 44.9, 48.2, 43.5, 17.8), "dynamic_b": (73.8, 58.7, 63.5, 56.8, 17.8),
    "dynamic_c": (74.6, 66.6, 71.6, 64.3, 17.8),
    "cell_bottleneck": (73.7, 1134.8, None, None, 203.9), "cell_mbconv": (75.0, 323.8, None, None, 48.2),
    "cell_sep1": (71.2, 81.4, None, None, 12.6), "cell_sep2": (76.1, 119.5, None, None, 17.8),
    "cell_sep3": (75.2, 153.8, None, None, 22.9),
    "fix_l16": (74.5, 103.1, 103.1, 103.1, 15.3), "act_softmax": (74.1, 120.0, None, None, 17.8),
    "act_sigmoid": (75.9, 120.0, None, None, 17.8), "act_relu_tanh": (76.1, 119.5, None, None, 17.8),
    "dynamic_raw_l16": (76.1, 119.5, None, None, 17.8),
}
# Rows of each table: (preset, label, extra columns).
TABLES = {
    "table_1": [("fcn32s", "FCN-32s", {"dynamic": False, "modeled_from": "FCN-32s"}),
                ("deeplabv3", "DeepLabV3", {"dynamic": False, "modeled_from": "DeepLabV3"}),
                ("unet", "U-Net", {"dynamic": False, "modeled_from": "U-Net"}),
                ("hrnetv2", "HRNetV2", {"dynamic": False, "modeled_from": "HRNetV2"}),
                ("autodeeplab", "Auto-DeepLab", {"dynamic": False, "modeled_from": "Auto-DeepLab"}),
                ("common_a", "Common-A", {"dynamic": False, "modeled_from": "Dynamic-A"}),
                ("common_b", "Common-B", {"dynamic": False, "modeled_from": "Dynamic-B"}),
                ("common_c", "Common-C", {"dynamic": False, "modeled_from": "Dynamic-C"}),
                ("dynamic_a", "Dynamic-A", {"dynamic": True, "modeled_from": "Routing-Space"}),
                ("dynamic_b", "Dynamic-B", {"dynamic": True, "modeled_from": "Routing-Space"}),
                ("dynamic_c", "Dynamic-C", {"dynamic": True, "modeled_from": "Routing-Space"})],
    "table_2": [("cell_bottleneck", "BottleNeck", {}), ("cell_mbconv", "MBConv", {}),
                ("cell_sep1", "SepConv3x3", {}), ("cell_sep2", "SepConv3x3x2", {}),
                ("cell_sep3", "SepConv3x3x3", {})],
    "table_3": [("fix_l16", "Fix", {}), ("act_softmax", "Softmax", {}), ("act_sigmoid", "Sigmoid", {}),
                ("act_relu_tanh", "max(0, Tanh)", {})],
    "table_4": [("fix_l16", "Network-Fix", {"budget_lambda2_mu": "-"}),
                ("dynamic_a", "Dynamic-A", {"budget_lambda2_mu": "0.8/0.1"}),
                ("dynamic_b", "Dynamic-B", {"budget_lambda2_mu": "0.5/0.1"}),
                ("dynamic_c", "Dynamic-C", {"budget_lambda2_mu": "0.5/0.2"}),
                ("dynamic_raw_l16", "Dynamic-Raw", {"budget_lambda2_mu": "0.0/0.0"})],
}
# Static columns (params M, GFLOPs at 1024x2048) of the presets of Tables 1-4 that have them, plus Layer33
# (from the paper's Cityscapes table, params not given).
STATIC_PRESETS = ("dynamic_raw_l16", "fix_l16", "cell_sep1", "cell_sep2", "cell_sep3", "cell_bottleneck",
                  "cell_mbconv", "act_softmax", "act_sigmoid", "act_relu_tanh", "fcn32s", "deeplabv3", "unet",
                  "hrnetv2", "autodeeplab")
STATIC = {"dynamic_raw_l33": (None, 242.3), **{p: (PAPER[p][4], PAPER[p][1]) for p in STATIC_PRESETS}}
# Table 1, the modeled classic architectures (Cityscapes, 1024x2048): params (M), GFLOPs.
TABLE1_MODELED = {p: STATIC[p] for p in ("fcn32s", "deeplabv3", "unet", "hrnetv2", "autodeeplab")}
