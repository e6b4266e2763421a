# The two commands a newcomer needs (see README.md): `make demo` and `make test`.
.PHONY: demo test unit-and-integration unit lint golden

# Build an image and run a benchmark in it (offline: synthetic weights, bootstrapped base).
demo:
	scripts/with-engine.sh scripts/demo.sh

# Everything: lint, unit tests, and integration tests against a real engine and registry.
test:
	scripts/with-engine.sh $(MAKE) --no-print-directory lint unit-and-integration

# pytest exits 5 when it collected no tests: for us that is a broken suite, say so.
unit-and-integration:
	@.venv/bin/python -m pytest --run-docker --durations=25; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; fi; exit $$rc

# Fast tests only: no engine, no network.
unit:
	.venv/bin/python -m pytest tests/unit

lint:
	.venv/bin/ruff check toolkit entrypoints tests
	.venv/bin/mypy

# Regenerate tests/golden/ from the templates (review the diff before committing).
golden:
	.venv/bin/python -m tests.golden.regenerate
