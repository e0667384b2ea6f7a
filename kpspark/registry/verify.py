"""Refuse a broken model before a job writes anything.

:func:`verify_export` downloads a registered cross-encoder, bi-encoder or index export (the same way the
executors will), and checks on the driver that it is what the job expects: the ``kind`` in its
``kpspark_model.json``, every file it lists present and, when the export recorded them, matching its
SHA-256; for ONNX models, that the ONNX file loads, that its inputs are the tokenizer's, and that the
tokenizer's largest token id fits the model's vocabulary (a probe inference: a tokenizer from another
model is refused here instead of failing, or silently mis-scoring, on executors).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kpspark.errors import KPSparkError
_VERIFIED: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # pinned URIs checked in this process


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: str | Path, names: list[str]) -> dict[str, str]:
    """``{name: sha256}`` of files of an export folder (the exporters record them in the metadata)."""
    return {n: sha256(Path(folder) / n) for n in names if (Path(folder) / n).exists()}


def verify_export(model_uri: str, kind: str, precision: str = "int8", tracking_uri: str | None = None
                  ) -> dict[str, Any]:
    """Check the export behind ``model_uri`` (see the module doc); a :class:`KPSparkError` naming the
    model and the problem when it is not usable. Returns what was checked."""
    from kpspark.crossencoder.export import META_FILE
    from kpspark.crossencoder.scorer import local_model_dir

    key = (tracking_uri or "", model_uri, kind, precision)
    if key in _VERIFIED and "@" not in model_uri:  # a pinned version does not change; an alias may
        return _VERIFIED[key]
    try:
        d = local_model_dir(model_uri, tracking_uri)
        meta = json.loads((d / META_FILE).read_text())
    except KPSparkError:
        raise
    except Exception as e:  # noqa: BLE001 (download / JSON errors: one clear message)
        raise KPSparkError(f"{model_uri}: cannot read the model's {META_FILE}: {e}") from e
    if meta.get("kind") != kind:
        raise KPSparkError(f"{model_uri} is a {meta.get('kind')!r} export, expected {kind!r}")
    checked: dict[str, Any] = {"uri": model_uri, "kind": kind, "dir": str(d)}
    for name, digest in (meta.get("sha256") or {}).items():
        f = d / name
        if not f.exists():
            raise KPSparkError(f"{model_uri}: {name} is missing from the model")
        if sha256(f) != digest:
            raise KPSparkError(f"{model_uri}: {name} does not match the checksum recorded at export "
                               "(corrupted or replaced file): refusing to load it")
    checked["checksums"] = len(meta.get("sha256") or {})
    if kind in ("cross_encoder", "bi_encoder"):
        _probe(model_uri, d, meta, precision)
        checked["probe"] = "ok"
    _VERIFIED[key] = checked
    return checked


def _probe(model_uri: str, d: Path, meta: dict[str, Any], precision: str) -> None:
    import numpy as np

    from kpspark.onnxutil import load_session, load_tokenizer

    rel = meta.get("files", {}).get(precision)
    if not rel or not (d / rel).exists():
        raise KPSparkError(f"{model_uri}: the {precision} ONNX file ({rel}) is missing from the model")
    tok = load_tokenizer(d, int(meta.get("max_length", 64)))
    session = load_session(d / rel)  # refuses a corrupt file or inputs other than the tokenizer's
    top = tok.get_vocab_size() - 1
    ids = np.array([[0, top, 0]], dtype="int64")
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    try:
        session.run(None, feeds)
    except Exception as e:  # noqa: BLE001 (ORT raises its own types)
        raise KPSparkError(f"{model_uri}: the tokenizer ({top + 1} tokens) does not match the ONNX model "
                           f"(a probe with token id {top} failed: {str(e)[:200]})") from e
