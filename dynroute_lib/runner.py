"""Run the numbered notebooks with papermill, in order, into ``<results root>/<stem>/`` (handbook Sec. 2 "One runner").

The batch reproduction of the paper's Tables 1-4 and Fig. 5 (Sec. 4):
``python -m dynroute_lib run [--smoke | --commit-results] [--only NN ...] [--profile cpu|gpu] [-p NAME VALUE ...]``

* Where results go: ``--commit-results`` writes the tracked ``results/<stem>/`` (the committed copy; it sets
  ``DYNROUTE_COMMIT_RESULTS=1`` for the kernels and cannot be combined with ``--smoke`` or
  ``--results-root``). Without it, runs write to the git-ignored ``results/_local/`` (``--smoke``:
  ``results/_smoke/``) or to ``--results-root``: only that explicit command ever changes committed results.

* Notebooks ``notebooks/NN_*.ipynb`` run in numeric order; ``--only 03 04`` picks some (by number or stem).
* Every ``-p NAME VALUE`` is checked against the notebooks' ``parameters`` cells *before anything runs*: a
  name no selected notebook declares is an error (papermill itself only warns), and so is a value that does not
  parse as the declared type. A parameter goes to the notebooks that declare it.
* ``--smoke`` sets ``SMOKE=True`` and ``DYNROUTE_SMOKE=1`` and writes to ``results/_smoke/`` (git-ignored)
  unless ``--results-root`` says otherwise; smoke output never lands in ``results/<stem>/``.
* Each executed copy is written to ``<results root>/<stem>/<stem>.ipynb``. The first failing notebook stops
  the run; the notebook, the failing cell and the error are printed (exit status 1). A timing table closes.
"""
from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
import time
from pathlib import Path

from .config import TRAIN_PROFILES   # --smoke, not --profile smoke, selects the smoke run
from .paths import COMMIT_ENV, NOTEBOOKS_DIR, PROJ_ROOT, RESULTS_DIR, environ

TRUE, FALSE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off"}


class ParameterError(ValueError):
    """An unknown parameter name or a value that does not fit the declared type."""


