"""Pearson-correlation distillation loss, in sentence-transformers' loss style.

For a batch of (item, keyphrase) pairs with teacher scores ``t`` (the cross-encoder's P(relevant))
and student cosines ``s``, the loss is ``1 - r(s, t)`` with

    r = sum((s - mean s)(t - mean t)) / (sqrt(sum (s - mean s)^2) * sqrt(sum (t - mean t)^2) + eps)

Pearson is invariant to the scale and shift of either side, so the student learns the ordering and
shape of the teacher's scores, not their absolute values ("calibrate ranking scores"). It composes
with ``MatryoshkaLoss`` (the embeddings are truncated before the cosine).
"""
from __future__ import annotations

from typing import Any, Iterable


def pearson_loss(s: Any, t: Any, eps: float = 1e-8) -> Any:
    """``1 - r(s, t)`` for two 1-D tensors (0 for a perfectly correlated batch, 2 for anti-correlated)."""
    sc = s - s.mean()
    tc = t - t.mean()
    r = (sc * tc).sum() / (sc.pow(2).sum().sqrt() * tc.pow(2).sum().sqrt() + eps)
    return 1.0 - r


def _base() -> type:
    from torch import nn

    return nn.Module


class PearsonCorrelationLoss(_base()):  # type: ignore[misc]
    """Inputs: (anchor, other) text pairs with a float teacher score; loss ``1 - r(cos, score)``.

    Batches of one pair, or of pairs whose teacher scores are all equal, carry no correlation signal
    and contribute a zero loss (with a gradient path, so mixed-task steps still work).
    """

    def __init__(self, model: Any, eps: float = 1e-8) -> None:
        super().__init__()
        self.model = model
        self.eps = eps

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Any) -> Any:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Any], labels: Any) -> Any:
        import torch

        if len(embeddings) != 2:
            raise ValueError(f"PearsonCorrelationLoss expects 2 text columns, got {len(embeddings)}")
        s = torch.cosine_similarity(embeddings[0], embeddings[1])
        t = labels.float().view(-1).to(s.device)
        if t.numel() != s.numel():
            raise ValueError(f"PearsonCorrelationLoss expects {s.numel()} labels, got {t.numel()}")
        if s.numel() < 2 or float(t.std()) == 0.0:
            return s.sum() * 0.0
        return pearson_loss(s, t, self.eps)

    def get_config_dict(self) -> dict[str, Any]:
        return {"eps": self.eps}

    @property
    def citation(self) -> str:
        return ("Relevance distillation into a bi-encoder with a Pearson-correlation loss "
                "(multi-task CTR + SR + distillation), after the keyphrase-recommendation papers in "
                "docs/paper-spec.md.")
