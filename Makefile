# Set-up and everyday commands. `make install` creates .venv and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: install test test-fast test-long test-all lint train bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

test:  # everything but the few longest end-to-end runs (marked long)
	$(PY) -m pytest -q -m "not long"

test-fast:  # no end-to-end runs
	$(PY) -m pytest -q -m "not e2e and not long"

test-long:  # the longest end-to-end runs (minutes each): learning on the benchmark, the default run, ProDet's run
	$(PY) -m pytest -q -m long

test-all:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .

train:
	$(PY) train.py

bench:  # defaults first-use time; engine vs bare loop; SBI/CBI/tuple rates; LTW/DPL/DFFC steps vs baseline; predict.py faces/s
	$(PY) scripts/bench_defaults.py
	$(PY) scripts/bench.py
	$(PY) scripts/bench_blend.py
	$(PY) scripts/bench_ltw.py
	$(PY) scripts/bench_dpl.py
	$(PY) scripts/bench_dffc.py
	$(PY) scripts/bench_predict.py

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
