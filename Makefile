# Two commands work on a fresh machine: `make train` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install train test test-fast lint format bench gpu-check device-wheels clean

install: $(STAMP)

# Idempotent: rebuilds only when the project metadata or the pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

train: install
	$(VENV)/bin/cyclegan-train experiment=sample

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The quick local loop: everything but the long end-to-end runs (marked `slow`); `make test` runs all.
test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) benchmarks/instance_norm.py
	$(PY) benchmarks/data.py
	$(PY) benchmarks/train_step.py

# Issue 12's GPU check. Here (no CUDA) a dry run with tiny sizes; on the device machine run
# `bash benchmarks/gpu_check.sh` itself (its image has no network for `make install`). See BENCHMARKS.md.
gpu-check: install
	PYTHON=$(PY) bash benchmarks/gpu_check.sh

# The pure-Python wheels the device image lacks, for `carry=[".whl"]` (the device has no network).
device-wheels: install
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl torchdata==0.11.0

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
