"""End-to-end demo on the synthetic sample marketplace.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/demo.py --conf conf/local.yaml [--set key=value ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_demo", sys.argv[1:], description=__doc__.splitlines()[0])
