"""Offline evaluation report (TJ Table 1 for every cross-encoder recipe, agreement, debiasing, retrieval, plots) and the promotion gate.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/calibrate_evaluate.py --conf conf/local.yaml [--set evaluation.recipes=[search,click_search] ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_calibrate_evaluate", sys.argv[1:], description=__doc__.splitlines()[0])