def notebooks(only=None, root: Path | None = None) -> list[Path]:
    """The numbered notebooks in order; ``only`` filters by number (``"03"``) or stem (``"03_tables"``)."""
    nbs = sorted((root or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return nbs

    def hit(nb: Path, o: str) -> bool:
        return nb.stem == o or (o.isdigit() and nb.stem[:2] == o.zfill(2))

    missing = [o for o in only if not any(hit(nb, o) for nb in nbs)]
    if missing:
        raise ParameterError(f"--only {' '.join(missing)}: no such notebook; have {[nb.stem for nb in nbs]}")
    return [nb for nb in nbs if any(hit(nb, o) for o in only)]


def declared(nb: Path) -> dict:
    """``{name: type name}`` of the notebook's ``parameters`` cell.

    Read from the cell's syntax tree (annotation, or the literal's type), not from papermill's line regex,
    which skips any line holding a second ``=`` (e.g. in its comment) with only a warning.
    """
    import nbformat
    book = nbformat.read(str(nb), as_version=4)
    cells = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    out = {}
    for stmt in ast.parse(cells[0].source).body if cells else []:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            out[stmt.target.id] = ast.unparse(stmt.annotation)
        elif isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = type(_literal(stmt.value)).__name__
    return out


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def coerce(name: str, value, type_name: str):
    """Parse a CLI string as the declared type (``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``)."""
    if not isinstance(value, str):
        return value
    t = (type_name or "").split("[")[0].strip().lower()
    try:
        if t == "bool":
            v = value.strip().lower()
            if v not in TRUE | FALSE:
                raise ValueError("expected true/false")
            return v in TRUE
        if t == "int":
            return int(value)
        if t == "float":
            return float(value)
        if t in ("list", "dict", "tuple"):
            parsed = ast.literal_eval(value)
            if type(parsed).__name__ != t and not (t == "list" and isinstance(parsed, tuple)):
                raise ValueError(f"expected a {t} literal")
            return list(parsed) if t == "list" else parsed
        if t == "str":
            return value
        return ast.literal_eval(value) if value[:1] in "[{(\"'0123456789-" else value
    except (ValueError, SyntaxError) as e:
        raise ParameterError(f"-p {name} {value!r}: not a valid {t} ({e})") from None


def resolve_params(nbs: list[Path], params: dict) -> dict[Path, dict]:
    """Per notebook, the parameters it declares, coerced to their declared types; unknown names are errors."""
    decl = {nb: declared(nb) for nb in nbs}
    known = set().union(*decl.values()) if decl else set()
    unknown = sorted(set(params) - known)
    if unknown:
        hint = {u: [k for k in known if k.lower() == u.lower()] for u in unknown}
        hint = "; ".join(f"{u} -> did you mean {h[0]}?" for u, h in hint.items() if h)
        raise ParameterError(f"unknown parameter(s) {unknown} for {[nb.stem for nb in nbs]}; "
                             f"declared: {sorted(known)}" + (f" ({hint})" if hint else ""))
    return {nb: {k: coerce(k, v, decl[nb][k]) for k, v in params.items() if k in decl[nb]} for nb in nbs}


def run_notebook(nb: Path, results_root: Path | None, params: dict, *, timeout_s: int | None = None,
                 log_output: bool = True, commit: bool = False) -> Path:
    """Execute one notebook with papermill into ``<results_root>/<stem>/<stem>.ipynb``.

    Args:
        nb: The notebook.
        results_root: Injected as ``RESULTS_ROOT``; None injects nothing (the notebook's own default root,
            ``results/_local/`` or ``results/_smoke/``, where the executed copy goes too).
        params: Notebook parameters (checked against its ``parameters`` cell).
        timeout_s: Per-cell timeout (None: none).
        log_output: Stream cell output through papermill's logger.
        commit: Let the kernel write the tracked ``results/`` (``DYNROUTE_COMMIT_RESULTS=1``).

    Raises:
        ParameterError: A parameter the notebook does not declare.
        papermill.PapermillExecutionError: A cell failed (the executed copy is still written).
    """
    import papermill as pm

    from .notebook import resolve_results_root, smoke_forced
    nb = Path(nb).resolve()
    params = resolve_params([nb], dict(params))[nb]
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(
        [str(PROJ_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])),
        COMMIT_ENV: "1" if commit else ""}
    if params.get("SMOKE"):
        env["DYNROUTE_SMOKE"] = "1"
    with environ(env):                    # the kernel inherits it; the caller's environment is restored
        smoke = bool(params.get("SMOKE")) or smoke_forced()
        root = resolve_results_root(results_root or "", smoke, quiet=True)
        out = root / nb.stem / nb.name
        out.parent.mkdir(parents=True, exist_ok=True)
        inject = {**params, "RESULTS_ROOT": str(root)} if results_root is not None else params
        pm.execute_notebook(str(nb), str(out), parameters=inject, kernel_name="python3", cwd=str(nb.parent),
                            log_output=log_output, progress_bar=False, execution_timeout=timeout_s)
    return out


def describe_failure(err, out: Path) -> str:
    """``notebook, cell (first line), ename: evalue`` for a PapermillExecutionError."""
    import nbformat
    cell = ""
    try:
        nb = nbformat.read(out, as_version=4)       # papermill adds an error banner cell: match by exec count
        hit = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count") == err.exec_count]
        src = hit[0].source.strip().splitlines() if hit else []
        cell = f" `{src[0][:80]}`" if src else ""
    except Exception:  # noqa: BLE001 - the message stays useful without the source line
        pass
    return (f"FAILED {out.stem}.ipynb at cell In [{err.exec_count}]{cell}: {err.ename}: {err.evalue}\n"
            f"  executed copy (error highlighted): {out}")


def _parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run on the embedded data (results/_smoke)")
    ap.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or stems to run (default: all)")
    ap.add_argument("--profile", choices=[p for p in TRAIN_PROFILES if p != "smoke"], help="sets PROFILE in every notebook")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="notebook parameter (repeatable); NAME must be declared by a selected notebook")
    ap.add_argument("--commit-results", action="store_true",
                    help="write the tracked results/<stem>/ (full profile runs only; default: results/_local/)")
    ap.add_argument("--results-root", help="output root (default results/_local, or results/_smoke with --smoke)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default none)")
    ap.add_argument("--quiet", action="store_true", help="do not stream cell output")
    ap.add_argument("--list", action="store_true", help="list notebooks and their parameters, run nothing")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from .notebook import resolve_results_root, smoke_forced
    a = _parse_args(argv)
    params = {k: v for k, v in a.param}
    smoke_param = str(params.get("SMOKE", "")).strip().lower() in TRUE
    if a.commit_results and (a.smoke or smoke_param or smoke_forced() or a.results_root or "RESULTS_ROOT" in params):
        print("error: --commit-results writes the tracked results/ from a full-profile run; it cannot be combined "
              "with --smoke (or SMOKE / DYNROUTE_SMOKE=1), --results-root or -p RESULTS_ROOT", file=sys.stderr)
        return 2
    if a.smoke:
        params["SMOKE"] = "True"
    if a.profile:
        params["PROFILE"] = a.profile
    try:
        nbs = notebooks(a.only)
        if a.list:
            for nb in nbs:
                print(f"{nb.stem}: " + ", ".join(f"{k}: {t}" for k, t in declared(nb).items()))
            return 0
        per_nb = resolve_params(nbs, params)
        for p in per_nb.values():
            p.pop("RESULTS_ROOT", None)
    except ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not a.quiet:     # papermill streams cell output through its logger at INFO level
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = RESULTS_DIR.resolve() if a.commit_results else \
        resolve_results_root(a.results_root or params.pop("RESULTS_ROOT", ""), a.smoke, quiet=True)
    timings, status = [], 0
    for nb in nbs:
        t0 = time.perf_counter()
        print(f"==> {nb.stem} {per_nb[nb]} -> {root / nb.stem}", flush=True)
        try:
            run_notebook(nb, root, per_nb[nb], timeout_s=a.timeout, log_output=not a.quiet, commit=a.commit_results)
            timings.append((nb.stem, "ok", time.perf_counter() - t0))
        except Exception as e:  # noqa: BLE001 - report which notebook and cell failed, then stop
            timings.append((nb.stem, "FAILED", time.perf_counter() - t0))
            out = root / nb.stem / nb.name
            msg = describe_failure(e, out) if hasattr(e, "cell_index") else f"FAILED {nb.name}: {type(e).__name__}: {e}"
            print(msg, file=sys.stderr)
            status = 1
            break
    total = sum(t for *_, t in timings)
    print("\nnotebook                   status   wall_s")
    for stem, st, t in timings:
        print(f"{stem:<26} {st:<8} {t:7.1f}")
    print(f"{'total':<26} {'':<8} {total:7.1f}   (results: {root})")
    return status


if __name__ == "__main__":
    sys.exit(main())
