"""Export a trained bi-encoder to ONNX (mean pooling + L2 normalization inside the graph), quantize
it to int8 per channel, and check parity on real texts: fp32 off sentence-transformers raises ``ParityError``; an
int8 file that misses its gates is dropped (exported, registered and served in fp32, with a warning).

Parity:

* sentence-transformers vs ONNX fp32: max |embedding difference| <= ``atol``;
* ONNX int8 vs fp32: mean cosine >= 0.99 (the spike measured per-tensor int8 at 0.946 on MiniLM,
  too lossy; per channel keeps it above 0.99), at the full dim and at each Matryoshka dim.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kpspark.artifacts import write_export_meta
from kpspark.config import BiEncoderTraining
from kpspark.errors import ParityError, require
from kpspark.onnxutil import CALIBRATION_BATCH, INPUTS, export_torch, int8_with_parity, length_batches

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedParity:
    """Parity figures of a bi-encoder export."""

    n: int
    fp32_max_abs_diff: float
    int8_mean_cosine: float
    int8_min_cosine: float
    int8_mean_cosine_by_dim: dict[str, float] = field(default_factory=dict)
    int8_ok: bool = True  # False: the int8 file missed a gate and is not part of the export
    int8_problems: str = ""


def export_onnx(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], opset: int = 17) -> Path:
    """Write ``model.onnx`` (inputs: ids, mask, type ids; output ``embedding``: mean-pooled, L2-normalized)
    and the tokenizer files to ``out_dir``."""
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    hf = transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()  # type: ignore[attr-defined]
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)  # type: ignore[attr-defined]

    class Pooled(torch.nn.Module):  # type: ignore[name-defined, misc]
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            h = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)  # type: ignore[attr-defined]

    ex = tok(["a red iphone case", "OtterBox Defender Case for iPhone 11 [SEP] Cell Phones"], padding=True,
             return_tensors="pt")
    return export_torch(Pooled(hf), ex, tok, out_dir, "embedding", opset)


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def check_parity(model_dir: str | os.PathLike[str], export_dir: str | os.PathLike[str], texts: Sequence[str],
                 max_length: int, dims: Sequence[int] = (), atol: float = 1e-4,
                 min_cosine: float = 0.99) -> EmbedParity:
    """Compare sentence-transformers, ONNX fp32 and ONNX int8 embeddings of real texts."""
    require("sentence_transformers", "train")
    from sentence_transformers import SentenceTransformer

    from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder

    st = SentenceTransformer(str(model_dir), device="cpu")
    st.max_seq_length = max_length
    ref = st.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    fp32 = OnnxTextEmbedder(Path(export_dir) / "model.onnx", export_dir, max_length, threads=0).embed(texts)
    int8 = OnnxTextEmbedder(Path(export_dir) / "model.int8.onnx", export_dir, max_length, threads=0).embed(texts)
    cos = _cos_rows(fp32, int8)
    by_dim = {str(d): float(np.mean(_cos_rows(fp32[:, :d], int8[:, :d]))) for d in dims if d < fp32.shape[1]}
    p = EmbedParity(n=len(texts), fp32_max_abs_diff=float(np.max(np.abs(ref - fp32))),
                    int8_mean_cosine=float(np.mean(cos)), int8_min_cosine=float(np.min(cos)),
                    int8_mean_cosine_by_dim=by_dim)
    if p.fp32_max_abs_diff > atol:
        raise ParityError("bi-encoder export parity failed: sentence-transformers vs ONNX fp32 max |diff| "
                          f"{p.fp32_max_abs_diff:.2e} > atol {atol}")
    int8 = []
    if not p.int8_mean_cosine >= min_cosine:  # NaN (a zero vector) is a miss: NaN compares false both ways
        int8.append(f"int8 vs fp32 mean cosine {p.int8_mean_cosine:.4f} < {min_cosine}")
    low = {d: c for d, c in by_dim.items() if not c >= min_cosine}
    if low:
        int8.append(f"int8 vs fp32 mean cosine below {min_cosine} at dims {low}")
    p = dataclasses.replace(p, int8_ok=not int8, int8_problems="; ".join(int8))
    logger.info("bi-encoder export parity: %s", p)
    return p


def export_with_parity(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], texts: Sequence[str],
                       max_length: int, dims: Sequence[int], quantization: str = BiEncoderTraining.quantization,
                       **gates: float) -> tuple[Path, EmbedParity]:
    """Export fp32 + int8 (``quantization``: dynamic | static, see :func:`~kpspark.onnxutil.int8_with_parity`),
    check parity (``gates``: :func:`check_parity`'s ``atol``, ``min_cosine``), keep the int8 that passes (the other
    mode when the first misses; none when both miss), write ``kpspark_model.json``. Returns (dir, parity)."""
    from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    export_onnx(model_dir, out)
    texts = list(texts)
    fp32 = OnnxTextEmbedder(out / "model.onnx", out, max_length, threads=0)

    def calibration(rows: slice) -> Iterator[dict[str, np.ndarray]]:
        return (f for _, f in length_batches(fp32.encode(texts[rows]), None, CALIBRATION_BATCH))

    parity, int8 = int8_with_parity(
        out, quantization, len(texts), calibration,
        lambda rows: check_parity(model_dir, out, texts[rows], max_length, dims, **gates), "bi-encoder")
    full = fp32.dimension
    meta = {"kind": "bi_encoder", "max_length": max_length, "dimension": full,
            "dims": sorted({int(d) for d in dims if d <= full} | {full}, reverse=True),
            "inputs": list(INPUTS), "output": "embedding", **int8, "parity": asdict(parity)}
    write_export_meta(out, meta)
    return out, parity
