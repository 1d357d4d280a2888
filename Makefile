# Set-up and everyday commands. `make install` creates .venv and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: install test test-fast lint train bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

test:
	$(PY) -m pytest -q

test-fast:  # everything but the end-to-end runs
	$(PY) -m pytest -q -m "not e2e"

lint:
	$(VENV)/bin/ruff check .

train:
	$(PY) train.py

bench:  # engine vs bare loop; SBI/CBI/tuple rates per core; LTW/DPL/DFFC steps vs baseline; DFFC prior ms/img
	$(PY) scripts/bench.py
	$(PY) scripts/bench_blend.py
	$(PY) scripts/bench_ltw.py
	$(PY) scripts/bench_dpl.py
	$(PY) scripts/bench_dffc.py

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
