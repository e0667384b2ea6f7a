"""Start a real OpenAI-compatible server on 127.0.0.1 serving a GGUF model (llama.cpp's server from
the ``llama-cpp-python[server]`` package), for tests, benchmarks and laptop runs of the ``openai``
backend. ``with llama_server() as base_url: ...``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from kpspark.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

# llama.cpp built on a CPU with AMX (make setup builds it for the machine it runs on) repacks Q4 weights into AMX
# buffers, and with logits_all (the logprobs the judge reads) the first completion then crashes the server with a
# segmentation fault (llama-cpp-python 0.3.36, Intel Xeon with amx_int8; the in-process Llama does the same). The
# server here loads the model without those extra buffer types: the plain CPU kernels, on every machine.
_SERVER_MAIN = """
import llama_cpp.llama_cpp as low  # where llama_cpp.Llama reads its model defaults
_default = low.llama_model_default_params
def _params():
    p = _default()
    p.use_extra_bufts = False
    return p
low.llama_model_default_params = _params
from llama_cpp.server.__main__ import main
main()
"""


def available() -> bool:
    """True when ``llama_cpp.server`` can be imported."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: str = "smollm2", port: int | None = None, n_threads: int = 2, n_ctx: int = 2048,
                 model_alias: str = "smollm2", startup_timeout: float = 180.0,
                 log_file: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Run llama.cpp's server (``llama_cpp.server``) on 127.0.0.1 and yield its ``/v1`` base URL.

    ``model`` is a GGUF path or ``smollm2`` (the packaged SmolLM2-135M-Instruct). The server is
    stopped on exit.
    """
    if not available():
        raise BackendUnavailableError("llama.cpp's server is not installed: pip install 'llama-cpp-python[server]'")
    from kpspark.labeling.backends.hf import resolve_model

    folder, gguf = resolve_model(model)
    path = str(Path(folder) / gguf) if gguf else folder
    port = port or free_port()
    cmd = [sys.executable, "-c", _SERVER_MAIN, "--model", path, "--model_alias", model_alias,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(n_threads),
           # prompt processing is nearly all the work of a 1-token answer; its default is every core of the machine
           "--n_threads_batch", str(n_threads), "--n_ctx", str(n_ctx),
           "--logits_all", "true", "--verbose", "false"]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with code {proc.returncode} ({' '.join(cmd)})")
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if json.loads(r.read()).get("data"):
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"llama.cpp server did not answer within {startup_timeout}s")
            time.sleep(0.5)
        logger.info("llama.cpp server on %s (model %s)", base, path)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_file:
            out.close()  # type: ignore[union-attr]
