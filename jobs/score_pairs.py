"""Score candidate pairs with the cross-encoder the serving alias points at, into pair_scores.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/score_pairs.py --conf conf/local.yaml [--set key=value ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_score_pairs", sys.argv[1:], description=__doc__.splitlines()[0])
