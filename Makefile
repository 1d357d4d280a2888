# Set-up and everyday commands. `make install` creates .venv and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: install test test-fast test-long test-slurm test-all lint train bench clean

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'

test:  # everything but the longest end-to-end runs (marked long) and the Slurm cluster's jobs (make test-slurm)
	$(PY) -m pytest -q -m "not long and not slurm"

test-fast:  # no end-to-end runs
	$(PY) -m pytest -q -m "not e2e and not long"

test-long:  # the longest end-to-end runs: learning on the benchmark, the default run, the sweeps, torchrun twins
	$(PY) -m pytest -q -m "long and not slurm"

test-slurm:  # jobs on a throwaway single-node Slurm cluster (as root, with Debian's slurmctld slurmd munge slurm-client)
	$(PY) -m pytest -q -m slurm

test-all:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .

train:
	$(PY) train.py

bench:  # first-use time; engine vs bare loop; blend rates; LTW/DPL/DFFC/DDP steps; predict.py faces/s; each detector vs the baseline
	$(PY) scripts/bench_defaults.py
	$(PY) scripts/bench.py
	$(PY) scripts/bench_blend.py
	$(PY) scripts/bench_ltw.py
	$(PY) scripts/bench_dpl.py
	$(PY) scripts/bench_dffc.py
	$(PY) scripts/bench_ddp.py
	$(PY) scripts/bench_predict.py
	$(PY) scripts/bench_detectors.py

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
