# The two commands of README: `make sweep` and `make test`. Both build .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SWEEP  ?= sweeps/sweep_quick.yaml

.PHONY: venv sweep test test-frameworks lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,frameworks]'
	touch $(STAMP)

venv: $(STAMP)

sweep: venv
	$(BIN)/python tools/sweep.py --sweep-config $(SWEEP)

lint: venv
	$(BIN)/ruff check .

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Only the real-framework sweeps (also part of `make test`)
test-frameworks: venv
	$(BIN)/python -m pytest -m frameworks

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) log .pytest_cache .ruff_cache
