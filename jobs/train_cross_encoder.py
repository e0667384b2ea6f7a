"""Train the cross-encoder on a label recipe, export ONNX (fp32 + int8, parity-checked), log and register it as challenger.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/train_cross_encoder.py --conf conf/local.yaml [--set key=value ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_train_cross_encoder", sys.argv[1:], description=__doc__.splitlines()[0])
