# SPOT-SoccerNet-Ball: one command per job. Every target sets up what it needs first.
#   make demo   - set up, then run the whole pipeline on the embedded synthetic library (under demo/)
#   make demo-video - the same pipeline without step 1: training, eval and inference decode the videos (demo-video/)
#   make test   - set up (dev tools too), then run the whole test suite
#   make test-fast - the unit tests only (no end-to-end runs, no browser): the edit-test loop, under a minute
#   make lint   - ruff check + ruff format --check
#   make bench  - benchmarks of the hot paths (prints ratios against baselines measured in the same run)
#   make gpu-check - prove every CUDA path on the GPU(s) here and measure them (gpu-report.json); no GPU: says so.
#                    GPU_CHECK_ARGS="--plan --gpus 8 --capability 7.0": what it runs on such a node (no GPU needed)
#   make app    - the web app on the demo model
#   make clean  - remove demo/ outputs and caches (keeps .venv)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# The venv is keyed on the requirements files' content: an up-to-date venv is not reinstalled.
REQ_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
RUNTIME_STAMP := $(VENV)/.runtime-$(REQ_HASH)
DEV_STAMP := $(VENV)/.dev-$(DEV_HASH)

DEMO_DIR ?= demo
PYTEST_ARGS ?=
# Test processes (pytest-xdist; 0 = this process), sharing work as they free up (worksteal). Two on this 2-core
# machine: 479 tests in 321 s against 411 s in one process, with OpenMP's idle threads sleeping instead of spinning
# (OMP_WAIT_POLICY=PASSIVE): spinning threads of one process stole the cores of the other (an earlier try without
# it, 20.5 vs 15 min). PASSIVE is the default for the test targets only; an explicit setting wins.
PYTEST_WORKERS ?= 2
PYTEST_DIST = $(if $(filter 0,$(PYTEST_WORKERS)),,--dist worksteal)
test test-fast: export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-dev demo demo-video test test-fast lint format bench gpu-check app clean system-deps fast-alloc

setup: $(RUNTIME_STAMP)
setup-dev: $(DEV_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(VENV)/bin/python
	$(PIP) install -q -r requirements.txt
	rm -f $(VENV)/.runtime-*
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt $(RUNTIME_STAMP)
	$(PIP) install -q -r requirements-dev.txt
	rm -f $(VENV)/.dev-*
	touch $@

demo: setup fast-alloc
	$(PY) -m synthetic.demo --out $(DEMO_DIR)

# The same demo without step 1: every step reads the video library, decoding frames on the fly (no JPEG written).
demo-video: setup fast-alloc
	$(PY) -m synthetic.demo --out $(DEMO_DIR)-video --from_video

# The scripts re-execute themselves with tcmalloc (util/allocator.py); pytest runs in-process, so it is preloaded here.
test: setup-dev system-deps
	@$(WITH_TCMALLOC) set -x; $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_DIST) $(PYTEST_ARGS)

# Unit tests: everything not marked slow (end-to-end runs, training, servers) or browser.
test-fast: setup-dev
	@$(WITH_TCMALLOC) set -x; $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_DIST) -m "not slow and not browser" $(PYTEST_ARGS)

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup-dev fast-alloc
	$(PY) -m benchmarks

# GPU_CHECK_ARGS: more flags of benchmarks/gpu_check.py, e.g. --plan --gpus 8 --capability 7.0 (runs nothing).
GPU_CHECK_ARGS ?=
gpu-check: setup-dev
	$(PY) -m benchmarks.gpu_check --out gpu-report.json $(GPU_CHECK_ARGS)

app: setup fast-alloc
	$(PY) app/app.py --model_dir $(DEMO_DIR)/model

# tcmalloc, the faster allocator (util/allocator.py; SPOT_ALLOCATOR=system switches it off). Preloaded for pytest.
TCMALLOC_LIBS = /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4
WITH_TCMALLOC = TC=$$(ls $(TCMALLOC_LIBS) 2>/dev/null | head -n 1); \
	if [ -n "$$TC" ] && [ "$(SPOT_ALLOCATOR)" != system ]; then \
		export LD_PRELOAD="$$TC" TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=1099511627776; fi;
# Debian packages, installed only when missing: apt-get install with sudo unless root.
APT_INSTALL = if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
HAVE_TCMALLOC = [ -n "$$(ls $(TCMALLOC_LIBS) 2>/dev/null)" ]

# System packages the tests need (Debian's Chromium for the browser tests, tcmalloc), installed only when missing.
system-deps:
	@PKGS=; [ -x /usr/bin/chromium ] || PKGS=chromium; \
	$(HAVE_TCMALLOC) || [ "$(SPOT_ALLOCATOR)" = system ] || PKGS="$$PKGS libtcmalloc-minimal4"; \
	if [ -n "$$PKGS" ]; then echo "Installing Debian's$$PKGS (apt-get)"; $(APT_INSTALL) $$PKGS; fi

# tcmalloc alone, for demo/bench/app: optional (a failed install only costs speed; the scripts say how once).
fast-alloc:
	@if ! $(HAVE_TCMALLOC) && [ "$(SPOT_ALLOCATOR)" != system ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's libtcmalloc-minimal4 (about 1.3x faster CPU training; SPOT_ALLOCATOR=system skips it)"; \
		( $(APT_INSTALL) libtcmalloc-minimal4 ) || echo "could not install tcmalloc: going on with glibc's allocator"; \
	fi

clean:
	rm -rf $(DEMO_DIR) $(DEMO_DIR)-video .pytest_cache .ruff_cache test-artifacts bench-out gpu-report.json
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
