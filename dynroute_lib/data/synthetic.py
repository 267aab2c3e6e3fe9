"""Embedded default data set: procedurally generated street-like scenes ("synthetic"; not in the paper).

Not real data. Each scene is drawn with numpy + PIL from a seeded generator: sky, a row of
buildings on the horizon (sometimes a near facade), a perspective road with sidewalks, and
cars, pedestrians and poles (with signs) placed at random depths. Object size is proportional
to the distance of its ground contact point below the horizon, so the same class appears from a
few pixels (near the horizon) to most of the image (next to the camera): the scale variation
that dynamic routing is meant to handle (paper §1). Appearance is randomised per object (any car
colour, random clothing, facade tints, Gaussian noise) so colour alone does not give the class.

Default size: train 96 + val 32 images of 128x256 (H x W), 7 classes (registry.SYNTHETIC_CLASSES),
no void pixels. Files are written to ``data/synthetic/<split>/{images,labels}/*.png`` (the layout
of the shared CamVid copy) atomically: generated into a temporary sibling directory, then renamed.
The same seed gives byte-identical files (each image has its own ``default_rng([seed, split, i])``
stream, so changing the count of one split does not change the other images).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .registry import SYNTHETIC_CLASSES, DataError

GENERATOR_VERSION = 1
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "data" / "synthetic"
DEFAULT_HW = (128, 256)
DEFAULT_COUNTS = {"train": 96, "val": 32}
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
ROAD, SIDEWALK, BUILDING, POLE, SKY, PEDESTRIAN, CAR = range(len(SYNTHETIC_CLASSES))


class _Canvas:
    """Draws every shape simultaneously into the RGB image, the class map and the instance map."""

    def __init__(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        self.img = Image.fromarray(rgb)
        self.lbl = Image.new("L", (w, h), SKY)
        self.ins = Image.new("I", (w, h), 0)
        self.d = [ImageDraw.Draw(x) for x in (self.img, self.lbl, self.ins)]
        self.classes: dict[int, int] = {}

    def new_instance(self, cls: int) -> int:
        inst = len(self.classes) + 1
        self.classes[inst] = cls
        return inst

    def shape(self, kind: str, xy, color, cls: int | None, inst: int = 0) -> None:
        """Draw ``kind`` (rectangle/ellipse/polygon); ``cls=None`` paints the RGB image only."""
        fills = (tuple(color),) if cls is None else (tuple(color), cls, inst)
        for draw, fill in zip(self.d, fills):
            getattr(draw, kind)(xy, fill=fill)


def _rgb(rng: np.random.Generator, base, jitter: float) -> np.ndarray:
    return np.clip(np.asarray(base, float) + rng.normal(0, jitter, 3), 0, 255).astype(int)


def _box(x0, y0, x1, y1):
    """Integer rectangle with at least one pixel (PIL needs x1 >= x0)."""
    x0, y0 = round(x0), round(y0)
    return [x0, y0, max(x0, round(x1)), max(y0, round(y1))]


def _car(c: _Canvas, rng, x: float, yb: float, h: float) -> None:
    w, inst = 2.2 * h, c.new_instance(CAR)
    paint = _rgb(rng, rng.integers(0, 256, 3), 10)
    c.shape("rectangle", _box(x - w / 2, yb - 0.62 * h, x + w / 2, yb - 0.15 * h), paint, CAR, inst)
    cabin = [(x - 0.32 * w, yb - 0.6 * h), (x - 0.2 * w, yb - h), (x + 0.2 * w, yb - h),
             (x + 0.3 * w, yb - 0.6 * h)]
    c.shape("polygon", [(round(a), round(b)) for a, b in cabin], paint, CAR, inst)
    glass = _rgb(rng, (150, 170, 190), 15)
    c.shape("rectangle", _box(x - 0.17 * w, yb - 0.93 * h, x + 0.17 * w, yb - 0.66 * h), glass,
            None)
    for dx in (-0.3 * w, 0.3 * w):
        wheel = _box(x + dx - 0.16 * h, yb - 0.32 * h, x + dx + 0.16 * h, yb)
        c.shape("ellipse", wheel, (25, 25, 25), CAR, inst)


def _pedestrian(c: _Canvas, rng, x: float, yb: float, h: float) -> None:
    inst, w = c.new_instance(PEDESTRIAN), max(1.0, 0.28 * h)
    skin = _rgb(rng, (200, 160, 130), 25)
    shirt, legs = rng.integers(0, 256, 3), rng.integers(0, 200, 3)
    head = _box(x - 0.35 * w, yb - h, x + 0.35 * w, yb - 0.82 * h)
    c.shape("ellipse", head, skin, PEDESTRIAN, inst)
    torso = _box(x - w / 2, yb - 0.82 * h, x + w / 2, yb - 0.45 * h)
    c.shape("rectangle", torso, shirt, PEDESTRIAN, inst)
    for sx in (-1, 1):
        xl = x + sx * 0.3 * w
        c.shape("rectangle", _box(xl - 0.15 * w, yb - 0.45 * h, xl + 0.15 * w, yb), legs,
                PEDESTRIAN, inst)


def _pole(c: _Canvas, rng, x: float, yb: float, h: float) -> None:
    inst, w = c.new_instance(POLE), max(1.0, 0.03 * h)
    metal = _rgb(rng, (110, 110, 115), 20)
    c.shape("rectangle", _box(x - w / 2, yb - h, x + w / 2, yb), metal, POLE, inst)
    if rng.random() < 0.6:  # traffic sign on top, labelled as part of the pole
        s = 0.12 * h
        kind = "ellipse" if rng.random() < 0.5 else "rectangle"
        color = [(200, 30, 30), (30, 60, 180), (230, 200, 20)][rng.integers(3)]
        sign = _box(x - s / 2, yb - h, x + s / 2, yb - h + s)
        c.shape(kind, sign, _rgb(rng, color, 15), POLE, inst)


def _buildings(c: _Canvas, rng, W: int, yh: int, H: int) -> None:
    x = -rng.uniform(0, 0.1 * W)
    while x < W:
        bw, bh = rng.uniform(0.08, 0.3) * W, rng.uniform(0.2, 1.0) * yh
        if rng.random() < 0.15:  # gap with sky behind
            x += bw * 0.5
            continue
        inst, facade = c.new_instance(BUILDING), _rgb(rng, (130, 115, 100), 35)
        c.shape("rectangle", _box(x, yh - bh, x + bw, yh), facade, BUILDING, inst)
        win = np.clip(facade * rng.uniform(0.4, 1.4), 0, 255).astype(int)
        step = rng.uniform(5, 10)
        for wy in np.arange(yh - bh + 2, yh - 4, step):
            for wx in np.arange(x + 2, x + bw - 3, step):
                c.shape("rectangle", _box(wx, wy, wx + step / 2.5, wy + step / 2), win, None)
        x += bw
    if rng.random() < 0.3:  # near facade in perspective: one object covering ~20-35% of the image
        x1, left = rng.uniform(0.3, 0.5) * W, rng.random() < 0.5
        quad = [(0, 0), (x1, 0.3 * yh), (x1, yh + 2), (0, H)]
        if not left:
            quad = [(W - 1 - a, b) for a, b in quad]
        inst, facade = c.new_instance(BUILDING), _rgb(rng, (140, 120, 100), 35)
        c.shape("polygon", [(round(a), round(b)) for a, b in quad], facade, BUILDING, inst)
        for k in np.arange(0.1, 1.0, 0.15):  # vertical window stripes (appearance only)
            xs = k * x1 if left else W - 1 - k * x1
            line = [(round(xs), round(0.3 * yh * k)), (round(xs), round(yh + (H - yh) * (1 - k)))]
            c.shape("line", line, np.clip(facade * 0.6, 0, 255).astype(int), None)


def render_scene(rng: np.random.Generator, hw: tuple[int, int] = DEFAULT_HW
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
    """Draw one street scene.

    Args:
        rng: Source of randomness (fully determines the scene).
        hw: Image size ``(H, W)``.

    Returns:
        ``(image uint8 [H, W, 3], label uint8 [H, W], instances int32 [H, W], {instance: class})``;
        instance 0 = stuff (sky, road, sidewalk).
    """
    H, W = hw
    yh = int(H * rng.uniform(0.35, 0.55))
    top, bottom = _rgb(rng, (90, 140, 210), 20), _rgb(rng, (200, 215, 230), 15)
    ramp = np.linspace(0, 1, yh + 1)[:, None, None]
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[: yh + 1] = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    c = _Canvas(rgb)
    g = H - yh  # ground height in pixels: scale of an object = depth t * g
    c.shape("rectangle", [0, yh, W - 1, H - 1], _rgb(rng, (175, 165, 150), 20), SIDEWALK)
    xv, hw0, hwb = rng.uniform(0.35, 0.65) * W, 0.02 * W, rng.uniform(0.35, 0.6) * W
    road = [(xv - hw0, yh), (xv + hw0, yh), (xv + hwb, H), (xv - hwb, H)]
    c.shape("polygon", [(round(a), round(b)) for a, b in road], _rgb(rng, (80, 80, 85), 10), ROAD)
    for t in np.arange(0.05, 1.0, 0.12):  # dashed centre line (appearance only)
        dash = _box(xv - 0.5 - t, yh + t * g, xv + 0.5 + t, yh + (t + 0.05) * g)
        c.shape("rectangle", dash, (220, 220, 210), None)
    _buildings(c, rng, W, yh, H)

    def half_width(t):
        return hw0 + (hwb - hw0) * t

    objects = []  # (depth t, kind, x)
    for _ in range(rng.integers(1, 6)):
        t = rng.uniform(0.04, 1.0) ** 1.5  # biased to the far (small) end
        objects.append((t, "car", xv + rng.uniform(-0.7, 0.7) * half_width(t)))
    for _ in range(rng.integers(0, 7)):
        t = rng.uniform(0.04, 1.0) ** 1.5
        side = rng.choice([-1, 1])
        objects.append((t, "ped", xv + side * (half_width(t) + rng.uniform(0.0, 0.4) * W * t)))
    for _ in range(rng.integers(1, 5)):
        t = rng.uniform(0.05, 1.0)
        objects.append((t, "pole", xv + rng.choice([-1, 1]) * half_width(t) * 1.15))
    draw = {"car": (_car, 1.3), "ped": (_pedestrian, 1.6), "pole": (_pole, 2.5)}
    for t, kind, x in sorted(objects, key=lambda o: o[0]):  # far to near: painter's occlusion
        fn, k = draw[kind]
        fn(c, rng, x, yh + t * g, max(2.0, k * t * g))

    img = np.asarray(c.img, np.float32) * rng.uniform(0.8, 1.15) + rng.normal(0, 4, (H, W, 3))
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img, np.asarray(c.lbl, np.uint8).copy(), np.asarray(c.ins, np.int32).copy(), c.classes


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The independent random stream of image ``index`` of ``split``."""
    return np.random.default_rng([seed, _SPLIT_CODES[split], index])


