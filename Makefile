# photoq: `make run` starts the service, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# photoq.pyz: one file holding photoq and its dependencies, for the interpreter that will run it.
PYZ_PYTHON ?= $(PYTHON)
PYZ        ?= dist/photoq.pyz

.PHONY: run test bench bench-load bench-memory pyz clean browser jpegtran

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/photoq serve

# The web UI tests drive Debian's Chromium; install it when missing and we may.
browser:
	@bash .ci/ensure-chromium

# tests/test_fast_jpeg.py recodes a JPEG with libjpeg-turbo's jpegtran (arithmetic coding): Debian's
# libjpeg-turbo-progs, installed when missing and we may (the test is skipped without it).
jpegtran:
	@command -v jpegtran >/dev/null || [ "$$(id -u)" -ne 0 ] || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends libjpeg-turbo-progs >/dev/null 2>&1 || \
	  { apt-get update >/dev/null && apt-get install -y --no-install-recommends libjpeg-turbo-progs >/dev/null; }; }

test: $(STAMP) browser jpegtran
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# PyTurboJPEG (compared with simplejpeg) loads Debian's libturbojpeg0; without it that column reads n/a.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@[ -e /usr/lib/$$(uname -m)-linux-gnu/libturbojpeg.so.0 ] || [ "$$(id -u)" -ne 0 ] || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libturbojpeg0 >/dev/null 2>&1 || true
	$(BIN)/python bench/run.py

# 20 concurrent uploaders x 50 photos against a live server with busy workers; prints p50/p95/p99 upload latency.
bench-load: $(STAMP)
	$(BIN)/python bench/load.py

# [processing] memory_budget_mb vs no limit: 8 x 50 MP panoramas, workers=4, peak tree RSS and time, then both under
# a memory cgroup the size of a 2 GB Pi's share (when this machine allows one); writes bench/MEMORY.md. About 3 minutes.
bench-memory: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/memory_budget.py

# Compiled wheels inside: build it on the machine type (and Python version) it will run on, e.g. on the Pi.
pyz: $(STAMP)
	$(BIN)/python deploy/build_pyz.py --python $(PYZ_PYTHON) --output $(PYZ)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache build dist
