# qsched: two commands set everything up on a fresh machine.
#   make test       create/reuse .venv with the pinned requirements, run pytest + every notebook headless (FAST mode)
#   make reproduce  create/reuse .venv, compute the result tables (make tables), then run every notebook top to
#                   bottom in full mode (make notebooks); everything is written to results/
#   make lab        JupyterLab on notebooks/
#   make bench      Triton kernel benchmarks vs cuBLAS and the copy bandwidth (needs a CUDA GPU) -> results/kernels.md
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qsched-installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

# DEVICE=cuda computes the tables on a GPU (same prompts and noise; faster). Cells, searches and reference features
# are cached under .cache/, so an interrupted `make reproduce` resumes and a finished one only rebuilds the reports.
DEVICE ?= cpu
# stages of `make tables` run at once: one after another on the CPU; six side by side on a GPU, where they overlap
# their CPU work while the GPU stays busy (scripts/tables.py --jobs; README, Two commands, has the measured times)
JOBS ?= $(if $(filter cpu,$(DEVICE)),1,6)

.PHONY: setup browser test reproduce tables notebooks lab bench clean-venv

setup: $(STAMP) browser

# Re-installs only when requirements.txt or pyproject.toml change; otherwise this is a no-op.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The browser test of the notebooks' widgets (tests/course/test_browser.py) drives Debian's chromium through
# Playwright (pinned in requirements.txt; Playwright's own browser download is not used). Installed once, when apt-get
# can be used as root; otherwise the test is skipped and says why. A no-op when chromium is there.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the browser test (apt-get)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	      echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium is missing and this is not root with apt-get: the browser test will be skipped"; fi; }

# The notebooks run in a pytest process of their own, with QSCHED_HEADLESS=1: headless, a cell that calls
# ipywidgets' interact now and then never finishes (kernel and client both idle), so the notebooks' widgets go
# through qsched_core.widgets.live, which runs the wrapped function once instead (see that module).
test: $(STAMP) browser
	QSCHED_FAST=1 $(PY) -m pytest -q tests
	QSCHED_FAST=1 QSCHED_HEADLESS=1 $(PY) -m pytest -q --nbmake --nbmake-timeout=900 notebooks

reproduce: tables notebooks

# scripts/tables.py runs every table script in order (validity, main, search, ptq, sweep, ablations, quality, CPU
# speed, dLLM report), each writing the results/ file named after it with its own command line, machine and wall
# time; the driver writes results/tables_timing.md (per stage: wall time and outcome, and the total).
tables: $(STAMP)
	@[ "$(DEVICE)" != cpu ] || echo "make tables on this CPU: roughly 10 h from an empty .cache/ (estimated from the" \
	  "measured student speed, results/tinyworld_cpu_speed.md; minutes when every cell is cached); on a CUDA GPU run" \
	  "'make reproduce DEVICE=cuda' instead (README.md, Two commands; results/tables_timing.md has the measured times)"
	$(PY) scripts/tables.py --device $(DEVICE) --jobs $(JOBS)

notebooks: $(STAMP)
	@mkdir -p results/notebooks
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  QSCHED_FAST=0 QSCHED_HEADLESS=1 $(PY) -m jupyter nbconvert --to notebook --execute \
	    --ExecutePreprocessor.timeout=3600 --output-dir results/notebooks "$$nb" || exit 1; \
	done
	@echo "results written to results/"

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

# Needs one CUDA GPU (~4 min on an H200); writes results/kernels.md, kernels.csv and kernels_roofline.png.
bench: $(STAMP)
	$(PY) kernels/bench.py --out results

clean-venv:
	rm -rf $(VENV)
