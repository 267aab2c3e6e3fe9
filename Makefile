# Two entry points (README): `make run` and `make test`. Both create .venv/ from nothing first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test smoke
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Main job: every notebook on the embedded synthetic data (CPU scale) -> results/_synthetic/
run: setup
	$(BIN)/python -m dynroute_lib run --profile cpu -p DATA synthetic --results-root results/_synthetic

# Whole test suite (unit, official-fixture exactness, notebooks, real-browser inspector)
test: setup
	$(BIN)/python -m pytest -q

smoke: setup
	$(BIN)/python -m dynroute_lib run --smoke
