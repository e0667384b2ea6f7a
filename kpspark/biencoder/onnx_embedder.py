"""Pure-Python ONNX Runtime text embedder (the bi-encoder export: pooled, L2-normalized output).

Fast Rust tokenizer, texts sorted by token length and embedded in small micro-batches padded only
to the longest text of the batch, one single-threaded session per Python worker by default.
Matryoshka: ``embed(texts, dim)`` keeps the first ``dim`` components and re-normalizes them.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from kpspark.cache import ProcessCache
from kpspark.onnxutil import feed, length_batches


def truncate_normalize(emb: np.ndarray, dim: int | None) -> np.ndarray:
    """First ``dim`` components, L2-normalized (the Matryoshka prefix)."""
    if dim and dim < emb.shape[1]:
        emb = emb[:, :dim]
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return (emb / np.maximum(norm, 1e-12)).astype("float32")


class OnnxTextEmbedder:
    """``embed(texts, dim=None)`` -> float32 array (n, dim), rows L2-normalized."""

    def __init__(self, onnx_path: str | os.PathLike[str], tokenizer_dir: str | os.PathLike[str], max_length: int = 64,
                 threads: int = 1, batch_size: int = 32) -> None:
        from kpspark.onnxutil import load_session, load_tokenizer

        self.tokenizer = load_tokenizer(tokenizer_dir, max_length)
        self.session = load_session(onnx_path, threads)
        out = self.session.get_outputs()[0]
        self.dimension = int(out.shape[-1]) if isinstance(out.shape[-1], int) else int(
            self.session.run(None, feed([[101, 102]]))[0].shape[1])
        self.max_length = max_length
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated, unpadded."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str], dim: int | None = None) -> np.ndarray:
        """Embeddings in input order, truncated to ``dim`` (None = full) and L2-normalized."""
        n = len(texts)
        out = np.empty((n, self.dimension), dtype="float32")
        if n == 0:
            return out[:, :dim] if dim else out
        for idx, inputs in length_batches(self.encode(texts), None, self.batch_size):
            out[idx] = self.session.run(None, inputs)[0]
        return truncate_normalize(out, dim)


_CACHE = ProcessCache("bi-encoder embedders")


def get_cached_embedder(onnx_path: str, tokenizer_dir: str, max_length: int, threads: int,
                        batch_size: int) -> OnnxTextEmbedder:
    """One embedder per Python worker process and model file."""
    args = (onnx_path, tokenizer_dir, max_length, threads, batch_size)
    return _CACHE.get(args, lambda: OnnxTextEmbedder(*args))  # type: ignore[no-any-return]
