# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if missing and installs the exact
# versions (with hashes) pinned in locks/; `make lock` refreshes the locks on purpose.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes --quiet

.PHONY: demo test check bench lock clean

$(BIN)/python: locks/pip.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r locks/pip.txt

$(VENV)/.core: locks/core.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r locks/core.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.test: locks/test.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r locks/test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(VENV)/.core $@

demo: $(VENV)/.core
	$(BIN)/agentml demo

# The gates first (seconds): lint, types, import contracts; then the tests.
check: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check
	$(BIN)/python -m pytest

bench: $(VENV)/.test
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# Re-resolve every dependency from pyproject.toml (the test lock first; the core lock is constrained to it, so both
# agree on every shared version). Commit both files.
lock: | $(BIN)/python
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra test $(LOCK_FLAGS) -o locks/test.txt
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -c locks/test.txt -o locks/core.txt

clean:
	rm -rf $(VENV) .pytest_cache
