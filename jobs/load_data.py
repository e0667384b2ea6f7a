"""Load your own data (the `load` section: rated pairs, items, keyphrases, clicks, search relevance) into the lakehouse.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/load_data.py --conf conf/local.yaml --conf my_data.yaml
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_load", sys.argv[1:], description=__doc__.splitlines()[0])
