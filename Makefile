# The two commands a newcomer needs (see README.md): `make demo` and `make test`.
# The tiers, fastest first (README "Tests"):
#   make check        ruff, ruff format --check, mypy (packages, tests, benchmarks)   < 1 minute
#   make unit         the unit tier: in process, no engine                            < 3 minutes
#   make test         check + unit + integration (real engine, tiny twins): what CI runs
#   make test-images  the full ResNet-50 matrix of every image family                  ~ 15 minutes
# Not a test: `make bench` measures (~15 minutes) and names figures worse than the ones kept
# in benchmarks/figures/ by more than 10%; `make bench-accept` keeps this run's figures.
.PHONY: demo test test-images check unit venv golden unit-and-integration bench bench-accept

# pytest-xdist workers; a family's image is built once whatever the number.
WORKERS ?= 2
PYTEST := .venv/bin/python -m pytest -n $(WORKERS) --dist loadscope

# Build an image and run a benchmark in it (offline: synthetic weights, bootstrapped base).
demo:
	scripts/with-engine.sh scripts/demo.sh

# What CI runs (.ci/run): set-up (engine, registry, base image, venv), lint, then the unit
# and integration tiers in one pytest run, the 25 slowest tests listed at the end.
test:
	scripts/with-engine.sh $(MAKE) --no-print-directory check unit-and-integration

# The full ResNet-50-shaped matrix of every image family (every scenario, accuracy,
# read-only, as its own user): minutes per family.
test-images:
	scripts/with-engine.sh sh -c '$(PYTEST) --run-images --durations=25 tests/images'

# pytest exits 5 when it collected no tests: for us that is a broken suite, say so.
unit-and-integration: venv
	@$(PYTEST) --run-docker --durations=25 tests/unit tests/integration; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; fi; exit $$rc

# Fast tests only: no engine, no network (a guard fails any test that tries).
unit: venv
	$(PYTEST) tests/unit

check: venv
	.venv/bin/ruff check toolkit entrypoints tests benchmarks
	.venv/bin/ruff format --check toolkit entrypoints tests benchmarks
	.venv/bin/mypy
	.venv/bin/mypy tests benchmarks

venv:
	@scripts/venv.sh

# Regenerate tests/golden/ from the templates (review the diff before committing).
golden: venv
	.venv/bin/python -m tests.golden.regenerate

# The benchmarks of issue 27, as their figures were first taken; figures in benchmarks/figures/.
BENCH_OUT ?= /tmp/mlbox-bench-figures
bench: venv
	rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	.venv/bin/python benchmarks/harness_overhead.py --seconds 6 --json $(BENCH_OUT)/harness_overhead.json \
		--parts resnet50,tiny-offline,tiny-server,torch-fp32,torch-int8,tf-fp32,tflite-fp32,tflite-int8
	.venv/bin/python benchmarks/startup_and_duration.py --durations 10 --models tiny,resnet50 \
		--runners inline,threadpool --json $(BENCH_OUT)/startup_and_duration.json
	.venv/bin/python benchmarks/figures.py compare benchmarks/figures $(BENCH_OUT)

bench-accept:
	mkdir -p benchmarks/figures && cp $(BENCH_OUT)/*.json benchmarks/figures/
