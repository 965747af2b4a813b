# One task runner for the course. `make demo` and `make test` are the README's commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast lint format release goldens clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exact pins first (torch resolves to the local CPU wheel), then the package itself.
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

## demo: release the course and grade the bundled sample class, showing the results
demo: $(VENV)/.installed
	$(BIN)/autograder demo

## test: lint and run the whole test suite (what CI runs)
test: $(VENV)/.installed
	$(BIN)/ruff check autograder tests benchmarks
	$(BIN)/ruff format --check autograder tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile

## test-fast: skip the slow end-to-end tests
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow and not browser"

lint: $(VENV)/.installed
	$(BIN)/ruff check autograder tests benchmarks

format: $(VENV)/.installed
	$(BIN)/ruff format autograder tests benchmarks
	$(BIN)/ruff check --fix autograder tests benchmarks

## release: lint the instructor notebooks and regenerate release/
release: $(VENV)/.installed
	$(BIN)/autograder release

## goldens: refresh the committed release notebooks (same as release)
goldens: release

clean:
	rm -rf build artifacts gradebook.db submitted autograded feedback downloaded grades.csv