def _meta(seed: int, hw: tuple[int, int], counts: dict[str, int]) -> dict:
    return {"generator": "dynroute_lib.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
            "hw": list(hw), "counts": dict(counts), "classes": list(SYNTHETIC_CLASSES),
            "note": "procedurally generated street-like scenes, not real data"}


def generate_synthetic(out_dir: Path, seed: int = 0, hw: tuple[int, int] = DEFAULT_HW,
                       counts: dict[str, int] | None = None) -> Path:
    """Write the data set into ``out_dir`` (non-atomic; see :func:`ensure_synthetic`)."""
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    out_dir = Path(out_dir)
    for split, n in counts.items():
        (out_dir / split / "images").mkdir(parents=True, exist_ok=True)
        (out_dir / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, lbl, _, _ = render_scene(scene_rng(seed, split, i), hw)
            name = f"{split}_{i:04d}.png"
            Image.fromarray(img).save(out_dir / split / "images" / name, compress_level=1)
            Image.fromarray(lbl).save(out_dir / split / "labels" / name, compress_level=9)
    (out_dir / "meta.json").write_text(json.dumps(_meta(seed, hw, counts), indent=1) + "\n")
    return out_dir


def _is_complete(root: Path, meta: dict) -> bool:
    try:
        if json.loads((root / "meta.json").read_text()) != meta:
            return False
    except (OSError, ValueError):
        return False
    return all(len(list((root / s / "labels").glob("*.png"))) == n
               for s, n in meta["counts"].items())


def ensure_synthetic(root: Path | None = None, seed: int = 0, hw: tuple[int, int] = DEFAULT_HW,
                     counts: dict[str, int] | None = None, force: bool = False) -> Path:
    """Generate the synthetic set at ``root`` unless an identical one is already there.

    Generation happens in a temporary sibling directory that is renamed into place, so a
    concurrent reader never sees a half-written set; if another process wins the race, its
    (identical) result is kept.

    Returns:
        The data set root.
    """
    root = Path(DEFAULT_ROOT if root is None else root)
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    meta = _meta(seed, tuple(hw), counts)
    if not force and _is_complete(root, meta):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-tmp-", dir=root.parent))
    try:
        generate_synthetic(tmp, seed, hw, counts)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700; the set should be readable like any folder
        old = None
        if root.exists():  # stale or different parameters: move aside, then swap in
            old = root.parent / f".{root.name}-old-{os.getpid()}"
            os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            if not _is_complete(root, meta):
                raise DataError(f"{root}: could not install the generated synthetic set") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
