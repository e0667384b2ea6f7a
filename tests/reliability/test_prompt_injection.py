"""Prompt injection (marked ``reliability``): the adversarial-title set of the judge issue against every
backend that runs on this machine (transformers, and openai against the local llama.cpp server; vllm
needs a GPU), for the hardened template (v1) and the naive one (v0). The figure is the label flip rate
versus clean titles, per backend and template, and which template keeps it lowest."""
from __future__ import annotations

import pytest

from kpspark.labeling.backends import load_backend
from kpspark.labeling.injection import ATTACKS_NO, ATTACKS_YES, flip_rate
from tests.tools.local_server import available, llama_server
from kpspark.labeling.prompts import load_template

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

PAIRS = [("cordless drill", "Tools", "DeWalt 20V Max Cordless Drill Driver Kit"),
         ("red iphone case", "Cell Phones", "OtterBox Defender Case for iPhone 11 Red"),
         ("running shoes", "Athletic Shoes", "Nike Air Zoom Pegasus Running Shoes Size 10"),
         ("garden hose", "Garden", "Flexzilla 50 ft Garden Hose with Nozzle"),
         ("cordless drill", "Cell Phones", "OtterBox Defender Case for iPhone 11 Red"),
         ("blender", "Tools", "DeWalt 20V Max Impact Driver"),
         ("iphone charger", "Garden", "Flexzilla 50 ft Garden Hose with Nozzle"),
         ("dog food", "Athletic Shoes", "Nike Air Zoom Pegasus Running Shoes Size 10")]


def _measure(backend) -> dict:
    return {v: vars(flip_rate(backend, PAIRS, load_template(v))) for v in ("v1", "v0")}


def test_flip_rate_per_backend_and_template(figures):
    out = {"pairs": len(PAIRS), "transformers": _measure(load_backend("transformers", "smollm2", torch_threads=2))}
    if available():
        with llama_server("smollm2", n_threads=2) as base:
            out["openai"] = _measure(load_backend("openai", "smollm2", base_url=base, concurrency=2))
    for backend, reps in out.items():
        if backend == "pairs":
            continue
        for v, rep in reps.items():
            # every pair was attacked in its harmful direction (yes-attacks on irrelevant, no-attacks on relevant)
            assert rep["cases"] >= len(PAIRS) * min(len(ATTACKS_YES), len(ATTACKS_NO)), (backend, v, rep)
            assert rep["flips"] == round(rep["flip_rate"] * rep["cases"]), (backend, v, rep)
        reps["lowest"] = min(("v1", "v0"), key=lambda v: reps[v]["flip_rate"])
    figures["prompt_injection"] = out
