# The two commands of README: `make sweep` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SWEEP  ?= sweeps/sweep_quick.yaml

.PHONY: venv sweep test lint bench bench-peers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

sweep: venv
	$(BIN)/python tools/sweep.py --sweep-config $(SWEEP)

lint: venv
	$(BIN)/ruff check .

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/run_all.py

# gpusweep beside Ray Tune and Optuna (installs the optional extra `peers` into .venv)
bench-peers: venv
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[peers]'
	$(BIN)/python bench/run_all.py --only peers

clean:
	rm -rf $(VENV) log .pytest_cache .ruff_cache
