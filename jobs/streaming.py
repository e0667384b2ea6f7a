"""Near-real-time: item create/revise/delete events (the Change Data Feed of items, Structured Streaming) -> recommendations, one idempotent MERGE per micro-batch.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/streaming.py --conf conf/local.yaml [--set streaming.trigger=availableNow]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_streaming", sys.argv[1:], description=__doc__.splitlines()[0])
