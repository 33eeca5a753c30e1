# The two quick-start commands: `make demo` and `make test` (each sets up .venv first).
.PHONY: setup demo test test-fast lint

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/parity run --out parity-out

# WORKERS: pytest-xdist workers, each test module whole on one (2: measured 1.6x faster than one process on the 2-core
# machine, docs/testing.md; WORKERS=0 runs one process). Modules go to the workers heaviest first, as tests/conftest.py
# orders them from tests/module_seconds.json (--no-loadscope-reorder: not by their number of tests; it applies to
# loadfile too). PYTEST_ARGS: more pytest options.
WORKERS ?= 2
XDIST = $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile --no-loadscope-reorder)

test: setup
	.venv/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup
	.venv/bin/python -m pytest -m "not slow and not networks" $(XDIST) $(PYTEST_ARGS)

# mypy names the package after its folder; a clone's folder may have any name (ci-check), so it checks the
# package through a link called synctalk_parity
lint: setup
	.venv/bin/ruff check .
	@d=$$(mktemp -d) && ln -s "$(CURDIR)" "$$d/synctalk_parity" && cd "$$d" && \
	  "$(CURDIR)/.venv/bin/mypy" --config-file "$(CURDIR)/pyproject.toml" --no-namespace-packages -p synctalk_parity; \
	  status=$$?; rm -rf "$$d"; exit $$status
