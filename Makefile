# Every target creates its own environment from the locked dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit lint chaos bench lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "installing the locked dependencies into $(VENV) (about a minute the first time) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	@echo "installing orchestrator (editable) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)
	@echo "ready: $(BIN)/orchestrator --help"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/orchestrator demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not chaos"

# The fast tier alone: pure unit tests and the doctests in src (no database, no servers).
unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit src

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos tests/chaos

bench: $(STAMP)
	$(BIN)/python -m bench

lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	# the image's lock: runtime dependencies only, at the versions of requirements.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -c requirements.lock -o requirements.prod.lock

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache .mypy_cache .ruff_cache
