"""vLLM offline backend: one ``LLM`` engine per executor process (GPU), logprobs of the first
generated token. Imported lazily; needs ``pip install 'kpspark[vllm]'`` and a GPU.

Every option other than the few named below goes to ``vllm.LLM`` as an engine argument (``dtype``,
``quantization``, ``max_num_seqs``, ``enable_prefix_caching`` ...); ``chat_template_kwargs`` goes to each
``chat`` call (``{"enable_thinking": false}`` for Qwen3-style models, whose first token is otherwise
``<think>``). The GPU is the one Spark assigned to the task (see :func:`kpspark.labeling.judge.bind_gpu`)."""
from __future__ import annotations

from typing import Any, Sequence

from kpspark.errors import require
from kpspark.labeling.backends.base import JudgeResult, PairPrompt, p_yes_from_logprobs
from kpspark.labeling.prompts import classify_token


class VllmBackend:
    """Offline batched generation of one token with top-k logprobs."""

    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_model_len: int = 1024, top_logprobs: int = 20,
                 chat_template_kwargs: dict[str, Any] | None = None, **engine_args: Any) -> None:
        vllm = require("vllm", "vllm")
        self.model_id = model
        self.chat_kwargs = {"chat_template_kwargs": dict(chat_template_kwargs)} if chat_template_kwargs else {}
        self.llm = vllm.LLM(model=model, tensor_parallel_size=int(tensor_parallel_size),  # type: ignore[attr-defined]
                            gpu_memory_utilization=float(gpu_memory_utilization), max_model_len=int(max_model_len),
                            **engine_args)
        self.params = vllm.SamplingParams(max_tokens=1, temperature=0.0,  # type: ignore[attr-defined]
                                          logprobs=int(top_logprobs))

    def judge(self, prompts: Sequence[PairPrompt]) -> list[JudgeResult]:
        outs = self.llm.chat([p.messages for p in prompts], self.params, use_tqdm=False, **self.chat_kwargs)
        results = []
        for o in outs:
            comp = o.outputs[0]
            if not comp.logprobs:
                results.append(JudgeResult(None, comp.text, "vllm returned no logprobs"))
                continue
            yes, no = [], []
            for lp in comp.logprobs[0].values():
                kind = classify_token(lp.decoded_token or "")
                if kind == "yes":
                    yes.append(float(lp.logprob))
                elif kind == "no":
                    no.append(float(lp.logprob))
            p = p_yes_from_logprobs(yes, no)
            results.append(JudgeResult(p, comp.text, None if p is not None else "no yes/no token in top logprobs"))
        return results
