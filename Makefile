# Two commands do everything on a fresh clone (see README):
#   make demo   - set up .venv and quantify the sample cine, real MRI (outputs in demo_output/)
#   make test   - set up .venv with the test tools and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: setup setup-dev demo test benchmark clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) requirements.txt pyproject.toml
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(STAMP_DEV): $(STAMP) requirements-dev.txt requirements-train.txt requirements-batch.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(STAMP)
setup-dev: $(STAMP_DEV)

demo: $(STAMP)
	$(VENV)/bin/cardiacquan demo -o demo_output

test: $(STAMP_DEV)
	$(PY) -m pytest Testing -q

benchmark: $(STAMP_DEV)
	$(PY) scripts/benchmark_inference.py
	$(PY) scripts/benchmark_geometry.py
	$(PY) scripts/benchmark_quan.py

clean:
	rm -rf $(VENV) demo_output
