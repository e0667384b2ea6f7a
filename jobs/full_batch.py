"""Full batch: every item of a pinned snapshot -> recommendations (atomic overwrite), champion models by alias, processed versions recorded for the diff.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/full_batch.py --conf conf/local.yaml [--set key=value ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_full_batch", sys.argv[1:], description=__doc__.splitlines()[0])
