# make run   set everything up, run the pipeline on the default dataset, compare its metrics with the committed ones
# make test  set everything up and run the test suite

VENV := .venv
PYTHON := $(VENV)/bin/python
SYSTEM_PYTHON ?= python3
# Stage commands in dvc.yaml call `python`, `dvc` comes from the virtual environment.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system run test clean

setup: system $(VENV)/.installed

system:
	@bash scripts/setup_system.sh

$(VENV)/.installed: requirements.txt pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: setup
	dvc repro
	dvc metrics diff --all

# The suite runs in TEST_JOBS processes (pytest-xdist), each test file whole in one of them (a file's
# tests share its fixtures: one `dvc repro` for the end-to-end file), the slowest files first
# (tests/conftest.py: SLOW_FILES); TEST_JOBS=0 runs it in one process. The ten slowest tests are listed at
# the end, to keep the suite within its budget (make test under 10 minutes on a 2-core machine).
TEST_JOBS ?= 2

test: setup
	$(PYTHON) -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=10

clean:
	rm -rf $(VENV) .pytest_cache
