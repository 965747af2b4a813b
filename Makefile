# One task runner for the course. `make demo` and `make test` are the README's commands.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-packages demo test test-fast lint format release goldens clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exact pins first (torch resolves to the local CPU wheel), then the package itself.
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Debian packages the course runs with: bubblewrap (the grading kernel's filesystem
# allowlist) and postgresql (the server the gradebook tests start on loopback).
# Installed with apt-get when missing and this user may (root, or sudo without a
# password); otherwise the missing ones are named and what needs them says so.
SYSTEM_PACKAGES := bubblewrap postgresql
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	  echo "warning: Debian packages missing:$$missing (install them: sudo apt-get install$$missing)"; exit 0; fi; \
	echo "installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y -q --no-install-recommends $$missing >/dev/null \
	  || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q --no-install-recommends $$missing >/dev/null; } \
	  || echo "warning: could not install$$missing"

## demo: release the course and grade the bundled sample class, showing the results
demo: system-packages $(VENV)/.installed
	$(BIN)/autograder demo

## test: lint and run the whole test suite (what CI runs)
test: system-packages $(VENV)/.installed
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
