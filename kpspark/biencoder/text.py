"""How items and keyphrases become bi-encoder input (one definition for training, export and serving).

Item side: ``title [SEP] category`` (the category is dropped when empty); keyphrase side: the
keyphrase text. Both are embedded by the same (siamese) encoder with mean pooling and L2 norm.
"""
from __future__ import annotations

from typing import Iterable

#: The student's training tasks: in-batch contrastive on click positives, search relevance, distillation.
TASKS = ("click", "search", "distill")


def item_text(title: str | None, category: str | None) -> str:
    """``title [SEP] category`` (an empty category is dropped)."""
    t = title.strip() if isinstance(title, str) else ""
    c = category.strip() if isinstance(category, str) else ""  # None / NaN (pandas missing) -> no category
    return f"{t} [SEP] {c}" if c else t


def item_texts(titles: Iterable[str | None], categories: Iterable[str | None] | None = None) -> list[str]:
    """Item texts for parallel title and category sequences (``categories`` may be None)."""
    titles = list(titles)
    cats = list(categories) if categories is not None else [None] * len(titles)
    return [item_text(t, c) for t, c in zip(titles, cats)]


def keyphrase_texts(keyphrases: Iterable[str | None]) -> list[str]:
    """Keyphrase texts (stripped)."""
    return [k.strip() if isinstance(k, str) else "" for k in keyphrases]
