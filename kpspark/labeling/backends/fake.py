"""Deterministic backend for unit tests only (never a default of a job or the demo).

P(yes) is a squashed token overlap between keyphrase and title; ``fail_every=n`` makes every
n-th pair (by a stable hash) return an error so retry paths can be tested.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from kpspark.labeling.backends.base import JudgeResult, PairPrompt


class FakeBackend:
    """Deterministic stand-in for a judge."""

    name = "fake"

    def __init__(self, model: str = "fake-judge", fail_every: int = 0, **_: object) -> None:
        self.model_id = model
        self.fail_every = int(fail_every)

    def judge(self, prompts: Sequence[PairPrompt]) -> list[JudgeResult]:
        from kpspark.evaluation.baselines import tokens

        out = []
        for p in prompts:
            key = f"{p.keyphrase}|{p.title}".encode()
            h = int(hashlib.md5(key).hexdigest()[:8], 16)
            if self.fail_every and h % self.fail_every == 0:
                out.append(JudgeResult(None, None, "fake: injected failure"))
                continue
            kp, title = tokens(p.keyphrase), tokens(p.title)
            cover = len(kp & title) / max(1, len(kp))
            p_yes = 0.05 + 0.9 * cover
            out.append(JudgeResult(p_yes, "Yes" if p_yes >= 0.5 else "No", None))
        return out
