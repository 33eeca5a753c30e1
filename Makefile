# The two quick-start commands: `make demo` and `make test` (each sets up .venv first).
.PHONY: setup demo test test-fast lint

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/parity run --out parity-out

test: setup
	.venv/bin/python -m pytest

test-fast: setup
	.venv/bin/python -m pytest -m "not slow"

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy .
