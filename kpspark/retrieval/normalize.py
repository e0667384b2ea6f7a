"""Keyphrase normalization: the canonical key that groups near-duplicate keyphrases.

Steps (each configurable): Unicode NFKC + case folding, punctuation to spaces, whitespace collapsed,
plural -> singular per token (a small English rule set: ``batteries -> battery``, ``boxes -> box``,
``cases -> case``, ``shoes -> shoe``; words under 4 letters and ``-ss``/``-us``/``-is`` endings
are kept), and token order (sorted) so ``case iphone`` and ``iphone case`` share a group.
A keyphrase whose key is empty (only punctuation/whitespace) has no group: the caller quarantines it.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_WS = re.compile(r"\s+")
_KEEP = ("ss", "us", "is", "ous")
_ES_AFTER = ("ches", "shes", "xes", "zes", "sses")


@dataclass(frozen=True)
class NormalizeOptions:
    """Which variants collapse into one group."""

    casefold: bool = True
    punctuation: bool = True
    plural: bool = True
    word_order: bool = True


def singular(token: str) -> str:
    """A conservative English singular of one lower-case token."""
    if len(token) < 4 or not token.isalpha() or token.endswith(_KEEP):
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(_ES_AFTER):
        return token[:-2]
    if token.endswith("s"):
        return token[:-1]
    return token


def normalize_keyphrase(text: str | None, opts: NormalizeOptions | None = None) -> str:
    """The canonical key of ``text`` ('' when nothing is left)."""
    opts = opts or NormalizeOptions()
    if text is None:
        return ""
    s = unicodedata.normalize("NFKC", text)
    if opts.casefold:
        s = s.casefold()
    if opts.punctuation:
        s = _PUNCT.sub(" ", s)
    tokens = _WS.sub(" ", s).strip().split(" ")
    tokens = [t for t in tokens if t]
    if opts.plural:
        tokens = [singular(t) for t in tokens]
    if opts.word_order:
        tokens = sorted(tokens)
    return " ".join(tokens)
