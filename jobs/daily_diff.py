"""Daily diff: only new/revised/deleted items and keyphrases since the last run (Delta Change Data Feed), MERGEd into recommendations in one commit.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/daily_diff.py --conf conf/local.yaml [--set key=value ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_daily_diff", sys.argv[1:], description=__doc__.splitlines()[0])
