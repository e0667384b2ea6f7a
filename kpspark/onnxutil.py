"""ONNX Runtime session and fast-tokenizer loading shared by the cross-encoder scorer and the
bi-encoder embedder (one place for threading, optimization level and the input-name check)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from kpspark.errors import KPSparkError, require

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
T = TypeVar("T")


def load_tokenizer(tokenizer_dir: str | os.PathLike[str], max_length: int, strategy: str = "longest_first") -> Any:
    """The Rust tokenizer of a model folder, no padding, truncation at ``max_length`` (``strategy``
    ``only_second`` keeps sentence A whole)."""
    tokenizers = require("tokenizers", "onnx")
    tok_file = Path(tokenizer_dir) / "tokenizer.json"
    if not tok_file.exists():
        raise KPSparkError(f"{tok_file} not found: the model folder has no fast tokenizer")
    tok = tokenizers.Tokenizer.from_file(str(tok_file))  # type: ignore[attr-defined]
    tok.no_padding()
    tok.enable_truncation(max_length=max_length, strategy=strategy)
    return tok


def load_session(onnx_path: str | os.PathLike[str], threads: int = 1) -> Any:
    """An ORT CPU session (``threads`` intra-op threads, 0 = ORT's default) whose inputs are the
    tokenizer's (ids, mask, type ids); a clear error for a missing/corrupt file or other inputs."""
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()  # type: ignore[attr-defined]
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # type: ignore[attr-defined]
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # type: ignore[attr-defined]
    try:
        session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    except Exception as e:
        raise KPSparkError(f"cannot load ONNX model {onnx_path}: {e}") from e
    names = {i.name for i in session.get_inputs()}
    if not set(INPUTS) <= names:
        raise KPSparkError(f"ONNX model {onnx_path} inputs {sorted(names)} do not match the tokenizer's "
                           f"{sorted(INPUTS)}")
    return session


def feed(ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """The model inputs of one micro-batch, padded to its longest row (``type_ids`` None: all segment 0)."""
    width = max(len(x) for x in ids)
    arr = np.zeros((len(ids), width), dtype="int64")
    types = np.zeros_like(arr)
    mask = np.zeros_like(arr)
    for r, x in enumerate(ids):
        arr[r, :len(x)] = x
        mask[r, :len(x)] = 1
        if type_ids is not None:
            types[r, :len(type_ids[r])] = type_ids[r]
    return {"input_ids": arr, "attention_mask": mask, "token_type_ids": types}


def length_batches(ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]] | None,
                   batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Rows sorted by length and cut into micro-batches padded only to their longest row: (row indices, feed).
    The one batching of the scorer, the embedder and the int8 calibration."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    for s in range(0, len(ids), batch_size):
        idx = order[s:s + batch_size]
        yield idx, feed([ids[i] for i in idx], None if type_ids is None else [type_ids[i] for i in idx])


QUANTIZATIONS = ("dynamic", "static")
CALIBRATION_BATCH = 16  # rows per static-int8 calibration feed (the scorer's micro-batch)


def held_out(n: int) -> tuple[slice, slice]:
    """(calibration rows, parity rows) of an export's ``n`` real inputs: static int8 calibrates on the even rows and
    is judged on the odd ones, so that parity is not measured on the inputs the ranges were fitted to."""
    return (slice(0, None, 2), slice(1, None, 2)) if n >= 2 else (slice(None), slice(None))


def quantize_int8(fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str], mode: str,
                  calibration: Iterable[dict[str, np.ndarray]] = (), per_channel: bool = True,
                  reduce_range: bool = True) -> Path:
    """Int8 weights of the MatMul/Gemm nodes, per output channel, 7-bit range; activations by ``mode``:

    * ``static``: QDQ with activation ranges calibrated (min/max) on ``calibration`` feeds of real
      inputs; the two MatMuls between activations in each attention layer stay fp32. A row's output does not depend
      on the rows batched with it.
    * ``dynamic`` (the configs' default, the fastest): activation ranges computed per batch at run time, so a row's
      output moves with its batch-mates and their padding (measured on a trained cross-encoder: up to 0.038 in logit
      between one pair scored alone and in a batch; static: 0.0) — a full batch and a daily diff can then disagree
      on rows at the threshold.

    On a trained 2-layer model, per-tensor dynamic int8 gave Pearson 0.996 but only 97.5% identical decisions at
    the threshold; per-channel with ``reduce_range`` gave 0.9988 and 99.5%.
    """
    import logging
    import tempfile

    if mode not in QUANTIZATIONS:
        raise KPSparkError(f"int8 quantization {mode!r} is not one of {QUANTIZATIONS}")
    q = require("onnxruntime.quantization", "onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs one INFO line per tensor on the root logger
    try:
        if mode == "dynamic":
            q.quantize_dynamic(str(fp32_path), str(out_path), per_channel=per_channel,  # type: ignore[attr-defined]
                               reduce_range=reduce_range, weight_type=q.QuantType.QInt8,  # type: ignore[attr-defined]
                               op_types_to_quantize=["MatMul", "Gemm"])
            return Path(out_path)
        feeds = list(calibration)
        if not feeds:
            raise KPSparkError("static int8 quantization needs calibration inputs (real pairs or texts)")
        onnx = require("onnx", "onnx")
        with tempfile.TemporaryDirectory(prefix="kpspark-quant-") as tmp:
            pre = str(Path(tmp) / "pre.onnx")
            q.quant_pre_process(str(fp32_path), pre, skip_symbolic_shape=True)  # type: ignore[attr-defined]
            graph = onnx.load(pre).graph  # type: ignore[attr-defined]
            weights = {i.name for i in graph.initializer}
            between = [n.name for n in graph.node if n.op_type == "MatMul" and not weights & set(n.input)]

            class Feeds(q.CalibrationDataReader):  # type: ignore[name-defined, misc]
                def __init__(self) -> None:
                    self._it = iter(feeds)

                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(self._it, None)

            q.quantize_static(pre, str(out_path), Feeds(), quant_format=q.QuantFormat.QDQ,  # type: ignore[attr-defined]
                              per_channel=per_channel, reduce_range=reduce_range,
                              activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,  # type: ignore[attr-defined]
                              op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=between,
                              calibrate_method=q.CalibrationMethod.MinMax)  # type: ignore[attr-defined]
    finally:
        root.setLevel(level)
    return Path(out_path)


def export_torch(module: Any, example: Any, tokenizer: Any, out_dir: str | os.PathLike[str], output: str,
                 opset: int = 17) -> Path:
    """Export a torch ``module(input_ids, attention_mask, token_type_ids) -> output`` to ``out_dir/model.onnx``
    with dynamic batch and sequence axes (``example``: a tokenizer encoding to trace with), and save the
    tokenizer beside it. The one ONNX export both model families use."""
    torch = require("torch", "train")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dyn: dict[str, dict[int, str]] = {n: {0: "batch", 1: "seq"} for n in INPUTS}
    dyn[output] = {0: "batch"}
    with torch.no_grad():  # type: ignore[attr-defined]
        torch.onnx.export(module.eval(), tuple(example[n] for n in INPUTS), str(out / "model.onnx"),  # type: ignore[attr-defined]
                          input_names=list(INPUTS), output_names=[output], dynamic_axes=dyn, opset_version=opset,
                          dynamo=False)
    tokenizer.save_pretrained(out)
    return out / "model.onnx"


def int8_with_parity(out_dir: str | os.PathLike[str], mode: str, n: int,
                     calibration: Callable[[slice], Iterable[dict[str, np.ndarray]]], judge: Callable[[slice], T],
                     kind: str) -> tuple[T, dict[str, Any]]:
    """Quantize ``out_dir/model.onnx`` into ``model.int8.onnx`` (``mode``: :func:`quantize_int8`'s;
    ``calibration(rows)``: the model feeds of those rows of the export's ``n`` real inputs) and judge it:
    ``judge(rows)`` is the family's parity on those rows (all of them for dynamic int8; for static, the ones
    :func:`held_out` kept from the calibration), whose ``int8_problems`` is empty when int8 meets its gates. Int8
    that misses is quantized the other way (dynamic <-> static: the rescue for a model whose activations one of
    them handles badly) and judged again; when that misses too, the int8 file is deleted and the export is fp32
    only, with a warning — the trained model is registered and served in fp32 instead of being lost after training.
    Returns (the parity of the int8 kept, or of the last one tried; the metadata entries ``files``, ``quantization``
    and, when a mode missed, ``int8_rejected``)."""
    import logging

    log = logging.getLogger(__name__)
    out = Path(out_dir)
    missed: list[str] = []
    cal, check = held_out(n)
    for m in (mode, *(x for x in QUANTIZATIONS if x != mode)):
        quantize_int8(out / "model.onnx", out / "model.int8.onnx", m, calibration(cal) if m == "static" else ())
        parity = judge(check if m == "static" else slice(None))
        problems = str(getattr(parity, "int8_problems"))
        if not problems:
            entries: dict[str, Any] = {"files": {"fp32": "model.onnx", "int8": "model.int8.onnx"}, "quantization": m}
            if missed:
                entries["int8_rejected"] = "; ".join(missed)
                log.warning("%s export: %s; %s int8 meets parity and is exported", kind, entries["int8_rejected"], m)
            return parity, entries
        missed.append(f"{m} int8: {problems}")
    (out / "model.int8.onnx").unlink(missing_ok=True)
    log.warning("%s export: int8 misses parity (%s); the model is exported in fp32 only", kind, "; ".join(missed))
    return parity, {"files": {"fp32": "model.onnx"}, "int8_rejected": "; ".join(missed)}
