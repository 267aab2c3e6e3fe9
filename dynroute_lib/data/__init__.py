"""Data layer (paper Sec. 4: Cityscapes, PASCAL VOC, CamVid): registry, readers, augmentation, sampling, synthetic set.

>>> from dynroute_lib.data import DATASETS, build_dataset
>>> ds = build_dataset("camvid", split="train", train=True, crop_hw=(240, 320))
>>> image, mask, meta = ds[0]  # float32 [3,H,W], int64 [H,W] (255 ignore), dict(name, orig_hw)
"""

from .datasets import (DEFAULT_ROOTS, DataWarning, SegmentationDataset, SyntheticStreets,
                       build_dataset, resolve_root)
from .registry import DATASETS, IGNORE_INDEX, DataError, DatasetInfo, get_info
from .synthetic import ensure_synthetic, generate_synthetic, render_scene
from .transforms import NORMALIZATIONS, SegTransform, denormalize, normalize, pad_to_multiple

__all__ = [
    "DATASETS", "DEFAULT_ROOTS", "IGNORE_INDEX", "NORMALIZATIONS", "DataError", "DataWarning",
    "DatasetInfo", "SegTransform", "SegmentationDataset", "SyntheticStreets", "build_dataset",
    "denormalize", "ensure_synthetic", "generate_synthetic", "get_info", "normalize",
    "pad_to_multiple", "render_scene", "resolve_root",
]
