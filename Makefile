# spinetrack: two commands do all set-up on a fresh machine.
#   make demo   create .venv, install, generate a synthetic series, run the pipeline
#   make test   install the test extras (napari, PyQt6, dask) and run the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   ?= demo

.PHONY: demo test install install-test bench clean help

help:
	@echo "make demo   - set up .venv and run spinetrack end to end on a generated series"
	@echo "make test   - set up .venv with test extras and run the whole test suite"
	@echo "make bench  - run the benchmarks (minutes; results go to bench/RESULTS.md)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.install-base: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[parquet]"
	@touch $@

$(VENV)/.install-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@ $(VENV)/.install-base

install: $(VENV)/.install-base

install-test: $(VENV)/.install-test

demo: install
	$(PY) -m spinetrack synth $(DEMO)/series --preset realistic --sessions 4 --seed 1 --days 0 2 9 10
	$(PY) -m spinetrack run $(DEMO)/series --out $(DEMO)/results --days 0 2 9 10
	$(PY) -m spinetrack compare $(DEMO)/results $(DEMO)/series/truth --json $(DEMO)/results/compare.json
	@echo
	@echo "Demo done. Generated series and its truth: $(DEMO)/series (truth in $(DEMO)/series/truth)"
	@echo "Results (contract tables, summary.json, report.html): $(DEMO)/results"
	@echo "Open $(DEMO)/results/report.html in a browser; in napari: $(VENV)/bin/napari --plugin spinetrack $(DEMO)/results"

test: install-test
	@./.ci/system-deps
	$(PY) -m pytest

bench: install-test
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache build dist *.egg-info
