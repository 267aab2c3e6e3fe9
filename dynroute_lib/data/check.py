"""Data set validation behind ``python -m dynroute_lib data check`` and before every training run (issues 4, 16;
the data sets of paper Sec. 4).

Decodes every image/label pair of a split (no augmentation) and gathers the sample count, the
image sizes and the class pixel frequencies. The first bad file stops the check with a
:class:`DataError` naming it; convertible images (grayscale, RGBA) only produce warnings.

:func:`validate_split` is the same per-pair check (``load_raw``: readable files, label values in the
data set's label set, label size = image size) run up front by the training engine, so a bad file fails
the run before anything is written instead of at the iteration that happens to sample it. Pairs that
passed are remembered by file size and mtime in a git-ignored cache (``data/.check_cache.json``), so a
repeated run re-decodes only new or changed files.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .datasets import DATA_DIR, build_dataset, resolve_root
from .registry import IGNORE_INDEX, get_info

CHECK_CACHE = DATA_DIR / ".check_cache.json"    # git-ignored (data/* is); {pair key: [sizes, mtimes]}


@dataclass
class CheckReport:
    """Summary of one validated split."""

    name: str
    root: Path
    split: str
    count: int = 0
    sizes: Counter = field(default_factory=Counter)  # (h, w) -> number of images
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # per label value
    warnings: list[str] = field(default_factory=list)
    note: str = ""

    def format(self) -> str:
        """Multi-line human-readable summary."""
        info = get_info(self.name)
        lines = [f"{self.name} split {self.split!r} at {self.root}: {self.count} image/label "
                 f"pairs, {info.num_classes} classes, ignore {info.ignore_index}"]
        if self.note:
            lines.append(f"note: {self.note}")
        sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in self.sizes.most_common(5))
        more = f" and {len(self.sizes) - 5} more" if len(self.sizes) > 5 else ""
        lines.append(f"image sizes (WxH): {sizes}{more}")
        total = max(1, int(self.pixels.sum()))
        lines.append("class pixel frequencies:")
        for i, cname in enumerate(info.class_names):
            lines.append(f"  {i:3d} {cname:<16s} {100.0 * self.pixels[i] / total:7.3f}%")
        lines.append(f"  {IGNORE_INDEX:3d} {'(ignore)':<16s} "
                     f"{100.0 * self.pixels[IGNORE_INDEX] / total:7.3f}%")
        if self.warnings:
            lines.append(f"{len(self.warnings)} file(s) needed conversion (see warnings)")
        return "\n".join(lines)


def check_dataset(name: str, root: str | Path | None = None, split: str = "train",
                  limit: int | None = None,
                  on_warning: Callable[[str], None] | None = None) -> CheckReport:
    """Validate a split; raises DataError (naming the file) at the first bad file.

    Args:
        name: Registry name.
        root: Data root (None = default).
        split: Split to check.
        limit: Check only the first ``limit`` pairs.
        on_warning: Called with each one-line warning as it occurs.
    """
    ds = build_dataset(name, root=root, split=split, train=False, limit=limit)
    report = CheckReport(name, resolve_root(name, root), split, note=ds.listing.note)
    for i in range(len(ds)):
        image, label, warning = ds.load_raw(i)
        if warning:
            report.warnings.append(warning)
            if on_warning:
                on_warning(warning)
        report.count += 1
        report.sizes[image.shape[:2]] += 1
        report.pixels += np.bincount(label.ravel(), minlength=256)
    return report



def _signature(*paths: Path) -> list[int]:
    out = []
    for p in paths:
        st = os.stat(p)
        out += [st.st_size, st.st_mtime_ns]
    return out


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}                                     # missing or damaged cache: check everything again
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, cache: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(cache, sort_keys=True))
        os.replace(tmp, path)                         # atomic: concurrent runs never read half a file
    except OSError:
        tmp.unlink(missing_ok=True)                   # a read-only data dir only costs the cache


def validate_split(name: str, root: str | Path | None = None, split: str = "train",
                   cache: str | Path | bool = True) -> int:
    """Check every image/label pair of a split before training; raises DataError naming the first bad file.

    A pair is checked by the same ``load_raw`` as ``data check`` (readable files, label values inside the
    data set's label set, label size equal to the image size). Pairs whose image and label size and
    mtime equal the cached ones are skipped; the passing ones are cached even when a later pair fails.

    Args:
        name: Registry name.
        root: Data root (None = default).
        split: Split to validate.
        cache: JSON cache of passed pairs: True = ``CHECK_CACHE``, False = none, or a path.

    Returns:
        The number of pairs decoded now (0 when every pair was cached).
    """
    ds = build_dataset(name, root=root, split=split, train=False)
    cache = CHECK_CACHE if cache is True else cache
    known = _read_cache(cache) if cache else {}
    fresh, decoded = {}, 0
    try:
        for i, s in enumerate(ds.samples):
            key = f"{name}|{Path(s.image).resolve()}|{Path(s.label).resolve()}"
            sig = _signature(s.image, s.label)
            if known.get(key) != sig:
                ds.load_raw(i)
                decoded += 1
            fresh[key] = sig
    finally:
        if cache and decoded:
            _write_cache(Path(cache), {**known, **fresh})
    return decoded
