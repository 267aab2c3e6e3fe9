"""Raw label statistics of a data set: class frequencies and the distribution of object sizes (notebook 00).

The paper's premise (Sec. 1, Fig. 1) is that object scales vary widely within and across images; these helpers
measure that on a data set's raw labels at native resolution: 4-connected regions of one class, their areas as
a fraction of the image, quantiles and log-area histograms per class.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def regions(label: np.ndarray, ignore: int = 255) -> list[tuple[int, int]]:
    """``(class, area px)`` of every 4-connected region of one label value (run-length union-find, no scipy)."""
    parent: list[int] = []

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    runs, prev = [], []
    width = label.shape[1]
    for row in label:
        cut = np.flatnonzero(np.diff(row)) + 1
        cur, j = [], 0
        for s, e in zip(np.r_[0, cut], np.r_[cut, width]):
            c = int(row[s])
            if c == ignore:
                continue
            rid = len(parent)
            parent.append(rid)
            runs.append((rid, int(e - s), c))
            while j < len(prev) and prev[j][1] <= s:
                j += 1
            k = j
            while k < len(prev) and prev[k][0] < e:
                if prev[k][2] == c:
                    a, b = find(rid), find(prev[k][3])
                    parent[max(a, b)] = min(a, b)
                k += 1
            cur.append((s, e, c, rid))
        prev = cur
    area: dict[int, list[int]] = {}
    for rid, n, c in runs:
        area.setdefault(find(rid), [c, 0])[1] += n
    return [(c, n) for c, n in area.values()]


def scan_dataset(data: str, data_root: str = "", splits=("train", "val"), limit: int | None = None):
    """Raw label statistics: ``(summary, class frequency, regions)`` DataFrames, plus a few val samples."""
    from ..data import build_dataset
    summary, pix, regs, samples = [], [], [], []
    for split in splits:
        ds = build_dataset(data, data_root or None, split, train=False, limit=limit)
        sizes, ignored, total = set(), 0, 0
        for i in range(len(ds)):
            image, label, _ = ds.load_raw(i)
            h, w = label.shape
            sizes.add(f"{h}x{w}")
            counts = np.bincount(label.reshape(-1), minlength=256)
            ignored, total = ignored + counts[ds.info.ignore_index], total + h * w
            pix.append(counts[:ds.info.num_classes])
            regs += [(split, i, c, n, n / (h * w)) for c, n in regions(label, ds.info.ignore_index)]
            if split == splits[-1] and len(samples) < 4:
                samples.append((image, label))
        summary.append({"data": data, "split": split, "num_images": len(ds), "image_hw": " ".join(sorted(sizes)),
                        "num_classes": ds.info.num_classes, "ignored_pixels_pct": 100 * ignored / max(total, 1)})
    info = ds.info
    p = np.stack(pix)
    freq = pd.DataFrame({"class": info.class_names, "pixels_pct": 100 * p.sum(0) / p.sum(),
                         "images_with_class_pct": 100 * (p > 0).mean(0)})
    reg = pd.DataFrame(regs, columns=["split", "image", "class_id", "area_px", "area_frac"])
    reg["class"] = [info.class_names[c] for c in reg["class_id"]]
    return pd.DataFrame(summary), freq, reg, samples


def region_size_summary(reg: pd.DataFrame, min_area_px: int = 16) -> pd.DataFrame:
    """Per class: region count and area quantiles (% of the image), regions below ``min_area_px`` dropped."""
    r = reg[reg["area_px"] >= min_area_px]
    q = r.groupby("class", sort=False)["area_frac"].quantile([0.05, 0.25, 0.5, 0.75, 0.95]).unstack() * 100
    q.columns = [f"area_p{int(c * 100):02d}_pct" for c in q.columns]
    n = r.groupby("class", sort=False).agg(num_regions=("area_px", "size"), area_max_pct=("area_frac", "max"))
    n["area_max_pct"] *= 100
    return n.join(q).reset_index()


def region_size_hist(reg: pd.DataFrame, min_area_px: int = 16, bins: int = 24) -> pd.DataFrame:
    """Histogram of log10(region area / image area) per class (tidy: class, bin edges, count)."""
    r = reg[reg["area_px"] >= min_area_px]
    edges = np.linspace(np.log10(max(r["area_frac"].min(), 1e-7)) if len(r) else -6, 0, bins + 1)
    rows = []
    for cls, g in r.groupby("class", sort=False):
        counts, _ = np.histogram(np.log10(g["area_frac"]), bins=edges)
        rows += [{"class": cls, "log10_area_frac_lo": round(lo, 4), "log10_area_frac_hi": round(hi, 4),
                  "count": int(n)}
                 for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


def overview_scale(summary: pd.DataFrame) -> dict:
    """Scale record of the overview figures: data set, images per split, native image size (no training)."""
    sizes = sorted({s for hw in summary["image_hw"] for s in str(hw).split()})
    return {"data": str(summary["data"].iloc[0]),
            "images": " + ".join(f"{r.split} {r.num_images}" for r in summary.itertuples()) + " images",
            "resolution": sizes[0] if len(sizes) == 1 else f"{len(sizes)} sizes",
            "note": "raw labels at native size, no training"}
