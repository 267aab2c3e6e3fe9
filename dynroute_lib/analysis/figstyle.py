"""Conventions of every saved figure (issue 16): readable text, titles naming the run's scale, labels placed apart.

A figure under ``results/`` is read at its saved size, so text is at least :data:`MIN_FONT_PT` (9 pt) and
``io.save_figure`` refuses less than ``io.MIN_DPI`` (100 dpi): 9 pt is then at least 12.5 px. The title or
subtitle of each figure names the data set, the resolution / width and the iterations of the run, built by
:func:`caption` from the run's scale record (``ctx.scale()``, ``run.json["scale"]``, a benchmark's provenance),
never hard-coded. :func:`place_labels` annotates scatter points without overlaps (no adjustText dependency).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

MIN_FONT_PT = 9.0          # smallest text in any saved figure
FONT = 9.0                 # ticks, legends, point labels
LABEL = 10.0               # axis labels, panel titles
TITLE = 11.0               # figure title and subtitle

DATA_NAMES = {"camvid": "CamVid", "cityscapes": "Cityscapes", "voc": "PASCAL VOC 2012",
              "synthetic": "synthetic street scenes"}


def data_name(data: str | None) -> str:
    """Display name of a data set key (``"camvid"`` -> ``"CamVid"``); other strings pass through."""
    return DATA_NAMES.get(str(data), str(data)) if data else ""


def _hw(value) -> str:
    if isinstance(value, (list, tuple)):
        value = "x".join(map(str, value))
    return str(value).replace("x", "×")


def caption(scale: Mapping | None) -> str:
    """One line naming what a figure was computed on, from a scale record.

    Known keys, in order and each optional: ``data``, ``split``, ``images``, ``resolution`` (``"120x160"``),
    ``train_crop``, ``base_channels`` (width C0), ``iters`` (an int: iterations per model; a string as given,
    e.g. ``"untrained"``), ``batch``, ``profile``, ``note``. Example: ``CamVid · 120×160 px · crop 96×160 ·
    width C0=64 · 100 iterations per model · profile cpu``.
    """
    if not scale:
        return "scale of the run not recorded"
    s = dict(scale)
    parts = [data_name(s.get("data"))]
    if s.get("split"):
        parts.append(str(s["split"]))
    if s.get("images"):
        parts.append(f"{s['images']} images" if isinstance(s["images"], (int, np.integer)) else str(s["images"]))
    if s.get("resolution"):
        res = str(s["resolution"])
        parts.append(f"{_hw(res)} px" if "x" in res else f"{res} resolution")
    if s.get("train_crop"):
        parts.append(f"crop {_hw(s['train_crop'])}")
    if s.get("base_channels"):
        parts.append(f"width C0={s['base_channels']}")
    it = s.get("iters")
    if it is not None and it != "":
        parts.append(f"{it} iterations per model" if isinstance(it, (int, np.integer)) else str(it))
    if s.get("batch"):
        parts.append(f"batch {s['batch']}")
    if s.get("profile"):
        parts.append(f"profile {s['profile']}")
    if s.get("note"):
        parts.append(str(s["note"]))
    return " · ".join(p for p in parts if p)


def scale_record(model_config: Mapping, train_config: Mapping) -> dict:
    """The scale keys :func:`caption` reads (data, resolution, crop, iterations, batch, width), from a run's model
    and train config as dicts (``to_dict()``, a checkpoint's or ``train.json``'s ``model_config`` / ``train_config``)."""
    res = train_config.get("resize_hw")
    return {"data": train_config.get("data"), "resolution": "x".join(map(str, res)) if res else "native",
            "train_crop": "x".join(map(str, train_config["crop_hw"])), "iters": train_config.get("iters"),
            "batch": train_config.get("batch"), "base_channels": model_config.get("base_channels")}


def _wrap(text: str, width_in: float, size_pt: float) -> str:
    """Break ``text`` at its `` · `` separators into lines that fit ``width_in`` inches at ``size_pt``."""
    limit = max(20, int(width_in * 72 / (0.55 * size_pt)))
    lines, cur = [], ""
    for part in text.split(" · "):
        if cur and len(cur) + 3 + len(part) > limit:
            lines.append(cur)
            cur = part
        else:
            cur = f"{cur} · {part}" if cur else part
    return "\n".join([*lines, cur])


def titled(fig: Figure, title: str, scale: Mapping | None) -> Figure:
    """Set the figure title (first line) and the scale subtitle (next lines, wrapped to the figure width)."""
    width = fig.get_figwidth()
    fig.suptitle(f"{_wrap(title, width, TITLE)}\n{_wrap(caption(scale), width, TITLE)}", fontsize=TITLE)
    return fig


def agg_canvas(fig: Figure):
    """The figure's Agg canvas (attached if the figure has none), for measuring text without pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return fig.canvas


