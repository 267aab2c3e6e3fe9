"""Data set validation behind ``python -m dynroute_lib data check`` (issue 4; the data sets of paper Sec. 4).

Decodes every image/label pair of a split (no augmentation) and gathers the sample count, the
image sizes and the class pixel frequencies. The first bad file stops the check with a
:class:`DataError` naming it; convertible images (grayscale, RGBA) only produce warnings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .datasets import build_dataset, resolve_root
from .registry import IGNORE_INDEX, get_info


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

