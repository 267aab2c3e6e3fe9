"""Hold one recording out of a CamVid train split: the clean test behind Fig. 5's per-image spread (Sec. 4.2).

CamVid val is 7 s of one drive, so a model's per-image cost barely varies there. To read the spread on frames that
vary *and* were never seen in training, train on all drives but one and evaluate on the one held out
(``docs/cpu_reproduction.md``, session 17). This module builds such a data root without copying a pixel:

    <out>/train/{images,labels}     links to the train frames of every other recording
    <out>/heldout/{images,labels}   links to the held-out recording's train frames
    <out>/<split>/{images,labels}   links to each other split of the source (val, ...), unchanged
    <out>/holdout.json              what was held out, from where, and the counts

The folder is built under a temporary name beside ``out`` and renamed into place, so a failed run leaves nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .datasets import resolve_root
from .readers import list_split
from .registry import DataError

# The layout written is CamVid's shared one; other data sets name their frames differently.
SUPPORTED = ("camvid",)


def sequence_of(image: str) -> str:
    """The recording a frame comes from: CamVid names are ``<sequence>_<frame>``; names without ``_`` are their
    own sequence-less set (``"-"``)."""
    return image.split("_", 1)[0] if "_" in image else "-"


def _link(samples, dest: Path) -> None:
    (dest / "images").mkdir(parents=True)
    (dest / "labels").mkdir()
    for s in samples:
        # absolute targets: the folder stays valid wherever it is read from
        os.symlink(Path(s.image).resolve(), dest / "images" / Path(s.image).name)
        os.symlink(Path(s.label).resolve(), dest / "labels" / f"{s.name}.png")


def hold_out(name: str, sequence: str, out: str | Path, *, root: str | Path | None = None, split: str = "train",
             heldout_split: str = "heldout", carry: tuple[str, ...] = ("val",), force: bool = False) -> dict:
    """Build ``out`` (layout in the module docstring); returns the manifest written to ``out/holdout.json``."""
    if name not in SUPPORTED:
        raise DataError(f"{name}: holding a recording out needs <sequence>_<frame> names; supported: "
                        f"{', '.join(SUPPORTED)}")
    if heldout_split == split or heldout_split in carry:
        raise DataError(f"--heldout-split {heldout_split!r}: clashes with a split of the source")
    src = resolve_root(name, root)
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise DataError(f"{out}: already exists (pass --force to replace it)")
    samples = list_split(name, src, split).samples
    seqs = sorted({sequence_of(s.name) for s in samples})
    held = [s for s in samples if sequence_of(s.name) == sequence]
    kept = [s for s in samples if sequence_of(s.name) != sequence]
    if not held:
        raise DataError(f"{src / split}: no frame of recording {sequence!r} (recordings: {', '.join(seqs)})")
    if not kept:
        raise DataError(f"{src / split}: {sequence!r} is its only recording; nothing would be left to train on")
    carried = {c: list_split(name, src, c).samples for c in carry}   # raises before anything is written
    manifest = {"data": name, "source_root": str(src.resolve()), "source_split": split, "held_out": sequence,
                "recordings": seqs, "splits": {split: len(kept), heldout_split: len(held),
                                               **{c: len(v) for c, v in carried.items()}},
                "train_recordings": [q for q in seqs if q != sequence]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _link(kept, tmp / split)
        _link(held, tmp / heldout_split)
        for c, v in carried.items():
            _link(v, tmp / c)
        (tmp / "holdout.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():            # --force: replace only once the new folder is complete
            shutil.rmtree(out) if out.is_dir() and not out.is_symlink() else out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
