# crit-plus: `make demo` and `make test` do every set-up step themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   := build/demo
DEMO_LXD := $(DEMO)/lxd-web/var/lib/lxd
DEMO_SNAPSHOT := $(DEMO_LXD)/storage-pools/default/containers-snapshots/web/after/state

.PHONY: setup schema criu zdtm zdtm-build demo check test test-skew bench fuzz clean

## setup: system packages (criu → pycriu), the current CRIU schema, a venv with crit-plus
setup: $(VENV)/.installed schema

$(VENV)/.installed: pyproject.toml scripts/install-system-deps
	scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

## schema: build pycriu from CRIU 4.2.1's sources (Debian's source package) for crit-plus
schema:
	scripts/build-pycriu >/dev/null

## criu: a working CRIU >= 4.2 for the live tests (built once from Debian's 4.2.1 source
##       package when the distribution's is too old; cached under /var/cache/crit-plus)
criu:
	scripts/install-criu >/dev/null

## zdtm: CRIU's own zdtm test programs (test/zdtm/static of the CRIU source `make criu`
##       uses) built, each one safe on this machine dumped, restored and asked for its
##       verdict, every dump checked by crit-plus; images, logs and results.tsv in
##       build/zdtm/<criu version>/, cached (docs/live.md; 30 minutes the first time)
zdtm: setup criu
	CRIT_PLUS_CRIU="$${CRIT_PLUS_CRIU:-$$(scripts/install-criu)}" $(BIN)/python scripts/zdtm

## zdtm-build: only build the zdtm programs (their build dependencies installed)
zdtm-build:
	$(PYTHON) scripts/zdtm --build-only >/dev/null

$(DEMO_SNAPSHOT):
	mkdir -p $(DEMO)/lxd-web
	tar -xzf fixtures/lxd-web.tar.gz -C $(DEMO)

## demo: run crit-plus on a bundled real LXD stateful snapshot
demo: setup $(DEMO_SNAPSHOT)
	$(BIN)/crit-plus version
	@echo; echo '# What is in it? (a real LXD stateful snapshot; no page data is read)'
	$(BIN)/crit-plus summarize --lxd-dir $(DEMO_LXD) lxd:web/after
	@echo; echo '# Will `lxc restore` bring it back? (exit 0 clean, 1 warnings with --strict, 2 errors)'
	$(BIN)/crit-plus validate --lxd-dir $(DEMO_LXD) lxd:web/after; echo "(validate exited $$?)"
	@echo; echo '# What changed since the snapshot before it? (exit 0 same, 1 different)'
	$(BIN)/crit-plus diff --no-content --lxd-dir $(DEMO_LXD) lxd:web/before lxd:web/after; \
	  echo "(diff exited $$?)"
	@echo; echo '# Where do its bytes go?'
	$(BIN)/crit-plus size --top 3 --lxd-dir $(DEMO_LXD) lxd:web/after
	@echo; echo "# What CRIU's crit shows, the same JSON"
	$(BIN)/crit-plus info $(DEMO_SNAPSHOT)/pstree.img
	$(BIN)/crit-plus show $(DEMO_SNAPSHOT)/pstree.img | head -n 12

## check: ruff (the rule set in pyproject.toml) and mypy (type hints of the public API),
##        over the whole tree, in seconds (docs/development.md)
check: $(VENV)/.installed
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy

## test: `make check`, the whole suite with the current schema (live CRIU tests included: they
##       must run, not skip; a sample of 60 zdtm programs among them), then the version-skew
##       suite under the distribution's older pycriu
test: setup criu zdtm-build check
	CRIT_PLUS_LIVE=required CRIT_PLUS_CRIU="$${CRIT_PLUS_CRIU:-$$(scripts/install-criu)}" \
	  $(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-skew

test-skew:
	CRIT_PLUS_PYCRIU=system $(BIN)/python -m pytest -q -m skew tests/test_schema_skew.py

## bench: the benchmarks in tests/benchmarks (numbers go to docs/performance.md)
bench: setup
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-enable -p no:cacheprovider

## fuzz: coverage-guided fuzzing of the decoders with atheris for FUZZ_TIME seconds
##       (corpus and findings in build/fuzz/; keep a finding as a test: tests/fuzz_atheris.py)
FUZZ_TIME ?= 60
fuzz: setup
	@$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install -q -e '.[fuzz]' || \
	  { echo "make fuzz: atheris cannot be installed into $(VENV) (it needs a wheel for this" \
	    "Python and platform, or clang to build one); the test suite does not need it" >&2; exit 1; }
	$(BIN)/python -m tests.fuzz_atheris -max_total_time=$(FUZZ_TIME)

clean:
	rm -rf $(VENV) build .pytest_cache
