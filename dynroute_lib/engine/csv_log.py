"""Per-iteration CSV training log (paper Sec. 4.1 recipe, curves of notebook 02; handbook §2 "no tqdm in batch runs").

Supports the training recipe of Li et al., CVPR 2020 (spec §5.4): one row per iteration is
appended and flushed immediately, so a notebook can plot loss, LR, budget weight and FLOPs
while training runs, and a resumed run (checkpoint every 5k iterations) continues the same
file after dropping the rows logged past the checkpoint.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence


class CsvLogger:
    """Appends one flushed CSV row per call to ``log``.

    Args:
        path: CSV file; parent directories are created.
        fieldnames: Column names, in order; must contain ``step_key``.
        resume_step: ``None`` starts a fresh file (an existing one is overwritten). An integer
            keeps the existing rows with ``step <= resume_step`` (the checkpoint's step) and
            appends after them; rows logged after the checkpoint, and a partial last line from
            a crash, are dropped.
        step_key: Column holding the iteration number.

    Raises:
        ValueError: On resume, the existing header differs from ``fieldnames``.
    """

    def __init__(self, path: str | Path, fieldnames: Sequence[str], *,
                 resume_step: int | None = None, step_key: str = "step") -> None:
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        self.step_key = step_key
        if step_key not in self.fieldnames:
            raise ValueError(f"step_key {step_key!r} not in fieldnames {self.fieldnames}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._kept_rows(resume_step) if resume_step is not None else []
        # Rewrite header + kept rows through a temp file so a crash here loses nothing.
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fieldnames)

    def _kept_rows(self, resume_step: int) -> list[dict]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # drop a line cut off mid-write
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is not None and list(reader.fieldnames) != self.fieldnames:
            raise ValueError(f"{self.path}: header {reader.fieldnames} != expected {self.fieldnames}")
        kept = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                continue  # malformed row (wrong field count)
            try:
                step = int(float(row[self.step_key]))
            except ValueError:
                continue
            if step <= resume_step:
                kept.append(row)
        return kept

    def log(self, row: dict[str, Any] | None = None, **fields: Any) -> None:
        """Appends one row (missing columns stay empty; unknown columns raise ValueError)."""
        row = {**(row or {}), **fields}
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        """Closes the file; further ``log`` calls fail."""
        self._file.close()

    def __enter__(self) -> "CsvLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
