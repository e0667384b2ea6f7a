"""Generate the synthetic sample marketplace into the Delta lakehouse.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/generate_sample.py --conf conf/local.yaml [--set key=value ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_generate_sample", sys.argv[1:], description=__doc__.splitlines()[0])
