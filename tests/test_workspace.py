"""Workspace contracts (issue 3): pinned deps mirrored in environment.yml, README commands, CI, FLOPs CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_mirrors_requirements():
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    assert [d["pip"] for d in deps if isinstance(d, dict)] == [["-r requirements.txt"]]
    reqs = {line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= reqs
    for pkg in ("jupyterlab", "ipywidgets", "papermill", "matplotlib", "seaborn", "pandas", "tqdm", "pytest"):
        assert any(r.split("=")[0].split(">")[0] == pkg for r in reqs), pkg


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    head = (ROOT / "README.md").read_text().split("```")[1]
    assert re.search(r"^make run\b", head, re.M) and re.search(r"^make test\b", head, re.M)
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: setup", make, re.M) and re.search(r"^test: setup", make, re.M)
    assert "python3 -m venv" in make.replace("$(PY)", "python3") and ".venv" in make
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_flops_cli_json():
    out = subprocess.run([sys.executable, "-m", "dynroute_lib", "flops", "fix_l16", "--size", "512", "1024",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert {"preset", "params_m", "gflops_official", "gmacs_true"} <= set(r)
    assert r["preset"] == "fix_l16" and abs(r["params_m"] - 15.26) < 0.01
    # official-rule all-open count scales with the pixel count (spec 4.9: 101.2 G at 1024x2048)
    assert abs(r["gflops_official"] - 101.2 / 4) / (101.2 / 4) < 0.01


def test_flops_cli_bad_input():
    for args, needle in ((["nope"], "valid presets"), (["fix_l16", "--size", "100", "200"], "multiples of 32")):
        out = subprocess.run([sys.executable, "-m", "dynroute_lib", "flops", *args], capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
        assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr


DOCS = ["README.md", "Makefile", "data/README.md", "scripts/*.sh", "docs/*.md", "notebooks/*.ipynb", ".ci/run"]


def _doc_text() -> str:
    return "\n".join(p.read_text() for pat in DOCS for p in sorted(ROOT.glob(pat)))


def test_documented_module_paths_and_commands_exist():
    """Every ``dynroute_lib.x.y`` / ``dynroute_lib/x/y.py`` the docs name is a module (or a module's attribute),
    and every ``python -m dynroute_lib COMMAND`` is a command of the dispatcher (no stale layout in the docs)."""
    from dynroute_lib.__main__ import COMMANDS
    text = _doc_text()
    pkg = ROOT / "dynroute_lib"

    def is_module(parts) -> bool:
        path = pkg.joinpath(*parts)
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    stale = []
    for m in re.finditer(r"dynroute_lib((?:\.[A-Za-z_]\w*)+)", text):
        parts = m.group(1).strip(".").split(".")
        if not (is_module(parts) or is_module(parts[:-1]) and parts[:-1]):
            stale.append(m.group(0))
    for m in re.finditer(r"dynroute_lib((?:/\w+)+)(\.py)?", text):
        parts = m.group(1).strip("/").split("/")
        if not (pkg.joinpath(*parts).with_suffix(".py" if m.group(2) else "").exists()):
            stale.append(m.group(0))
    for m in re.finditer(r"-m dynroute_lib ([a-z][\w-]*)(?: ([a-z][\w-]*))?", text):
        one, two = m.group(1), f"{m.group(1)} {m.group(2)}"
        if one not in COMMANDS and two not in COMMANDS:
            stale.append(m.group(0))
    assert not stale, f"docs name paths or commands that do not exist: {sorted(set(stale))}"


def test_command_line_dispatcher():
    from dynroute_lib.__main__ import main
    assert main(["--help"]) == 0 and main([]) == 2 and main(["nope"]) == 2
