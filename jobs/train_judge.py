"""Fine-tune the LLM judge on human labels (LoRA) and register it; llm.model=finetuned then labels with it.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/train_judge.py --conf conf/local.yaml [--set judge.max_pairs=2000 --set judge.epochs=1]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_train_judge", sys.argv[1:], description=__doc__.splitlines()[0])
