"""``SegmentationDataset`` and ``build_dataset``: the data sets of paper Sec. 4 (docs/API_CONTRACT.md, Data section).

``ds[i]`` returns ``(image float32 [3, H, W] normalised, mask int64 [H, W] with ignore 255,
meta dict(name, orig_hw, path))``. Training samples are augmented per model spec §5.2;
evaluation samples are full images padded bottom/right to a multiple of 32 (§2.1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .readers import Listing, list_split, read_image, read_label
from .registry import DATASETS, DataError, DatasetInfo, get_info
from .synthetic import DEFAULT_ROOT as SYNTHETIC_ROOT
from .synthetic import ensure_synthetic
from .transforms import SegTransform

PROJ_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJ_ROOT / "data"
SHARED_CAMVID = PROJ_ROOT.parent / "shared" / "data" / "camvid"

DEFAULT_ROOTS: dict[str, Path] = {
    "cityscapes": DATA_DIR / "cityscapes",
    "voc": DATA_DIR / "VOCdevkit",
    "camvid": SHARED_CAMVID,
    "synthetic": SYNTHETIC_ROOT,
}


class DataWarning(UserWarning):
    """A file was usable only after a conversion (e.g. grayscale or RGBA image -> RGB)."""


class SegmentationDataset(Dataset):
    """Image/label pairs of one split, decoded lazily and transformed by ``transform``.

    Args:
        info: Registry entry of the data set.
        listing: Files and label lookup tables (from :mod:`readers`).
        transform: Callable ``(image_np, label_np) -> (image, mask, hw)``.
    """

    def __init__(self, info: DatasetInfo, listing: Listing, transform: SegTransform) -> None:
        self.info, self.listing, self.transform = info, listing, transform
        self.samples = listing.samples
        self._cache: dict | None = None

    def cache_decoded(self) -> "SegmentationDataset":
        """Keep every decoded image/label in memory after its first read (CamVid train: ~250 MB).

        On 2 CPU cores the JPEG decode is ~4 ms of the ~7 ms a 240x320 training sample costs; augmentation
        stays random per sample. Returns ``self``.
        """
        self._cache = {}
        return self

    def __len__(self) -> int:
        return len(self.samples)

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray, str | None]:
        """Decode sample ``index`` without transforms.

        Returns:
            ``(image uint8 [H, W, 3] RGB, label uint8 [H, W] class indices / 255, warning)``.

        Raises:
            DataError: Unreadable file, bad label values or image/label size mismatch.
        """
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        s = self.samples[index]
        image, warning = read_image(s.image)
        label = read_label(s.label, self.listing.luts[s.lut], self.listing.label_colors)
        if image.shape[:2] != label.shape:
            raise DataError(f"{s.label}: label size {label.shape[1]}x{label.shape[0]} differs "
                            f"from image {s.image.name} size {image.shape[1]}x{image.shape[0]}")
        if self._cache is not None:
            self._cache[index] = (image, label, warning)
        return image, label, warning

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        image, label, warning = self.load_raw(index)
        if warning:
            warnings.warn(warning, DataWarning, stacklevel=2)
        x, y, hw = self.transform(image, label)
        s = self.samples[index]
        return x, y, {"name": s.name, "orig_hw": hw, "path": str(s.image)}


def resolve_root(name: str, root: str | Path | None) -> Path:
    """The data root to use for ``name`` (default roots: see ``DEFAULT_ROOTS``)."""
    get_info(name)
    return Path(root).expanduser() if root is not None else DEFAULT_ROOTS[name]


def build_dataset(name: str, root: str | Path | None = None, split: str = "train",
                  train: bool = True, crop_hw: tuple[int, int] | None = None,
                  normalization: str = "official_bgr",
                  scale_range: tuple[float, float] = (0.5, 2.0),
                  resize_hw: tuple[int, int] | None = None,
                  limit: int | None = None) -> SegmentationDataset:
    """Build a segmentation data set.

    Args:
        name: ``"cityscapes"``, ``"voc"``, ``"camvid"`` or ``"synthetic"``.
        root: Data root; None = default (``data/<name>``, the shared CamVid copy for camvid,
            ``data/synthetic`` for synthetic, which is generated on first use).
        split: Split name (``train``/``val``/``test``; VOC also any ``ImageSets`` list name).
        train: Random training augmentation (True) or deterministic eval transform (False).
        crop_hw: Training crop ``(h, w)``; ignored in eval (full image).
        normalization: ``"official_bgr"`` (spec §2.1) or ``"imagenet_rgb"``.
        scale_range: Random scale factor range (training only).
        resize_hw: Resize every sample to ``(h, w)`` first (bilinear image, nearest label).
        limit: Keep only the first ``limit`` samples (smoke runs).

    Raises:
        ValueError: Unknown name or normalization (DataError is a ValueError subclass).
        DataError: Missing/empty root, unexpected layout, image without label.
    """
    info = get_info(name)
    transform = SegTransform(train, crop_hw, normalization, scale_range, resize_hw)
    path = resolve_root(name, root)
    if name == "synthetic" and (root is None or not path.exists()):
        ensure_synthetic(path)
    listing = list_split(name, path, split)
    if limit is not None:
        listing.samples = listing.samples[: max(0, int(limit))]
    return SegmentationDataset(info, listing, transform)


class SyntheticStreets(SegmentationDataset):
    """The embedded synthetic street scenes (generated on first use); see :mod:`synthetic`.

    Shorthand for ``build_dataset("synthetic", root=root, split=split, train=train, **kwargs)``.
    """

    def __init__(self, split: str = "train", train: bool = True,
                 root: str | Path | None = None, **kwargs) -> None:
        ds = build_dataset("synthetic", root=root, split=split, train=train, **kwargs)
        super().__init__(ds.info, ds.listing, ds.transform)


__all__ = ["DATASETS", "DEFAULT_ROOTS", "DataWarning", "SegmentationDataset", "SyntheticStreets",
           "build_dataset", "resolve_root"]
