"""Label (item, keyphrase) pairs with the LLM judge into llm_labels (incremental, resumable).

.venv/bin/kpspark submit --properties-file conf/spark-local.properties \
    jobs/label_pairs.py --conf conf/local.yaml [--set llm.backend=openai --set llm.options.base_url=...]
"""
from __future__ import annotations

import sys

from kpspark.cli import run_job

if __name__ == "__main__":
    run_job("run_label_pairs", sys.argv[1:], description=__doc__.splitlines()[0])
