"""Judge backends by name (a closed set) and a per-process cache so a model loads once per executor."""
from __future__ import annotations

import json
from typing import Any

from kpspark.cache import ProcessCache
from kpspark.labeling.backends.base import BACKENDS, JudgeBackend, JudgeResult, PairPrompt

__all__ = ["BACKENDS", "JudgeBackend", "JudgeResult", "PairPrompt", "load_backend", "get_cached_backend"]

_CACHE = ProcessCache("judge backends", size=2)  # an LLM is large: at most two per Python worker


def load_backend(name: str, model: str, **options: Any) -> JudgeBackend:
    """Instantiate backend ``name`` (one of :data:`BACKENDS`) for ``model``."""
    if name == "fake":
        from kpspark.labeling.backends.fake import FakeBackend as cls
    elif name == "transformers":
        from kpspark.labeling.backends.hf import TransformersBackend as cls  # type: ignore[assignment]
    elif name == "openai":
        from kpspark.labeling.backends.openai_http import OpenAIBackend as cls  # type: ignore[assignment]
    elif name == "vllm":
        from kpspark.labeling.backends.vllm import VllmBackend as cls  # type: ignore[assignment]
    else:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    return cls(model=model, **options)  # type: ignore[return-value]


def get_cached_backend(name: str, model: str, options_json: str = "{}", api_key: str | None = None) -> JudgeBackend:
    """:func:`load_backend`, cached per Python process (executor worker) by its arguments. ``api_key``: the key a
    secret scope gave the driver (``api_key_secret`` in the options; :mod:`kpspark.secrets`)."""
    import hashlib

    opts = json.loads(options_json or "{}")
    ref = opts.pop("api_key_secret", None)
    if ref and name != "openai":
        raise ValueError(f"api_key_secret is an option of the openai backend, not of {name!r}")
    if ref and not api_key:
        raise ValueError(f"api_key_secret {ref!r} was not read on the driver (LLMJudge reads it in transform)")
    if api_key:
        opts["api_key"] = api_key
    tag = hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""  # the key itself stays out of the cache
    return _CACHE.get((name, model, options_json, tag),  # type: ignore[no-any-return]
                      lambda: load_backend(name, model, **opts))
