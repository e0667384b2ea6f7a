"""Train the bi-encoder student (click + search + Pearson distillation, Matryoshka), export ONNX (parity-checked), register it as challenger.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/train_bi_encoder.py --conf conf/local.yaml [--set bi_encoder.recipe=click_search ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_train_bi_encoder", sys.argv[1:], description=__doc__.splitlines()[0])
