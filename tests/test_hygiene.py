"""Notebook hygiene (handbook Sec. 3, layer 3) and the runner's parameter validation; milliseconds to seconds.

Committed notebooks carry no outputs, execution counts or widget state, keep a normalised ``python3``
kernelspec, have exactly one ``parameters`` cell of annotated literals that papermill can parse, and keep
their logic in ``dynroute_lib`` (no ``def`` / ``class`` in cells, at most 20 code cells).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from dynroute_lib import runner
from dynroute_lib.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
CORE = {"SMOKE": "bool", "PROFILE": "str", "DATA": "str", "DATA_ROOT": "str", "SEED": "int", "DEVICE": "str",
        "RESULTS_ROOT": "str"}
ANNOTATIONS = {"bool", "int", "float", "str", "list", "dict"}
EXPECTED = {"00_data_overview", "01_model_and_flops", "02_train", "03_tables", "04_route_distribution",
            "05_route_inspector", "06_sparse_speed"}


def _params(nb) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    code = [c for c in nb.cells if c.cell_type == "code"]
    cell = code[0]
    names = {}
    for stmt in ast.parse(cell.source).body:
        assert isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name), \
            f"parameters cell: only `NAME: type = literal` lines, got `{ast.unparse(stmt)}`"
        ast.literal_eval(stmt.value)          # literals only: papermill does not recompute derived values
        names[stmt.target.id] = ast.unparse(stmt.annotation)
    return cell, names


def test_numbered_notebooks_present():
    stems = [p.stem for p in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", s) for s in stems), stems
    assert len({s[:2] for s in stems}) == len(stems), f"duplicate numbers: {stems}"
    assert EXPECTED <= set(stems), f"missing: {sorted(EXPECTED - set(stems))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_hygiene(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    assert "widgets" not in nb.metadata, "strip metadata.widgets before committing"
    assert "papermill" not in nb.metadata, "this is an executed copy, not the source notebook"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {path.stem[:2]}"), \
        "first cell: markdown title '# NN ...'"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"exactly one cell tagged parameters, found {len(tagged)}"
    assert tagged[0] is code[0], "the parameters cell must be the first code cell"
    assert len(code) <= 20, f"{len(code)} code cells (max 20): move logic into dynroute_lib"
    for i, c in enumerate(code):
        assert not c.outputs and c.execution_count is None, f"code cell {i}: commit notebooks stripped"
        assert not re.search(r"^\s*(async\s+)?(def|class)\s", c.source, re.M), f"code cell {i}: def/class"
        assert "sys.path" not in c.source, f"code cell {i}: notebooks never edit sys.path"
    for i, c in enumerate(nb.cells):
        assert set(c.metadata) <= {"tags"}, f"cell {i}: editor metadata {sorted(set(c.metadata) - {'tags'})}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    _, names = _params(nb)
    for name, ann in CORE.items():
        assert names.get(name) == ann, f"core parameter `{name}: {ann}` missing or retyped ({names.get(name)})"
    assert set(names.values()) <= ANNOTATIONS, f"plain type hints only: {names}"
    # papermill skips lines it cannot parse (e.g. a second '=' in the comment) with only a warning, so
    # `papermill --help-notebook` would not list them; its view must match the cell.
    import papermill as pm
    assert runner.declared(path) == names
    seen = pm.inspect_notebook(str(path))
    assert set(seen) == set(names), f"papermill cannot parse {sorted(set(names) - set(seen))} (no '=' in comments)"


def test_runner_rejects_unknown_parameter(tmp_path, capsys):
    rc = runner.main(["--only", "00", "-p", "smoke", "True", "--results-root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown parameter" in err and "smoke" in err and "SMOKE" in err
    assert not any(tmp_path.iterdir()), "nothing may run when a parameter is unknown"


def test_runner_rejects_bad_value_and_unknown_notebook(tmp_path, capsys):
    assert runner.main(["--only", "02", "-p", "SEED", "zero", "--results-root", str(tmp_path), "--quiet"]) == 2
    assert "SEED" in capsys.readouterr().err
    assert runner.main(["--only", "99", "--results-root", str(tmp_path), "--quiet"]) == 2
    assert not any(tmp_path.iterdir())


def test_runner_parameter_routing():
    nbs = runner.notebooks(["02", "04_route_distribution"])
    assert [p.stem for p in nbs] == ["02_train", "04_route_distribution"]
    per = runner.resolve_params(nbs, {"PRESET": "dynamic_b", "SEED": "3", "SMOKE": "true"})
    assert per[nbs[0]] == {"PRESET": "dynamic_b", "SEED": 3, "SMOKE": True}
    assert per[nbs[1]] == {"SEED": 3, "SMOKE": True}        # PRESET goes only where it is declared


@pytest.mark.parametrize("value,type_name,expected", [
    ("True", "bool", True), ("0", "bool", False), ("7", "int", 7), ("2.5", "float", 2.5),
    ("camvid", "str", "camvid"), ('["a", "b"]', "list", ["a", "b"]), ("{'a': 1}", "dict", {"a": 1})])
def test_coerce(value, type_name, expected):
    assert runner.coerce("X", value, type_name) == expected


@pytest.mark.parametrize("value,type_name", [("maybe", "bool"), ("1.5", "int"), ("a", "list"), ("[1]", "dict")])
def test_coerce_rejects(value, type_name):
    with pytest.raises(runner.ParameterError):
        runner.coerce("X", value, type_name)


def _tiny_notebook(path: Path, body: str) -> Path:
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    params = new_code_cell('SMOKE: bool = False\nRESULTS_ROOT: str = ""')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell(f"# {path.stem[:2]}"), params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_runner_stops_at_first_failure_naming_notebook_and_cell(tmp_path, monkeypatch, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _tiny_notebook(nbs / "00_fails.ipynb", "x = 1\nraise RuntimeError('boom in cell')")
    _tiny_notebook(nbs / "01_after.ipynb", "from pathlib import Path\nPath(RESULTS_ROOT, 'ran').write_text('1')")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", nbs)
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    rc = runner.main(["--smoke", "--results-root", str(tmp_path / "out"), "--quiet", "--timeout", "120"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "00_fails.ipynb" in err and "`x = 1`" in err and "RuntimeError: boom in cell" in err, err
    assert (tmp_path / "out" / "00_fails" / "00_fails.ipynb").is_file(), "the executed copy shows the error"
    assert not (tmp_path / "out" / "ran").exists(), "notebooks after the failure must not run"
    import os
    assert "DYNROUTE_SMOKE" not in os.environ, "the runner restores the caller's environment"


# ---- where results go (issue 16): only `runner --commit-results` writes the tracked results/ ----------------
def test_runner_commit_results_is_explicit_and_full_profile_only(capsys, monkeypatch):
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    for extra in (["--smoke"], ["--results-root", "/tmp/x"], ["-p", "SMOKE", "true"]):
        assert runner.main(["--commit-results", "--only", "00", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --commit-results") and err.count("\n") == 1, err
    monkeypatch.setenv("DYNROUTE_SMOKE", "1")
    assert runner.main(["--commit-results", "--only", "00"]) == 2


def test_runner_writes_local_by_default_and_results_only_when_committing(tmp_path, monkeypatch, capsys):
    from dynroute_lib import notebook as session
    res = (tmp_path / "results").resolve()
    for name, value in (("RESULTS_DIR", res), ("SMOKE_RESULTS_DIR", res / "_smoke"),
                        ("LOCAL_RESULTS_DIR", res / "_local")):
        monkeypatch.setattr(session, name, value)
    monkeypatch.setattr(runner, "RESULTS_DIR", res)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    body = ("from pathlib import Path\n"
            "# the kernel imports its own dynroute_lib: it sees the real results/, so report what it was given\n"
            "Path(RESULTS_ROOT or '.', 'kernel_saw.txt').write_text(RESULTS_ROOT)")
    _tiny_notebook(nbs / "00_where.ipynb", body)
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", nbs)
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    assert runner.main(["--quiet", "--timeout", "120"]) == 0
    assert (res / "_local" / "00_where" / "00_where.ipynb").is_file() and not (res / "00_where").exists()
    assert (res / "_local" / "kernel_saw.txt").read_text() == str(res / "_local")
    assert runner.main(["--quiet", "--timeout", "120", "--commit-results"]) == 0
    assert (res / "00_where" / "00_where.ipynb").is_file() and (res / "kernel_saw.txt").read_text() == str(res)
    import os
    assert os.environ.get("DYNROUTE_COMMIT_RESULTS", "") == "", "the runner restores the caller's environment"
