"""Export a trained cross-encoder to ONNX (dynamic batch and sequence axes), quantize it to int8,
and check parity: an fp32 export that does not match torch raises :class:`ParityError`; an int8 file that misses
its gates is dropped (the model is exported, registered and served in fp32, with a warning).

Parity (on real pairs, with the trained model):

* torch vs ONNX fp32: max |logit difference| <= ``atol``;
* ONNX int8 vs fp32: Pearson r >= 0.99 and >= 99% identical decisions at the operating threshold, on pairs the
  static int8 ranges were not calibrated on.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from kpspark.artifacts import write_export_meta
from kpspark.config import CrossEncoderTraining, RetrievalConfig
from kpspark.errors import ParityError, require
from kpspark.onnxutil import CALIBRATION_BATCH, INPUTS, export_torch, int8_with_parity, length_batches

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parity:
    """Parity figures of an export."""

    n: int
    fp32_max_abs_diff: float
    int8_pearson: float
    int8_decision_agreement: float
    threshold: float
    int8_ok: bool = True  # False: the int8 file missed a gate and is not part of the export
    int8_problems: str = ""
    # decisions at the operating point (the fp32 logit keeping 95% of the validation positives), measured, not gated
    operating_threshold: float = float("nan")
    int8_decision_agreement_operating: float = float("nan")


def export_onnx(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], opset: int = 17) -> Path:
    """Export the HF model in ``model_dir`` to ``out_dir/model.onnx`` (+ tokenizer files)."""
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(  # type: ignore[attr-defined]
        model_dir, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)  # type: ignore[attr-defined]
    enc = tok(["red iphone case"], ["Cell Phones [SEP] OtterBox case for iPhone 11"], return_tensors="pt")

    class Wrapper(torch.nn.Module):  # type: ignore[name-defined, misc]
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    return export_torch(Wrapper(model), enc, tok, out_dir, "logits", opset)




def _torch_logits(model_dir: str | os.PathLike[str], a: Sequence[str], b: Sequence[str], max_length: int) -> np.ndarray:
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(  # type: ignore[attr-defined]
        model_dir, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)  # type: ignore[attr-defined]
    outs = []
    with torch.no_grad():  # type: ignore[attr-defined]
        for s in range(0, len(a), 64):
            enc = tok(list(a[s:s + 64]), list(b[s:s + 64]), truncation="only_second", max_length=max_length,
                      padding=True, return_tensors="pt")
            outs.append(model(**enc).logits[:, 0].numpy())
    return np.concatenate(outs)


def int8_problems(pearson: float, agreement: float, min_pearson: float = 0.99,
                  min_agreement: float = 0.99) -> list[str]:
    """Why an int8 export misses its gates (empty: it passes). A NaN Pearson — int8 logits that do not vary, as
    static int8 gives a model whose fp32 logits differ only in the fourth decimal — is a miss, not a pass."""
    out = []
    if not pearson >= min_pearson:  # NaN compares false both ways
        out.append(f"int8 vs fp32 Pearson {pearson:.4f} < {min_pearson}" if pearson == pearson else
                   "int8 vs fp32 Pearson undefined (constant logits)")
    if not agreement >= min_agreement:
        out.append(f"int8 vs fp32 decision agreement {agreement:.4f} < {min_agreement}")
    return out


def check_parity(model_dir: str | os.PathLike[str], export_dir: str | os.PathLike[str], a: Sequence[str],
                 b: Sequence[str], max_length: int, threshold_logit: float = 0.0,
                 positives: Sequence[bool] | None = None, retention: float = RetrievalConfig.click_retention,
                 atol: float = 1e-3, min_pearson: float = 0.99, min_agreement: float = 0.99) -> Parity:
    """Compare torch, ONNX fp32 and ONNX int8 logits on real pairs. fp32 off torch raises :class:`ParityError` (a
    broken export); int8 off fp32 is reported in the result (``int8_ok``, ``int8_problems``). Decisions are compared
    at the operating point when ``positives`` (a mask of the pairs labelled relevant) has any: the fp32 logit that
    keeps ``retention`` of them (:func:`kpspark.rules.retention_threshold`, the filter's rule) — reported
    (``int8_decision_agreement_operating``, a warning when it is below ``min_agreement``) — and, for the gate, at
    ``threshold_logit``. Not gated at the operating point: where a small model's logits crowd around it (measured on the
    suite's bert-tiny: three quarters of the pairs within 0.05 logit of the threshold) any perturbation of int8's size
    moves decisions, which says more about the model's separation there than about the export."""
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer
    from kpspark.rules import retention_threshold

    ref = _torch_logits(model_dir, a, b, max_length)
    fp32 = OnnxPairScorer(Path(export_dir) / "model.onnx", export_dir, max_length, threads=0).logits(a, b)
    int8 = OnnxPairScorer(Path(export_dir) / "model.int8.onnx", export_dir, max_length, threads=0).logits(a, b)

    def agreement(t: float) -> float:
        return float(np.mean((fp32 >= t) == (int8 >= t)))

    pos = np.asarray(positives if positives is not None else [], dtype=bool)
    operating = retention_threshold(fp32[pos], target=retention) if pos.any() else float("nan")
    p = Parity(n=len(a), fp32_max_abs_diff=float(np.max(np.abs(ref - fp32))),
               int8_pearson=float(np.corrcoef(fp32, int8)[0, 1]) if len(a) > 1 else 1.0,
               int8_decision_agreement=agreement(threshold_logit), threshold=threshold_logit,
               operating_threshold=operating,
               int8_decision_agreement_operating=agreement(operating) if pos.any() else float("nan"))
    if p.int8_decision_agreement_operating < min_agreement:
        logger.warning("int8 vs fp32 decision agreement at the operating point (logit %.3f) is %.4f: %.0f%% of the "
                       "pairs lie within 0.05 logit of it", operating, p.int8_decision_agreement_operating,
                       100 * float(np.mean(np.abs(fp32 - operating) < 0.05)))
    if p.fp32_max_abs_diff > atol:
        raise ParityError(f"export parity failed: torch vs ONNX fp32 max |diff| {p.fp32_max_abs_diff:.2e} > atol {atol}")
    int8 = int8_problems(p.int8_pearson, p.int8_decision_agreement, min_pearson, min_agreement)
    p = dataclasses.replace(p, int8_ok=not int8, int8_problems="; ".join(int8))
    logger.info("export parity: %s", p)
    return p




def export_with_parity(model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], a: Sequence[str],
                       b: Sequence[str], max_length: int, positives: Sequence[bool] | None = None,
                       quantization: str = CrossEncoderTraining.quantization, **gates: float) -> tuple[Path, Parity]:
    """Export fp32 + int8 (``quantization``: dynamic | static, see :func:`~kpspark.onnxutil.int8_with_parity`),
    check parity (``positives``: the pairs labelled relevant, whose 95%-retention logit is the operating point where
    decisions are also compared; ``gates``: :func:`check_parity`'s ``atol``, ``min_pearson``, ``min_agreement``),
    keep the int8 that passes (the other mode when the first misses; none when both miss), write
    ``kpspark_model.json``.
    Returns (dir, parity)."""
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    export_onnx(model_dir, out)
    a, b = list(a), list(b)
    pos = None if positives is None else np.asarray(positives, dtype=bool)
    fp32 = OnnxPairScorer(out / "model.onnx", out, max_length, threads=0)

    def calibration(rows: slice) -> Iterator[dict[str, np.ndarray]]:
        return (f for _, f in length_batches(*fp32.encode(a[rows], b[rows]), CALIBRATION_BATCH))

    parity, int8 = int8_with_parity(
        out, quantization, len(a), calibration,
        lambda rows: check_parity(model_dir, out, a[rows], b[rows], max_length,
                                  positives=None if pos is None else pos[rows], **gates),
        "cross-encoder")
    meta = {"kind": "cross_encoder", "max_length": max_length, "threshold_logit": parity.threshold,
            "inputs": list(INPUTS), **int8, "parity": asdict(parity)}
    write_export_meta(out, meta)
    return out, parity
