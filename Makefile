# crit-plus: `make demo` and `make test` do every set-up step themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   := build/demo
DEMO_SNAPSHOT := $(DEMO)/lxd-web/var/lib/lxd/storage-pools/default/containers-snapshots/web/after/state

.PHONY: setup schema criu demo test test-skew bench clean

## setup: system packages (criu → pycriu), the current CRIU schema, a venv with crit-plus
setup: $(VENV)/.installed schema

$(VENV)/.installed: pyproject.toml scripts/install-system-deps
	scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## schema: build pycriu from CRIU 4.2.1's sources (Debian's source package) for crit-plus
schema:
	scripts/build-pycriu >/dev/null

## criu: a working CRIU >= 4.2 for the live tests (built once from Debian's 4.2.1 source
##       package when the distribution's is too old; cached under /var/cache/crit-plus)
criu:
	scripts/install-criu >/dev/null

$(DEMO_SNAPSHOT):
	mkdir -p $(DEMO)/lxd-web
	tar -xzf fixtures/lxd-web.tar.gz -C $(DEMO)

## demo: run crit-plus on a bundled real LXD stateful snapshot
demo: setup $(DEMO_SNAPSHOT)
	$(BIN)/crit-plus version
	$(BIN)/crit-plus info $(DEMO_SNAPSHOT)/pstree.img
	$(BIN)/crit-plus show $(DEMO_SNAPSHOT)/pstree.img
	$(BIN)/crit-plus show $(DEMO_SNAPSHOT)/core-1.img | head -n 30

## test: the whole suite with the current schema (live CRIU tests included: they must run,
##       not skip), then the version-skew suite under the distribution's older pycriu
test: setup criu
	CRIT_PLUS_LIVE=required $(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-skew

test-skew:
	CRIT_PLUS_PYCRIU=system $(BIN)/python -m pytest -q -m skew tests/test_schema_skew.py

## bench: the benchmarks in tests/benchmarks (numbers go to docs/performance.md)
bench: setup
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-enable -p no:cacheprovider

clean:
	rm -rf $(VENV) build .pytest_cache
