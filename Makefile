# litlab: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch/torchvision are pinned here only to the builds that this kind of machine
# keeps on local disk; pyproject.toml itself accepts a range.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: install install-dev train test test-fast test-gpu clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q $(TORCH_PINS) || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e .
	touch $@

$(STAMP_DEV): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)
install-dev: $(STAMP_DEV)

## Train the default experiment (CNN on scikit-learn's digits).
train: $(STAMP)
	$(PY) -m litlab.train $(ARGS)

# test processes side by side: most tests wait on subprocesses (a run's start-up, a DDP rank, a
# signal's timeout), so three keep two cores busy (on 2 cores: 9 min 19 s with two, 7 min 13 s
# with three; make test TEST_WORKERS=0 runs them one by one)
TEST_WORKERS ?= 3

## Run the whole test suite (slow cases included).
test: $(STAMP_DEV)
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(ARGS)

## Skip the cases marked slow.
test-fast: $(STAMP_DEV)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(ARGS)

## Only the checks that need a CUDA GPU (tests marked gpu and the GPU benchmark).
test-gpu: $(STAMP_DEV)
	PY=$(PY) scripts/gpu_checks.sh

clean:
	rm -rf outputs/runs outputs/multiruns .pytest_cache
