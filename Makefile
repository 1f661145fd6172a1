# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# torch is pinned and installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	sh scripts/install-browser.sh
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/hubgate serve

test: $(STAMP_DEV)
	@sh scripts/install-browser.sh  # cheap when chromium is there; the browser tests must run, not skip
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(BIN)/ruff check proxy tests bench
	$(BIN)/ruff format --check proxy tests bench
	$(BIN)/mypy proxy

bench: $(STAMP_DEV)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) data
