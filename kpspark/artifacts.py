"""The model artifact contract, in one place: every export (cross-encoder, bi-encoder, keyphrase index) is a
folder with a ``kpspark_model.json`` (:data:`META_FILE`: its ``kind``, files, parameters and the SHA-256 of the
files a loader needs); executors download a registered or logged export once per process (:func:`local_model_dir`).

:func:`verify_export` refuses a broken model before a job writes anything: it downloads the export (the same way
the executors will) and checks on the driver the ``kind``, that every listed file is present and, when the export
recorded them, matches its SHA-256; for ONNX models, that the ONNX file loads, that its inputs are the tokenizer's,
and that the tokenizer's largest token id fits the model's vocabulary (a probe inference: a tokenizer from another
model is refused here instead of failing, or silently mis-scoring, on executors).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from kpspark.cache import ProcessCache
from kpspark.errors import KPSparkError

META_FILE = "kpspark_model.json"
PRECISIONS = ("int8", "fp32")
logger = logging.getLogger(__name__)
_VERIFIED = ProcessCache("verified exports", size=64)  # pinned URIs checked in this process
_DOWNLOADS = ProcessCache("model downloads", size=32)  # folder paths: cheap to keep


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: str | Path, names: list[str]) -> dict[str, str]:
    """``{name: sha256}`` of files of an export folder (the exporters record them in the metadata)."""
    return {n: sha256(Path(folder) / n) for n in names if (Path(folder) / n).exists()}


def verify_export(model_uri: str, kind: str, precision: str = "int8", tracking_uri: str | None = None,
                  registry_uri: str | None = None) -> dict[str, Any]:
    """Check the export behind ``model_uri`` (see the module doc); a :class:`KPSparkError` naming the
    model and the problem when it is not usable. Returns what was checked."""
    if "@" in model_uri:  # an alias may move: checked every time; a pinned version does not change
        return _verify(model_uri, kind, precision, tracking_uri, registry_uri)
    key = (tracking_uri or "", registry_uri or "", model_uri, kind, precision)
    return _VERIFIED.get(key, lambda: _verify(model_uri, kind, precision, tracking_uri,  # type: ignore[no-any-return]
                                              registry_uri))


def _verify(model_uri: str, kind: str, precision: str, tracking_uri: str | None,
            registry_uri: str | None) -> dict[str, Any]:
    try:
        d = local_model_dir(model_uri, tracking_uri, registry_uri)
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
    return checked


def _probe(model_uri: str, d: Path, meta: dict[str, Any], precision: str) -> None:
    import numpy as np

    from kpspark.onnxutil import load_session, load_tokenizer

    onnx_file = model_file(d, meta, precision, model_uri)
    tok = load_tokenizer(d, int(meta.get("max_length", 64)))
    session = load_session(onnx_file)  # refuses a corrupt file or inputs other than the tokenizer's
    top = tok.get_vocab_size() - 1
    ids = np.array([[0, top, 0]], dtype="int64")
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    try:
        session.run(None, feeds)
    except Exception as e:  # noqa: BLE001 (ORT raises its own types)
        raise KPSparkError(f"{model_uri}: the tokenizer ({top + 1} tokens) does not match the ONNX model "
                           f"(a probe with token id {top} failed: {str(e)[:200]})") from e


def model_file(d: Path, meta: dict[str, Any], precision: str, model_uri: str = "") -> Path:
    """The ONNX file of an export for ``precision``. An export whose int8 file missed parity at export time lists
    only fp32 (``int8_rejected`` says why): asking it for int8 serves fp32, with a warning, rather than failing a
    job over a model that was trained and registered. A listed file that is absent is an error."""
    if precision not in PRECISIONS:
        raise KPSparkError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    files = meta.get("files") or {}
    if precision == "int8" and "int8" not in files and "fp32" in files:
        logger.warning("%s has no int8 file (%s): scoring in fp32", model_uri or d,
                       meta.get("int8_rejected", "not exported"))
        precision = "fp32"
    rel = files.get(precision)
    if not rel or not (d / rel).exists():
        raise KPSparkError(f"{model_uri or d}: the {precision} ONNX file ({rel}) is missing from the model")
    return d / rel


def find_export_dir(root: str | os.PathLike[str]) -> Path:
    """The folder holding ``kpspark_model.json`` under ``root`` (an export or a logged pyfunc)."""
    root = Path(root)
    if (root / META_FILE).exists():
        return root
    found = sorted(root.rglob(META_FILE))
    if not found:
        raise KPSparkError(f"no {META_FILE} under {root}: not a kpspark model export (cross-encoder, bi-encoder or index)")
    return found[0].parent


def is_artifact_uri(location: str) -> bool:
    """True for an MLflow artifact location (``runs:/``, ``models:/``, ``mlflow-artifacts:/``, ``s3://`` ...);
    False for a folder (a plain path or ``file://``)."""
    return ("://" in location or location.startswith(("runs:", "models:"))) and not location.startswith("file://")


def download(uri: str, tracking_uri: str | None, prefix: str, registry_uri: str | None = None) -> Path:
    """A local copy of the artifact ``uri`` (a file or a folder) in a fresh scratch folder of this process,
    through the tracking server ``tracking_uri`` and, for ``models:/`` URIs, the registry ``registry_uri``
    (default: the tracking URI); no progress bars in task logs."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from kpspark.sparkutil import scratch_dir

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri or tracking_uri:
        mlflow.set_registry_uri(registry_uri or tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch_dir(prefix)))


def local_model_dir(model_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> Path:
    """A local copy of ``model_uri`` (downloaded once per process for registry/run URIs)."""
    if not is_artifact_uri(model_uri):
        return find_export_dir(model_uri.removeprefix("file://"))
    # the same models:/ URI names another model in another registry
    key = (tracking_uri or "", registry_uri or "", model_uri)
    return find_export_dir(_DOWNLOADS.get(key, lambda: download(model_uri, tracking_uri, "kpspark-model-",
                                                                registry_uri)))


def write_export_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write ``kpspark_model.json`` of an ONNX export (cross- or bi-encoder), with the SHA-256 of the
    files a loader needs: a corrupted or swapped file is refused at load (:func:`verify_export`)."""
    meta = {**meta, "sha256": file_digests(out, [*meta["files"].values(), "tokenizer.json"])}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
