# ccs: the two commands are `make demo` and `make test`; both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE_STAMP := $(VENV)/.stamp-base
DEV_STAMP  := $(VENV)/.stamp-dev
PYTEST_ARGS ?=

.PHONY: demo test proto lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ccs needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package definition changes (the install is editable).
$(BASE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e .
	@touch $@

$(DEV_STAMP): pyproject.toml $(BASE_STAMP)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

demo: $(BASE_STAMP)
	$(BIN)/ccs demo

test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

proto: $(DEV_STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. proto/ccs/v1/*.proto

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

bench: $(BASE_STAMP)
	$(BIN)/python benchmarks/rating.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-output
