# Developer entry points. `make test` and `make demo` work from a fresh clone with only
# python3 on the machine: they create .venv and install the project into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Lint only the source folders that exist (examples/ and benchmarks/ may come later).
LINT_DIRS   := $(wildcard src tests examples benchmarks)
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k release -x"`.
PYTEST_ARGS ?=

.DEFAULT_GOAL := test
.PHONY: .venv venv test lint typecheck format demo bench clean distclean

# --- environment --------------------------------------------------------------------------

.venv: $(STAMP)
venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install whenever pyproject.toml changes (new dependency, new extra, new entry point).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# --- checks -------------------------------------------------------------------------------

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

# pytest runs under `coverage run` rather than pytest-cov: the bountyescrow pytest11 plugin is
# imported while pytest loads plugins, before pytest-cov would start measuring, so every
# module-level line of the package would be reported as missed.
test: lint typecheck
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage report

format: $(STAMP)
	$(BIN)/ruff format $(LINT_DIRS)
	$(BIN)/ruff check --fix $(LINT_DIRS)

# --- running ------------------------------------------------------------------------------

demo: $(STAMP)
	$(BIN)/python -m bountyescrow demo

bench: $(STAMP)
	$(BIN)/python benchmarks/lifecycle.py

# The long deterministic simulation checked by the money oracle (docs/verification.md):
# 100 seeds x 1,000 steps. Exits non-zero on any violation, printing the seed to replay.
# Extra arguments: `make soak SOAK_ARGS="--seeds 5 --store sqlite"`.
SOAK_ARGS ?=
.PHONY: soak
soak: $(STAMP)
	PYTHONHASHSEED=0 $(BIN)/python -m tests.simulation --seeds 100 --steps 1000 $(SOAK_ARGS)

# --- cleaning -----------------------------------------------------------------------------

clean:
	rm -rf build dist htmlcov .coverage .coverage.* coverage.xml \
		.pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
