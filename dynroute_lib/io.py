"""Atomic result writers, checkpoint loading and run provenance (the results layout behind every table and figure).

Implements the results layout of the project handbook (conventions §2 "Results layout":
tidy CSV/JSON/PNG under ``results/<stem>/`` plus a ``run.json`` provenance record) and the
checkpoint format of §2 "Cache-or-train" for the reimplementation of Li et al., CVPR 2020.
Every writer goes through a temporary file in the target directory followed by
``os.replace``, so an interrupted run never leaves a half-written file that a later notebook
(or ``cache_or_train``) would mistake for a valid result.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import pickle
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch

from .paths import PROJ_ROOT  # single source of truth: Path(__file__).resolve().parents[1]


UNTRUSTED = "not a plain-tensor checkpoint; refusing to unpickle (untrusted code)"


# ----------------------------------------------------------------------------- atomic writes
def _atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp)`` on a sibling temp file, then renames it onto ``path``.

    The temp file sits in the same directory because ``os.replace`` is only atomic within one
    file system. On any exception (including KeyboardInterrupt) the temp file is removed and
    the previous content of ``path``, if any, is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden, unique name: concurrent writers never collide and globs like *.csv skip it.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _jsonable(obj: Any) -> Any:
    """Converts common scientific types to strict JSON (NaN/inf become null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, without importing numpy here
        return _jsonable(obj.tolist())
    return obj


def save_json(path: str | Path, obj: Any) -> Path:
    """Writes ``obj`` as indented, strict JSON (non-finite floats are written as null)."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def copy_file(src: str | Path, dst: str | Path) -> Path:
    """Copies ``src`` to ``dst`` atomically (parent folders are created)."""
    return _atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def save_csv(path: str | Path, df: Any, **to_csv_kwargs: Any) -> Path:
    """Writes a pandas DataFrame without its index (tidy tables carry no index column); gzipped for ``*.gz``."""
    to_csv_kwargs.setdefault("index", False)
    if Path(path).suffix == ".gz":
        return _atomic_write(path, lambda tmp: write_gzip(tmp, df.to_csv(**to_csv_kwargs).encode()))
    return _atomic_write(path, lambda tmp: df.to_csv(tmp, **to_csv_kwargs))


def write_gzip(path: str | Path, data: bytes) -> None:
    """Gzips ``data`` into ``path`` with no file name and mtime 0 in the header, so the same rows give the same
    bytes (a rerun diffs clean; pandas would put the temp file's name there)."""
    with open(path, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(data)


MIN_DPI = 100  # figures are read at their saved size: 9 pt text (figstyle.MIN_FONT_PT) is >= 12.5 px


def save_figure(path: str | Path, fig: Any, dpi: int = 120) -> Path:
    """Saves a matplotlib Figure at a fixed dpi; the format follows the suffix (default png).

    The figure is not closed, so a notebook can still display it; the caller closes it.

    Raises:
        ValueError: ``dpi`` below ``MIN_DPI`` (text would be unreadable at the saved size).
    """
    if dpi < MIN_DPI:
        raise ValueError(f"{Path(path).name}: dpi {dpi} is below {MIN_DPI}; text would be unreadable at the saved size")
    fmt = Path(path).suffix.lstrip(".") or "png"
    return _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt))


def save_torch(path: str | Path, obj: Any) -> Path:
    """Saves a checkpoint or tensor dict with ``torch.save``."""
    return _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def require_checkpoints(paths) -> None:
    """Checks up front (before any work) that every checkpoint file exists; one error names all missing ones."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint not found: {', '.join(missing)}")


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> Any:
    """Loads a checkpoint on the CPU with ``weights_only=True`` (no arbitrary unpickling).

    ``mmap=True`` maps the file instead of reading it (cheap when only a few entries are needed).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file exists but cannot be read as a checkpoint, or it holds objects other than
            tensors and plain containers (refused with ``UNTRUSTED``, never unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **({"mmap": True} if mmap else {}))
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():   # an object outside torch's allow-list: never unpickle it
            raise ValueError(f"{path}: {UNTRUSTED}") from None
        raise ValueError(f"cannot load checkpoint {path}: {type(exc).__name__}: {_first_line(exc)}") from exc
    except Exception as exc:  # torch raises many types (zip, EOF, ...)
        raise ValueError(f"cannot load checkpoint {path}: {type(exc).__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# ----------------------------------------------------------------------------- provenance
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJ_ROOT), *args], capture_output=True,
                             text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None  # no git binary, not a repository, or no commit yet
    return out.stdout.strip()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str | torch.device | None = None) -> str:
    """Human-readable name of ``device`` (default: CUDA if available, else the CPU)."""
    dev = torch.device(device) if device is not None else None
    use_cuda = dev.type == "cuda" if dev is not None else torch.cuda.is_available()
    if use_cuda and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev if dev is not None and dev.index is not None else None)
    return _cpu_name()


def _version(pkg: str) -> str | None:
    # Package metadata avoids importing torchvision (slow, and fails on mismatched builds).
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def command_line(module: str, argv: list[str] | None = None) -> str:
    """The command as typed: ``python -m MODULE ARGS`` (under ``-m``, ``sys.argv[0]`` is the module's file path)."""
    return " ".join([f"python -m {module}", *(sys.argv[1:] if argv is None else argv)])


def provenance(extra: dict | None = None, *, device: str | torch.device | None = None) -> dict:
    """Builds the environment part of ``run.json``.

    Args:
        extra: Run-specific fields (notebook, parameters, smoke, config hashes, wall seconds);
            they are merged last and win over the generated keys.
        device: Device the run uses; selects whose name is recorded.

    Returns:
        Dict with ``git_sha`` (None without a commit), ``git_dirty`` (tracked files outside ``results/``
        modified: a committing run rewrites tracked results before its ``run.json``, which is not a code change),
        ``python``, ``torch``, ``torchvision``, ``cuda``, ``device_name``, ``hostname`` and
        ``start_time_utc``, plus ``extra``.
    """
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results") if sha else None
    record = {
        "git_sha": sha,
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "cuda": torch.version.cuda,
        "device_name": device_name(device),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "start_time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra or {})
    return record


class Timer:
    """Context manager measuring wall seconds; ``wall_s`` is live while inside the block."""

    def __init__(self) -> None:
        self._start, self._end = None, None

    def __enter__(self) -> "Timer":
        self._start, self._end = time.perf_counter(), None
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = time.perf_counter()

    @property
    def wall_s(self) -> float:
        """Elapsed seconds (up to now if the block is still running; 0 before it starts)."""
        if self._start is None:
            return 0.0
        return (self._end if self._end is not None else time.perf_counter()) - self._start


def content_hash(obj: Any, n: int = 8) -> str:
    """Short stable hash of a JSON-able object (train-recipe part of the run-cache key, route-mask digests)."""
    text = json.dumps(_jsonable(obj), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:n]
