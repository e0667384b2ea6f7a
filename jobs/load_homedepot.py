"""Load the Home Depot search-relevance data (internal evaluation only) into the lakehouse.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/load_homedepot.py --conf conf/local.yaml --set lakehouse.root=lakehouse-homedepot
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_load_homedepot", sys.argv[1:], description=__doc__.splitlines()[0])
