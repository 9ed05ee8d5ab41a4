# Two commands for a fresh machine: `make demo` and `make test` (each creates .venv if missing).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser slurm demo test lint docs bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the review-page browser test (skips with a reason where it cannot install).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium could not be installed: the browser test will skip"

# Debian's Slurm and munge for the one-node Slurm test (tests/cluster_path/test_slurm.py; skips where missing).
slurm:
	@{ command -v slurmctld && command -v slurmd && command -v munged && command -v sbatch; } >/dev/null 2>&1 \
		|| { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		munge slurmctld slurmd slurm-client >/dev/null; } \
		|| echo "Slurm could not be installed: the Slurm test will skip"

demo: setup
	$(BIN)/mixture-ray demo --out-dir demo_out

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup browser slurm lint
	$(BIN)/pytest -q

# The generated CLI reference (tests/test_cli_reference.py fails when it is out of date).
docs: setup
	$(BIN)/python -m mixture_ray.cli_reference docs/cli.md

bench-quick: setup
	$(BIN)/python benchmarks/bench_tiling.py --quick --out bench_out/tiling.json

clean:
	rm -rf demo_out bench_out .pytest_cache .mypy_cache .ruff_cache
