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


def get_cached_backend(name: str, model: str, options_json: str = "{}") -> JudgeBackend:
    """:func:`load_backend`, cached per Python process (executor worker) by its arguments."""
    return _CACHE.get((name, model, options_json),  # type: ignore[no-any-return]
                      lambda: load_backend(name, model, **json.loads(options_json or "{}")))
