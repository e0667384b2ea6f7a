"""Relevance baselines that need no training.

The **Jaccard token-overlap** model is the stop-gap production model the TJ paper describes:
``|tokens(keyphrase) & tokens(title)| / |tokens(keyphrase) | tokens(title)|``. It has no semantics
and penalises short head keyphrases (one matching token out of a ten-token title scores 0.1).
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np

_TOKEN = re.compile(r"[\w.\-]+")


def tokens(text: str | None) -> set[str]:
    """Lower-cased word tokens (``.``/``-`` kept inside tokens)."""
    return set(_TOKEN.findall(text.lower())) if text else set()


def jaccard(keyphrase: str | None, title: str | None) -> float:
    """Jaccard index of the token sets; 0.0 when either side is empty."""
    a, b = tokens(keyphrase), tokens(title)
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def jaccard_scores(keyphrases: Iterable[str | None], titles: Iterable[str | None]) -> np.ndarray:
    """Vectorised :func:`jaccard` over two equally long sequences."""
    return np.fromiter((jaccard(k, t) for k, t in zip(keyphrases, titles)), dtype="float64")
