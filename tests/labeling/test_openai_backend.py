"""The openai backend against a real OpenAI-compatible server (llama.cpp's, serving SmolLM2) on
127.0.0.1, started by the test; plus a real local HTTP server that fails on purpose, for the retry
path (a proxy in front of the real server is the reliability suite's job)."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from kpspark.labeling.backends import PairPrompt, load_backend
from kpspark.labeling.backends.openai_http import first_token_alternatives
from tests.tools.local_server import available, llama_server
from kpspark.labeling.prompts import load_template, render

PAIRS = [("red iphone case", "Cell Phones", "OtterBox Defender Case for iPhone 11 Red"),
         ("cordless drill", "Cell Phones", "OtterBox Defender Case for iPhone 11 Red"),
         ("iphone", "Cell Phones", "Apple iPhone 11 64GB Black Unlocked Smartphone"),
         ("running shoes", "Athletic Shoes", "Nike Air Zoom Pegasus Running Shoes Size 10")]


def _prompts():
    t = load_template("v1")
    return [PairPrompt(k, c, ti, render(t, k, c, ti)) for k, c, ti in PAIRS]


def test_both_logprob_formats_are_read():
    chat = {"content": [{"token": "No", "logprob": -0.2, "top_logprobs": [{"token": "No", "logprob": -0.2},
                                                                            {"token": "Yes", "logprob": -1.9}]}]}
    legacy = {"top_logprobs": [{"No": -0.2, " Yes": -1.9}], "tokens": ["No"]}
    assert first_token_alternatives(chat) == [("No", -0.2), ("Yes", -1.9)]
    assert first_token_alternatives(legacy) == [("No", -0.2), (" Yes", -1.9)]
    assert first_token_alternatives({}) is None


def _reply(handler, top: list[tuple[str, float]]) -> None:
    """A chat-completions answer whose first token is ``top[0]`` with ``top`` as its alternatives."""
    alts = [{"token": t, "logprob": lp} for t, lp in top]
    body = json.dumps({"choices": [{"message": {"content": top[0][0]}, "logprobs": {"content": [
        {**alts[0], "top_logprobs": alts}]}}]}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Recorder(http.server.BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        _reply(self, [("No", -0.1)])

    def log_message(self, *args):
        pass


def test_every_other_option_is_a_field_of_each_request():
    """chat_template_kwargs (Qwen3's enable_thinking), seed ...: passed through, not silently dropped."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        be = load_backend("openai", "m", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", concurrency=1,
                          chat_template_kwargs={"enable_thinking": False}, seed=7)
        [res] = be.judge(_prompts()[:1])
        assert res.error is None and res.p_yes == 0.0
        [body] = _Recorder.bodies
        assert body["chat_template_kwargs"] == {"enable_thinking": False} and body["seed"] == 7
        assert body["max_tokens"] == 1 and body["logprobs"] is True and body["model"] == "m"
        # two replicas (one down): round-robin, and the request that hit the dead one is retried on the other
        both = load_backend("openai", "m", base_url=f"http://127.0.0.1:9/v1,http://127.0.0.1:{srv.server_address[1]}/v1",
                            concurrency=1, max_retries=1, backoff=0.01)
        assert all(r.error is None for r in both.judge(_prompts())) and len(_Recorder.bodies) == 1 + 4
        with pytest.raises(ValueError, match="at least one server"):
            load_backend("openai", "m", base_url="")
    finally:
        srv.shutdown()


class _Flaky(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):  # noqa: N802 - http.server's naming
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls % 3:  # two failures (429 then 503), then a valid answer
            self.send_response(429 if type(self).calls % 3 == 1 else 503)
            self.end_headers()
            return
        _reply(self, [("Yes", -0.1), ("No", -2.4)])

    def log_message(self, *args):
        pass


