"""Embed items and keyphrases with the champion bi-encoder into the item_embeddings / keyphrase_embeddings Delta tables.

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/embed.py --conf conf/local.yaml [--set bi_encoder.dim=128 ...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_embed", sys.argv[1:], description=__doc__.splitlines()[0])
