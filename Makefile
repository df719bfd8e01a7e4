# Everything a fresh machine needs is installed by these targets (python3 with venv, node/npm).
PY      := .venv/bin/python
STAMP   := .venv/.installed
PYSRC   := actors runtime sdk iii_trio

.PHONY: setup serve test check soak lint typecheck sdks services examples-deps compat bench bench-deps clean

setup: $(STAMP) .typecheck/iii_trio

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# mypy cannot follow setuptools' editable import hook, so it reads the package through
# a farm of symlinks that mirrors the installed layout (iii_trio.actors -> actors/, ...).
.typecheck/iii_trio:
	mkdir -p .typecheck/iii_trio
	ln -sfn ../../iii_trio/__init__.py .typecheck/iii_trio/__init__.py
	ln -sfn ../../iii_trio/py.typed .typecheck/iii_trio/py.typed
	for pkg in actors runtime sdk; do ln -sfn ../../$$pkg .typecheck/iii_trio/$$pkg; done

# The official SDKs the conformance tests drive, each in its own cached folder under .deps/.
sdks:
	bash scripts/install_sdks.sh

# redis-server and nats-server from the Debian packages (tests start their own on free ports).
services:
	bash scripts/install_services.sh

# The examples' Node dependencies (official SDK, tsx), from examples/node/package-lock.json.
examples-deps: examples/node/node_modules/.installed

examples/node/node_modules/.installed: examples/node/package-lock.json
	cd examples/node && npm ci --silent --no-audit --no-fund
	touch $@

serve: setup
	.venv/bin/iii-trio serve --config config.yaml

# The import contract (tests/test_layering.py: actors <- wire <- core <- modules <- engine <- cli,
# sdk <- wire) is part of lint.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/pytest -q -p no:cacheprovider tests/test_layering.py

typecheck: setup
	.venv/bin/mypy -p iii_trio

test: setup sdks services examples-deps lint typecheck
	.venv/bin/pytest

# Lint, types and the fast tests: every test that starts no other OS process (the others are
# marked slow, tests/conftest.py); under 2 minutes, and needs neither the SDKs nor redis.
check: setup lint typecheck
	.venv/bin/pytest -q -p no:cacheprovider -m "not slow"

# The reliability suite's long run (docs/reliability.md): the soak for an hour and the fuzzers
# with 20 times their examples. Both knobs can be set: make soak RELIABILITY_SOAK_SECONDS=600
RELIABILITY_SOAK_SECONDS ?= 3600
RELIABILITY_FUZZ_EXAMPLES ?= 20
soak: setup sdks services
	RELIABILITY_SOAK_SECONDS=$(RELIABILITY_SOAK_SECONDS) \
	RELIABILITY_FUZZ_EXAMPLES=$(RELIABILITY_FUZZ_EXAMPLES) \
		.venv/bin/pytest tests/reliability -p no:cacheprovider -q

# docs/compatibility.md from the conformance results (never written by hand).
compat: setup sdks
	.venv/bin/pytest tests/conformance --junitxml=build/conformance.xml -q
	$(PY) scripts/compat_matrix.py build/conformance.xml docs/compatibility.md

# The peers the benchmarks compare with (Crossbar.io, nats-py) in .deps/bench-peers.
bench-deps:
	bash scripts/install_bench_deps.sh

bench: setup sdks services bench-deps
	$(PY) bench/run.py
	$(PY) bench/modules.py
	$(PY) bench/http_routes.py
	$(PY) bench/observability.py

clean:
	rm -rf .venv .deps .typecheck build dist *.egg-info