def test_retries_with_backoff_on_429_and_5xx_and_key_from_env(monkeypatch):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        monkeypatch.setenv("KP_TEST_KEY", "canary-secret")
        be = load_backend("openai", "m", base_url=base, api_key_env="KP_TEST_KEY", concurrency=1,
                          backoff=0.01, max_retries=3)
        [res] = be.judge(_prompts()[:1])
        assert res.error is None and res.p_yes == pytest.approx(1 / (1 + 2.718281828 ** -2.3), rel=1e-6)
        assert be.retries == 2
        monkeypatch.delenv("KP_TEST_KEY")
        [res] = be.judge(_prompts()[:1])  # a missing key is that row's error, not a crash
        assert res.p_yes is None and "KP_TEST_KEY" in res.error and "canary" not in res.error
        dead = load_backend("openai", "m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff=0.01)
        [res] = dead.judge(_prompts()[:1])
        assert res.p_yes is None and "gave up after 1 retries" in res.error
    finally:
        srv.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="llama-cpp-python[server] not installed (make setup installs it)")
def test_openai_backend_against_a_real_llama_cpp_server():
    from kpspark.labeling.backends import load_backend as lb

    with llama_server("smollm2", n_threads=2) as base:
        seq = lb("openai", "smollm2", base_url=base, concurrency=1)
        con = lb("openai", "smollm2", base_url=base, concurrency=4)
        a, b = seq.judge(_prompts()), con.judge(_prompts())
    for r1, r2 in zip(a, b):
        assert r1.error is None and 0.0 <= r1.p_yes <= 1.0 and r1.raw is not None
        assert r1.p_yes == pytest.approx(r2.p_yes, abs=1e-3)  # concurrency does not change answers
    # the same model through transformers gives a correlated P(yes) (GGUF Q4 vs dequantized fp32)
    hf = load_backend("transformers", "smollm2", torch_threads=2).judge(_prompts())
    assert max(abs(x.p_yes - y.p_yes) for x, y in zip(a, hf)) < 0.15


class _Auth(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.headers.get("Authorization"))
        _reply(self, [("Yes", -0.1), ("No", -2.4)])

    def log_message(self, *args):
        pass


class _StandInDbutils:
    """What Databricks' ``dbutils.secrets`` offers the judge: ``get(scope=, key=)``."""

    def __init__(self, values: dict):
        self.secrets = self
        self.values = values

    def get(self, scope: str, key: str) -> str:
        return self.values[(scope, key)]


def test_the_key_from_a_secret_scope_reaches_the_server_but_no_param_conf_or_saved_stage(spark, tmp_path):
    from kpspark import secrets
    from kpspark.labeling.judge import LLMJudge

    canary = "sk-scope-canary-7f3a"
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Auth)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    opts = {"base_url": f"http://127.0.0.1:{srv.server_address[1]}/v1", "api_key_secret": "kpspark/openai",
            "concurrency": 1}
    judge = LLMJudge(backend="openai", model="m", backendOptions=opts, batchSize=2)
    df = spark.createDataFrame(PAIRS, "keyphrase string, category string, title string")
    try:
        with pytest.raises(Exception, match="no dbutils here"):  # outside Databricks, without a stand-in
            judge.transform(df)
        secrets.set_dbutils(_StandInDbutils({("kpspark", "openai"): canary}))
        got = judge.transform(df).toPandas()
    finally:
        secrets.set_dbutils(None)
        srv.shutdown()
    assert got["error"].isna().all() and (got["label"] == 1).all()
    assert _Auth.seen and set(_Auth.seen) == {f"Bearer {canary}"}
    judge.write().overwrite().save(str(tmp_path / "judge"))
    saved = b"".join(p.read_bytes() for p in (tmp_path / "judge").rglob("*") if p.is_file())
    assert b"kpspark/openai" in saved and canary.encode() not in saved  # the reference is saved, not the key
    assert canary not in json.dumps({p.name: str(v) for p, v in judge.extractParamMap().items()})
    assert canary not in str(spark.sparkContext.getConf().getAll())
    with pytest.raises(ValueError, match="api_key_secret"):
        LLMJudge(backend="openai", backendOptions={"api_key": canary})
