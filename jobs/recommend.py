"""Full-batch recommendations: de-duplicate keyphrases, build the sharded ANN index, embed -> retrieve -> CE-score -> filter every item into `recommendations`.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/recommend.py --conf conf/local.yaml [--set retrieval.k=100 ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_recommend", sys.argv[1:], description=__doc__.splitlines()[0])