# ---- labels without overlaps -------------------------------------------------------------------------
_OFFSETS = [(6, 3, "left", "bottom"), (6, -3, "left", "top"), (-6, 3, "right", "bottom"),
            (-6, -3, "right", "top"), (0, 8, "center", "bottom"), (0, -8, "center", "top")]


def _clusters(px: np.ndarray, merge_px: float) -> list[list[int]]:
    """Groups of points closer than ``merge_px`` (display pixels), in input order."""
    groups: list[list[int]] = []
    for i, p in enumerate(px):
        for g in groups:
            if np.hypot(*(px[g].mean(0) - p)) < merge_px:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0) * max(h, 0)


def place_labels(ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], *, fontsize: float = FONT,
                 merge_px: float = 7.0, point_px: float = 5.0, avoid=None) -> list:
    """Annotate points so that no two labels overlap and no label covers a point.

    Points closer than ``merge_px`` share one label (one name per line). Each label tries offsets around its
    point, then the same ones pushed further out, and takes the first whose box stays inside the axes and
    overlaps no placed label and no other point; when none fits, the least-overlapping one gets a leader line.
    Call it last (after limits, scales and titles are set): it draws the figure once to measure text.
    ``avoid`` = ``(xs, ys)`` of further markers (unlabelled series) that labels must not cover either.

    Returns:
        The ``Annotation`` artists (``gid="point-label"``).
    """
    fig = ax.figure
    renderer = agg_canvas(fig).get_renderer()
    fig.draw_without_rendering()                     # run the layout so the axes have their final position
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    px = ax.transData.transform(np.c_[xs, ys][ok]) if ok.any() else np.zeros((0, 2))
    names = [str(n) for n, k in zip(labels, ok) if k]
    from matplotlib.transforms import Bbox
    point_boxes = [Bbox.from_extents(x - point_px, y - point_px, x + point_px, y + point_px) for x, y in px]
    if avoid is not None:
        ax_, ay_ = (np.asarray(v, dtype=float) for v in avoid)
        keep = np.isfinite(ax_) & np.isfinite(ay_)
        extra = ax.transData.transform(np.c_[ax_, ay_][keep]) if keep.any() else np.zeros((0, 2))
        point_boxes += [Bbox.from_extents(x - point_px, y - point_px, x + point_px, y + point_px) for x, y in extra]
    placed, out, frame = [], [], ax.get_window_extent(renderer)
    data_xy = np.c_[xs, ys][ok]
    for group in sorted(_clusters(px, merge_px), key=lambda g: -px[g, 1].mean()):
        text = "\n".join(dict.fromkeys(names[i] for i in group))
        xy = tuple(ax.transData.inverted().transform(px[group].mean(0))) if len(group) > 1 else tuple(data_xy[group[0]])
        best = None
        for reach in (1, 2, 3.5, 5, 7):
            for dx, dy, ha, va in _OFFSETS:
                t = ax.annotate(text, xy, xytext=(dx * reach, dy * reach), textcoords="offset points", ha=ha,
                                va=va, fontsize=fontsize, gid="point-label", annotation_clip=False)
                t.set_in_layout(False)
                box = t.get_window_extent(renderer).expanded(1.0, 1.0).padded(1.5)
                others = [b for j, b in enumerate(point_boxes) if j not in group]
                cost = sum(_overlap(box, b) for b in placed + others)
                cost += 0 if (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and
                              box.y1 <= frame.y1) else 1e6
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, t, box, reach)
                else:
                    t.remove()
                if cost == 0:
                    break
            if best[0] == 0:
                break
        cost, t, box, reach = best
        if reach > 1:                                # displaced: redraw it with a leader line to its point
            t.remove()
            t = ax.annotate(text, xy, xytext=t.xyann, textcoords="offset points", ha=t.get_ha(), va=t.get_va(),
                            fontsize=fontsize, gid="point-label", annotation_clip=False,
                            arrowprops=dict(arrowstyle="-", color="0.45", lw=0.7, shrinkA=1, shrinkB=3))
            t.set_in_layout(False)
        placed.append(box)
        out.append(t)
    return out


def min_font_pt(fig: Figure) -> float:
    """Smallest font size (pt) of the visible, non-empty text of ``fig`` after a draw (ticks included)."""
    from matplotlib.text import Text
    agg_canvas(fig)
    fig.draw_without_rendering()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) if sizes else float("inf")


def title_text(fig: Figure) -> str:
    """The figure title plus every axes title (what a reader sees as headings)."""
    heads = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    heads += [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]
    return "\n".join(h for h in heads if h)
