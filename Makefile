# Two commands for a fresh machine: `make demo` and `make test` (each creates .venv if missing).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/mixture-ray demo --out-dir demo_out

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -q

bench-quick: setup
	$(BIN)/python benchmarks/bench_tiling.py --quick --out bench_out/tiling.json

clean:
	rm -rf demo_out bench_out .pytest_cache .mypy_cache .ruff_cache
