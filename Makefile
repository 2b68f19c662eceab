# The commands of the README: `make demo`, `make test` (the whole suite, what CI runs) and
# `make check` (the fast lane: ruff and every test not marked slow, under a minute on two cores).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test check lint bench clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || $(PY) -m pip install --quiet "torch>=2.4,<3" "torchvision>=0.19,<1"
	$(PY) -m pip install --quiet -e ".[dev,sweep,gym]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tiercut demo

# The HTML report test (tests/test_report_browser.py) drives Debian's Chromium headless.
# Install it from Debian's packages when missing; where apt-get cannot (no apt, not root,
# no network) say so and go on: that test is then skipped with the same message.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the HTML report test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed with apt-get: the HTML report test will be skipped"; \
	else echo "chromium is missing and apt-get is unavailable (or not root): the HTML report test will be skipped"; fi

# Two processes, each test file on one of them (a file's module fixtures, such as a worker process or a
# local Ray, start once).
test: $(STAMP) chromium
	$(PY) -m ruff check src tests benchmarks tools
	$(PY) -m pytest -n 2 --dist loadfile

# Zoo-wide parametrisations keep one model here (tests/lanes.py); worker processes, long
# hypothesis runs and whole-zoo sweeps are marked slow and run in `make test` only.
check: $(STAMP)
	$(PY) -m ruff check src tests benchmarks tools
	$(PY) -m pytest -m "not slow" -n 2

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks tools

bench: $(STAMP)
	$(PY) benchmarks/graph_extraction.py
	$(PY) benchmarks/prediction_accuracy.py
	$(PY) benchmarks/device_transfer.py
	$(PY) benchmarks/host_calibration.py
	$(PY) benchmarks/planners.py
	$(PY) benchmarks/migration_experiment.py
	$(PY) benchmarks/simulator.py
	$(PY) benchmarks/runtime_fidelity.py
	$(PY) benchmarks/neurosurgeon_table.py
	$(PY) benchmarks/early_exit.py
	$(PY) benchmarks/spatial.py
	$(PY) benchmarks/compression.py
	$(PY) benchmarks/cut_compression.py
	$(PY) benchmarks/dynamic.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/pipelining.py
	$(PY) benchmarks/sweep.py
	$(PY) benchmarks/allocation.py

clean:
	rm -rf $(VENV) report
