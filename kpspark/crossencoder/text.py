"""How a pair becomes cross-encoder input (one definition for training, export and scoring).

Sentence A is the keyphrase, sentence B is ``category [SEP] title``; the tokenizer adds
``[CLS] ... [SEP] ... [SEP]``, giving ``[CLS] keyphrase [SEP] category [SEP] title [SEP]``. Truncation
is ``only_second``: a long title is cut, the keyphrase never is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from pyspark.sql import Column

SEGMENT_SEP = " [SEP] "  # between category and title in sentence B


def second_segment(category: str | None, title: str | None) -> str:
    """``category [SEP] title`` (an empty category is dropped)."""
    cat = category.strip() if isinstance(category, str) else ""  # None / NaN (pandas missing) -> none
    t = title.strip() if isinstance(title, str) else ""
    return f"{cat}{SEGMENT_SEP}{t}" if cat else t


def second_segment_column(category: "Column | None", title: "Column", sep: str = SEGMENT_SEP) -> "Column":
    """:func:`second_segment` as a Spark column, for paths that build the text in Spark (``sep``: what stands for
    `` [SEP] `` where another separator is tokenized, as on the Spark NLP path; ``category=None``: none)."""
    from pyspark.sql import functions as F

    t = F.trim(F.coalesce(title, F.lit("")))
    if category is None:
        return t
    cat = F.trim(F.coalesce(category, F.lit("")))
    return F.when(cat == "", t).otherwise(F.concat(cat, F.lit(sep), t))


def pair_texts(keyphrases: Iterable[str | None], categories: Iterable[str | None],
               titles: Iterable[str | None]) -> tuple[list[str], list[str]]:
    """(sentence A list, sentence B list)."""
    a = [k.strip() if isinstance(k, str) else "" for k in keyphrases]
    b = [second_segment(c, t) for c, t in zip(categories, titles)]
    return a, b
