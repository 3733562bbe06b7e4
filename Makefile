# The two commands of README: `make sweep` and `make test`. Both build .venv when it is missing.
# `make gpu-check` is for a machine with a GPU; `make gpu-wheels` prepares what it needs there.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SWEEP  ?= sweeps/sweep_quick.yaml

# gpu-check runs with the Python (and torch) it finds: .venv's, else python3. It installs nothing.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
# What a CUDA PyTorch image without gpusweep lacks (the lent H200's has torch, numpy, pandas,
# psutil, pyyaml, rich, matplotlib, scipy, scikit-learn, nvidia-ml-py): wandb and W&B's sweeps
# engine with their dependencies, pinned to .venv's versions, as CPython 3.12 wheels.
GPU_WHEELS := wandb==0.31.0 sweeps==0.3.0 cwevals==0.0.1b1 annotated-types==0.8.0 \
	distro==1.9.0 googleapis-common-protos==1.76.0 jsonref==1.1.0 jsonschema==4.26.0 \
	jsonschema-specifications==2025.9.1 opentelemetry-api==1.45.2 \
	opentelemetry-exporter-http-transport==0.66b2 opentelemetry-exporter-otlp-common==0.66b2 \
	opentelemetry-exporter-otlp-proto-common==1.45.2 \
	opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-proto==1.45.2 \
	opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2 platformdirs==4.14.9 \
	pydantic==2.14.4 pydantic-core==2.50.5 referencing==0.37.0 rpds-py==2026.9.1 \
	sniffio==1.3.1 typing-inspection==0.4.5 typing-extensions==4.16.0
WHEEL_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64

.PHONY: venv sweep test test-frameworks lint bench bench-peers clean gpu-check gpu-wheels

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,frameworks,stockpred]'
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

# gpusweep beside Ray Tune and Optuna (installs the optional extra `peers` into .venv)
bench-peers: venv
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[peers]'
	$(BIN)/python bench/run_all.py --only peers

gpu-check:
	$(GPU_PYTHON) tools/gpu_check.py

gpu-wheels: venv
	$(BIN)/python -m pip download -q --disable-pip-version-check --no-deps \
		--only-binary=:all: --python-version 3.12 --implementation cp $(WHEEL_PLATFORMS) \
		-d .whl $(GPU_WHEELS)

clean:
	rm -rf $(VENV) log .pytest_cache .ruff_cache
