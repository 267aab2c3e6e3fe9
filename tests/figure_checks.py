"""Test helpers for figures read at their saved size (issue 16): font and title checks, a contact sheet.

``python tests/figure_checks.py DIR [OUT.png]`` renders the contact sheet of every PNG under DIR (e.g.
``results/``), for looking at all figures at once.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynroute_lib.analysis.figstyle import MIN_FONT_PT, data_name, min_font_pt, title_text  # noqa: E402
from dynroute_lib.io import MIN_DPI  # noqa: E402

__all__ = ["MIN_DPI", "MIN_FONT_PT", "assert_readable", "contact_sheet", "png_dpi"]


def assert_readable(fig, data: str | None = None, name: str = "figure") -> None:
    """Smallest text >= 9 pt; when ``data`` is given, the title names that data set."""
    small = min_font_pt(fig)
    assert small >= MIN_FONT_PT, f"{name}: text of {small} pt (< {MIN_FONT_PT} pt)"
    heads = title_text(fig)
    assert heads.strip(), f"{name}: no title"
    if data:
        assert data_name(data) in heads, f"{name}: title does not name the data set {data_name(data)!r}: {heads!r}"


def png_dpi(path: Path) -> float:
    """The dpi a PNG was saved at (its pHYs chunk; 72 when absent)."""
    with Image.open(path) as im:
        return float(im.info.get("dpi", (72, 72))[0])


def contact_sheet(pngs: list[Path], out: Path, *, width: int = 2600, cols: int = 2, root: Path | None = None) -> Path:
    """One PNG with every figure of ``pngs`` (scaled to fit ``width / cols``, never enlarged) and its file name."""
    pngs = sorted(pngs)
    if not pngs:
        raise ValueError("contact_sheet: no figures")
    cell_w = width // cols
    font = ImageFont.load_default(size=22)
    tiles = []
    for p in pngs:
        with Image.open(p) as im:
            im = im.convert("RGB")
            scale = min(1.0, (cell_w - 20) / im.width)
            im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
        name = str(p.relative_to(root)) if root and p.is_relative_to(root) else p.name
        tiles.append((f"{name}  ({im.width}x{im.height} px shown, scale {scale:.2f})", im))
    rows = [tiles[i:i + cols] for i in range(0, len(tiles), cols)]
    heights = [max(t[1].height for t in row) + 40 for row in rows]
    sheet = Image.new("RGB", (width, sum(heights) + 10), "white")
    draw, y = ImageDraw.Draw(sheet), 5
    for row, h in zip(rows, heights):
        for c, (label, im) in enumerate(row):
            x = c * cell_w + 10
            draw.text((x, y), label, fill="black", font=font)
            sheet.paste(im, (x, y + 32))
            draw.rectangle([x - 1, y + 31, x + im.width, y + 32 + im.height], outline="#999999")
        y += h
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


if __name__ == "__main__":
    src = Path(sys.argv[1])
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src / "contact_sheet.png"
    files = [p for p in src.rglob("*.png") if p != dst and "contact_sheet" not in p.name]
    print(contact_sheet(files, dst, root=src))
