"""LLM judge: prompts, backends, the LLMJudge stage."""
