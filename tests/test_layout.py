"""Layout of ``dynroute_lib`` (issue 14): one-way dependencies by stage, docstrings, module size (milliseconds).

The import graph is read from the syntax tree of every module, function-level imports included (a lazy import
is still a dependency), relative and absolute alike. Importing ``a.b.c`` from outside package ``a.b`` also runs
``a/b/__init__.py``, so it counts as a dependency on that package too.
"""
from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

PKG = "dynroute_lib"
ROOT = Path(__file__).resolve().parents[1] / PKG
MAX_LINES = 350
LONG_MODULES: dict[str, str] = {}      # module -> reason; none needed today

# The stages, lowest first (docs/architecture.md). A module may import modules of its own stage or a lower one.
STAGES = [
    ("foundations", ["paths", "io", "data", "data.*", "routes", "routes.space", "routes.masks", "routes.modeled",
                     "routes.common", "analysis.paper"]),
    ("config", ["config"]),
    ("model", ["model", "model.*"]),
    ("priced routes", ["flops", "routes.random_masks"]),
    ("engine", ["engine", "engine.*"]),
    ("products", ["analysis", "analysis.*", "inspector", "inspector.*", "bench", "bench.*"]),
    ("entry points", ["notebook", "runner", "reproduce", "equal_time_cmd", "__main__", ""]),
]


def _modules() -> dict[str, Path]:
    """``{dotted name relative to the package ("" = the package itself): path}``."""
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules one import statement of ``module`` loads (names relative to the package)."""
    if isinstance(node, ast.Import):
        return [a.name[len(PKG) + 1:] if a.name != PKG else "" for a in node.names
                if a.name == PKG or a.name.startswith(PKG + ".")]
    if node.level == 0:
        if not node.module or not (node.module == PKG or node.module.startswith(PKG + ".")):
            return []
        base = node.module[len(PKG) + 1:] if node.module != PKG else ""
    else:
        here = module.split(".") if _is_package(module) else module.split(".")[:-1]
        here = [p for p in here if p]
        up = here[: len(here) - (node.level - 1)]
        base = ".".join(up + ([node.module] if node.module else []))
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        targets.append(sub if sub in MODULES else base)
    return targets


def _with_packages(module: str, target: str) -> set[str]:
    """``target`` plus every enclosing subpackage whose ``__init__`` the import runs (those outside ``module``)."""
    out = {target}
    parts = target.split(".") if target else []
    for i in range(1, len(parts)):
        pkg = ".".join(parts[:i])
        if not (module == pkg or module.startswith(pkg + ".")):
            out.add(pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _resolve(name, node):
                    deps |= _with_packages(name, t)
        deps.discard(name)
        unknown = sorted(d for d in deps if d not in MODULES)
        assert not unknown, f"{path}: imports {unknown}, which are not modules of {PKG}"
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _stage(name: str) -> int:
    """Stage of a module: the one naming it exactly, else the one whose pattern matches it."""
    exact = [i for i, (_, pats) in enumerate(STAGES) if name in pats]
    hits = exact or [i for i, (_, pats) in enumerate(STAGES) if any("*" in p and fnmatch(name, p) for p in pats)]
    assert len(hits) == 1, f"module {name or PKG!r} belongs to {len(hits)} stages of tests/test_layout.py (want 1)"
    return hits[0]


def test_graph_sees_function_level_and_package_imports():
    graph = import_graph()
    assert "notebook" in graph[""]                           # lazy ``setup`` in the package __init__
    assert "model.official" in graph["engine.checkpoint"]
    assert {"routes", "data"} <= graph["config"]              # function-level imports count
    assert "analysis" in graph["flops"]                       # analysis.paper runs analysis/__init__ too
    assert "routes" not in graph["routes.masks"]              # a sibling import does not re-run the package


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_dependencies_point_one_way():
    """Imports go down the stages only; running a subpackage's import-free ``__init__`` binds to no stage."""
    graph = import_graph()
    empty = {m for m, deps in graph.items() if _is_package(m) and not deps}
    bad = [f"{m or PKG} ({STAGES[_stage(m)][0]}) imports {d or PKG} ({STAGES[_stage(d)][0]})"
           for m, deps in graph.items() for d in sorted(deps - empty) if _stage(d) > _stage(m)]
    assert not bad, "imports against the stage order:\n" + "\n".join(bad)


def test_model_and_routes_know_no_training():
    graph = import_graph()
    for m, deps in graph.items():
        if m.startswith(("model", "routes")) or m in ("flops", "config"):
            assert not [d for d in deps if d.startswith("engine")], f"{m} imports the engine: {deps}"
    assert "flops" not in {d for m, deps in graph.items() if m.startswith("model") for d in deps}


@pytest.mark.parametrize("name", sorted(MODULES), ids=lambda n: n or PKG)
def test_module_has_docstring_and_reasonable_size(name):
    path = MODULES[name]
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.split()) >= 5, f"{path}: module docstring missing or empty"
    lines = len(path.read_text().splitlines())
    limit = MAX_LINES if name not in LONG_MODULES else 10 ** 6
    assert lines <= limit, f"{path}: {lines} lines (> {MAX_LINES}); split it or add a reason to LONG_MODULES"


def test_committed_results_are_not_git_ignored():
    """results/<stem>/ (runs/, curves/ ...) must be trackable: a bare `runs/` pattern once hid results/repro/runs."""
    import subprocess
    REPO = ROOT.parent
    probes = ["results/repro/runs/x_s0.json", "results/repro/curves/x_s0_val.csv", "results/03_tables/x.csv"]
    out = subprocess.run(["git", "check-ignore", *probes], cwd=REPO, capture_output=True, text=True)
    if out.returncode > 1:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    assert out.stdout.split() == [], f"git-ignored result paths: {out.stdout.split()}"
    ignored = subprocess.run(["git", "check-ignore", "runs/x", "checkpoints/x"], cwd=REPO, capture_output=True,
                             text=True).stdout.split()
    assert ignored == ["runs/x", "checkpoints/x"]
