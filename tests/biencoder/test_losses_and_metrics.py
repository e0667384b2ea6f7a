"""Pure-Python pieces of the bi-encoder: the Pearson loss and the retrieval metrics (no Spark)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kpspark.biencoder.losses import PearsonCorrelationLoss, pearson_loss  # noqa: E402
from kpspark.biencoder.onnx_embedder import truncate_normalize  # noqa: E402
from kpspark.evaluation.retrieval import exact_topk, recall_at_k  # noqa: E402


def test_pearson_loss_values_and_invariance():
    s = torch.tensor([0.1, 0.4, 0.2, 0.9])
    assert float(pearson_loss(s, s)) == pytest.approx(0.0, abs=1e-6)
    assert float(pearson_loss(s, -s)) == pytest.approx(2.0, abs=1e-6)
    t = torch.tensor([0.3, 0.1, 0.8, 0.5])
    # invariant to scale and shift of the teacher (it calibrates ordering/shape, not values)
    assert float(pearson_loss(s, t)) == pytest.approx(float(pearson_loss(s, 3 * t + 7)), abs=1e-5)
    ref = 1 - np.corrcoef(s.numpy(), t.numpy())[0, 1]
    assert float(pearson_loss(s, t)) == pytest.approx(ref, abs=1e-5)


def test_pearson_loss_module_gradients_and_degenerate_batches():
    loss = PearsonCorrelationLoss(model=None)
    a = torch.randn(8, 16, requires_grad=True)
    b = torch.randn(8, 16)
    t = torch.rand(8)
    out = loss.compute_loss_from_embeddings([a, b], t)
    out.backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    # a constant teacher (or one pair) carries no correlation signal: zero loss, still differentiable
    flat = loss.compute_loss_from_embeddings([a, b], torch.full((8,), 0.5))
    assert float(flat) == 0.0 and flat.requires_grad
    with pytest.raises(ValueError, match="labels"):
        loss.compute_loss_from_embeddings([a, b], torch.rand(5))


def test_exact_topk_matches_a_full_sort():
    rng = np.random.default_rng(0)
    q = truncate_normalize(rng.normal(size=(37, 24)), None)
    c = truncate_normalize(rng.normal(size=(500, 24)), None)
    val, idx = exact_topk(q, c, 10, block=8)
    full = np.argsort(-(q @ c.T), axis=1)[:, :10]
    assert (idx == full).all()
    assert np.all(np.diff(val, axis=1) <= 1e-7)
    _, all_idx = exact_topk(q, c[:5], 10)  # k larger than the corpus: everything, best first
    assert all_idx.shape == (37, 5)


def test_recall_at_k_on_a_hand_example():
    retrieved = np.array([[3, 1, 7, 2], [5, 6, 0, 1], [0, 1, 2, 3]])
    relevant = [{1, 2}, {9}, set()]  # the third item has no relevant keyphrase: not counted
    r = recall_at_k(retrieved, relevant, [1, 2, 4])
    assert r[1] == pytest.approx(0.0)
    assert r[2] == pytest.approx((1 / 2 + 0) / 2)
    assert r[4] == pytest.approx((2 / 2 + 0) / 2)


def test_truncate_normalize_is_the_matryoshka_prefix():
    rng = np.random.default_rng(1)
    e = truncate_normalize(rng.normal(size=(4, 32)), None)
    p = truncate_normalize(e, 8)
    assert p.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p, e[:, :8] / np.linalg.norm(e[:, :8], axis=1, keepdims=True), atol=1e-6)
