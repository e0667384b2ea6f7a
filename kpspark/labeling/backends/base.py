"""The one small protocol every judge backend implements."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

BACKENDS = ("vllm", "openai", "transformers", "fake")
#: pairs per backend call when the judge's ``batchSize`` is 0: a GPU engine batches (and shares the prompt
#: prefix of one item's pairs) far better than a CPU model, which gains nothing past a few pairs
DEFAULT_BATCH = {"vllm": 256, "openai": 32, "transformers": 16, "fake": 16}


@dataclass(frozen=True)
class PairPrompt:
    """One pair to judge: the raw fields (for the fake backend and audit) and the chat messages."""

    keyphrase: str | None
    category: str | None
    title: str | None
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class JudgeResult:
    """P(yes) normalised over the yes/no mass, what the model said, or why there is no score."""

    p_yes: float | None
    raw: str | None = None
    error: str | None = None


class JudgeBackend(Protocol):
    """A loaded judge: ``judge`` never raises for one bad pair; it returns an ``error`` instead."""

    name: str
    model_id: str

    def judge(self, prompts: Sequence[PairPrompt]) -> list[JudgeResult]:
        """Judge a batch of pairs."""
        ...


def p_yes_from_logprobs(yes: Sequence[float], no: Sequence[float]) -> float | None:
    """P(yes) = sum exp(yes) / (sum exp(yes) + sum exp(no)); None when neither answer is present."""
    if not yes and not no:
        return None
    m = max([*yes, *no])
    py = sum(math.exp(v - m) for v in yes)
    pn = sum(math.exp(v - m) for v in no)
    return py / (py + pn)
