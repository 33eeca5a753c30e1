# The two quick-start commands: `make demo` and `make test` (each sets up .venv first).
.PHONY: setup demo test test-fast lint

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/parity run --out parity-out

# PYTEST_ARGS: more pytest options, e.g. PYTEST_ARGS="-n 2 --dist loadscope" for two pytest-xdist workers (docs/testing.md)
test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	.venv/bin/python -m pytest -m "not slow and not networks" $(PYTEST_ARGS)

# mypy names the package after its folder; a clone's folder may have any name (ci-check), so it checks the
# package through a link called synctalk_parity
lint: setup
	.venv/bin/ruff check .
	@d=$$(mktemp -d) && ln -s "$(CURDIR)" "$$d/synctalk_parity" && cd "$$d" && \
	  "$(CURDIR)/.venv/bin/mypy" --config-file "$(CURDIR)/pyproject.toml" --no-namespace-packages -p synctalk_parity; \
	  status=$$?; rm -rf "$$d"; exit $$status
