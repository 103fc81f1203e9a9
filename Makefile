# Two commands on a fresh machine:
#   make demo       train the default experiment (resnet10t on digits, coarse labels, CPU) and print the table
#   make test       the fast tier: every code path, a few minutes on 2 cores (pytest -m "not slow and not slurm",
#                   2 xdist workers)
# and the complete tier that CI runs (.ci/run):
#   make test-all   everything, adding the long end-to-end fault, sweep, DDP and real-SLURM tests
#   make lint       ruff check + ruff format --check (CI runs it before the tests; `make format` fixes)
# All create .venv on first use and are quick once it exists.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Each run lists its slowest tests, so a slow test is visible the day it lands.
PYTEST   := $(BIN)/python -m pytest -q --durations=15 --durations-min=2
FAST_TIER := not slow and not slurm
# The fast tier runs in 2 pytest-xdist workers (one torch thread each, see tests/conftest.py), a
# module per worker: 94 s instead of 145 s on the 2-core box (2026-11-30). TEST_JOBS=0: one process.
TEST_JOBS ?= 2
XDIST     := $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

.PHONY: demo test test-all lint format install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ncfine-train $(ARGS)

test: $(STAMP)
	$(PYTEST) $(XDIST) -m "$(FAST_TIER)" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PYTEST) $(PYTEST_ARGS)

# The same checks as .pre-commit-config.yaml; configured in pyproject.toml ([tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) logs outputs multirun .pytest_cache
