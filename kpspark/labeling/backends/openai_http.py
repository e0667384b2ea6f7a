"""Any OpenAI-compatible chat server over HTTP (``vllm serve``, llama.cpp's server, hosted APIs).

One request per pair with ``max_tokens=1, logprobs=true, top_logprobs=k``; P(yes) from the yes/no
entries among the top log-probabilities. Bounded concurrency (a thread pool per executor
process), per-request timeout, retries with exponential backoff and full jitter on 429/5xx and
connection errors. The API key is read from the environment variable whose **name** is
``api_key_env``; the key itself is never a parameter and never logged. ``base_url`` may name several replicas (a
list, or comma-separated): requests go round-robin over them; ``${VAR}`` in it is read from the executor's
environment (a server beside each node: ``http://127.0.0.1:${LLM_PORT}/v1``). Options other than the client's own
are sent as fields of every request (``chat_template_kwargs={"enable_thinking": false}``, ``seed`` ...).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from kpspark.labeling.backends.base import JudgeResult, PairPrompt, p_yes_from_logprobs
from kpspark.labeling.prompts import classify_token

logger = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def first_token_alternatives(logprobs: dict[str, Any]) -> list[tuple[str, float]] | None:
    """(token, logprob) alternatives of the first generated token, from either the chat format
    (``content[0].top_logprobs``: OpenAI, vLLM, llama.cpp's server) or the legacy completions
    format (``top_logprobs[0]`` as a dict, which some servers return for chat too)."""
    content = logprobs.get("content")
    if content:
        first = content[0]
        alts = [(a.get("token", ""), float(a["logprob"])) for a in first.get("top_logprobs") or []]
        return alts or [(first.get("token", ""), float(first.get("logprob", 0.0)))]
    legacy = logprobs.get("top_logprobs")
    if legacy and isinstance(legacy[0], dict):
        return [(t, float(lp)) for t, lp in legacy[0].items()]
    return None


class OpenAIBackend:
    """Chat-completions client with logprobs."""

    name = "openai"

    def __init__(self, model: str, base_url: str | Sequence[str] = "http://127.0.0.1:8000/v1", api_key_env: str = "",
                 concurrency: int = 8, timeout: float = 30.0, max_retries: int = 5, backoff: float = 0.5,
                 top_logprobs: int = 20, api_key: str | None = None, **request_fields: Any) -> None:
        self.model_id = model
        # every other option is a field of each request (chat_template_kwargs, seed, a vendor's extras)
        self.request_fields = dict(request_fields)
        # ${VAR} is the executor's own environment: a server beside each node (http://${NODE_IP}:8080/v1)
        bases = [os.path.expandvars(b.strip()) for b in (base_url.split(",") if isinstance(base_url, str)
                                                         else base_url)]
        if not bases or not all(bases):
            raise ValueError(f"base_url must name at least one server, got {base_url!r}")
        # several replicas: requests go round-robin over them, and a retry goes to the next one
        self.urls = [b.rstrip("/") + "/chat/completions" for b in bases]
        self.url = self.urls[0]
        self._next = itertools.count()
        self.api_key_env = api_key_env
        self._api_key = api_key  # from a secret scope, read on the driver (kpspark.secrets); never an option
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.top_logprobs = int(top_logprobs)
        self.retries = 0  # total retries made, for the benchmark's overhead figure

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        elif self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise RuntimeError(f"environment variable {self.api_key_env} (the API key) is not set")
            h["Authorization"] = f"Bearer {key}"
        return h

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                url = self.urls[next(self._next) % len(self.urls)]
                req = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw)  # type: ignore[no-any-return]
                except ValueError:  # a truncated or garbled body (proxy, dropped stream): transient
                    last = f"malformed response body ({len(raw)} bytes)"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code not in RETRY_STATUS:
                    raise RuntimeError(f"{last}: {e.read()[:200]!r}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt < self.max_retries:
                self.retries += 1
                time.sleep(random.uniform(0, self.backoff * 2 ** attempt))
        raise RuntimeError(f"gave up after {self.max_retries} retries ({last})")

    def _one(self, p: PairPrompt) -> JudgeResult:
        body = {**self.request_fields, "model": self.model_id, "messages": p.messages, "max_tokens": 1,
                "temperature": 0.0, "logprobs": True, "top_logprobs": self.top_logprobs}
        try:
            resp = self._post(body)
            choice = resp["choices"][0]
            raw = (choice.get("message") or {}).get("content")
            alts = first_token_alternatives(choice.get("logprobs") or {})
            if alts is None:
                return JudgeResult(None, raw, "server returned no logprobs")
            yes, no = [], []
            for token, logprob in alts:
                kind = classify_token(token)
                if kind == "yes":
                    yes.append(logprob)
                elif kind == "no":
                    no.append(logprob)
            p_yes = p_yes_from_logprobs(yes, no)
            return JudgeResult(p_yes, raw, None if p_yes is not None else "no yes/no token in top logprobs")
        except Exception as e:  # one pair's failure becomes its row's error, not a task failure
            return JudgeResult(None, None, f"openai: {e}"[:500])

    def judge(self, prompts: Sequence[PairPrompt]) -> list[JudgeResult]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, prompts))
