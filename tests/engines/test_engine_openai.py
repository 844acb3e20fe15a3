"""The OpenAI-compatible server (stepwiser.engines.server) and the `openai` engine, on loopback only.

Fast tests use a deterministic test-double engine or a scripted HTTP server (faults, garbage); the
end-to-end tests serve the `hf` engine with the tiny random Llama and compare the two engines.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from stepwiser.engines.base import Completion, Engine, EngineError, Request, SamplingParams
from stepwiser.engines.openai import OpenAIEngine, ServerPool, parse_base_urls, split_total
from stepwiser.engines.server import serve

FAST = {"max_retries": 3, "retry_backoff": 0.01, "retry_backoff_max": 0.05, "timeout": 10}


class EchoEngine(Engine):
    """Deterministic double: completion j of prompt P is `<P[-12:]>#j w1 w2 ...` cut at a stop string
    or at max_tokens words; tokens are whitespace words. Records calls and overlapping calls."""

    name = "echo"

    def __init__(self, model: str = "echo-model"):
        self.model = model
        self.calls: list[tuple[list[Request], SamplingParams]] = []
        self.active = self.max_active = 0
        self._lock = threading.Lock()

    def apply_chat_template(self, messages, add_generation_prompt=True):
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def generate(self, requests, params):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.01)
        self.calls.append((requests, params))
        out = []
        for r in requests:
            prompt = self.prompt_text(r)
            group = []
            for j in range(params.n):
                tail = prompt[-12:].replace(" ", "_")
                words = f"<{tail}>#{j} seed={params.seed} a b c d e f g h".split(" ")
                text, reason = " ".join(words[: params.max_tokens]), "length"
                if params.max_tokens >= len(words):
                    reason = "stop"
                for s in params.stop:
                    if s in text:
                        text, reason = text[: text.index(s)], "stop"
                group.append(Completion(text, len(prompt.split()), len(text.split()), reason))
            out.append(group)
        with self._lock:
            self.active -= 1
        return out


@pytest.fixture()
def echo_server():
    engine = EchoEngine()
    server, thread, url = serve(engine)
    yield engine, url
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from `server.script` (status, body) in order, then `server.default`."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
            status, payload = self.server.script.pop(0) if self.server.script else self.server.default(body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def one_choice(body):
    """A llama.cpp-like answer: one choice whatever `n` is; text tells the seed it got."""
    return 200, {"choices": [{"index": 0, "text": f"seed={body.get('seed')}", "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}


@pytest.fixture()
def scripted():
    servers = []

    def start(script=(), default=one_choice):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
        srv.daemon_threads = True
        srv.script, srv.default, srv.bodies, srv.lock = list(script), default, [], threading.Lock()
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def dead_url() -> str:
    """A loopback URL nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


CHAT = [{"role": "user", "content": "What is 2+3?"}]


# -- pure helpers --------------------------------------------------------------------------------

def test_parse_base_urls():
    assert parse_base_urls("http://a:8000/v1/, https://b:1 ,") == ["http://a:8000", "https://b:1"]
    assert parse_base_urls(["http://x/v1"]) == ["http://x"]
    with pytest.raises(ValueError, match="http://"):
        parse_base_urls("localhost:8000")
    with pytest.raises(ValueError, match="at least one"):
        parse_base_urls(" , ")


def test_split_total_is_proportional_and_exact():
    assert split_total(10, [1, 1, 2]) == [3, 2, 5]  # ties: the earlier choice gets the remainder
    assert split_total(7, [0, 0]) == [4, 3]
    assert split_total(9, [3, 3, 3]) == [3, 3, 3]
    assert sum(split_total(101, [5, 17, 0, 2])) == 101
    assert split_total(5, []) == []


def test_pool_prefers_least_in_flight_and_skips_cooling_servers():
    pool = ServerPool(["a", "b", "c"], backoff=10, backoff_max=10)
    picks = [pool.acquire()[0] for _ in range(3)]
    assert sorted(picks) == [0, 1, 2]  # one each while all are busy equally
    pool.release(1, failed=True)  # b fails: cooling down for 10 s
    assert pool.acquire()[0] != 1
    for i in (0, 2):
        pool.release(i, failed=True)
    i, wait = pool.acquire()
    assert wait > 0  # everyone is cooling down: the caller must back off


# -- the server -----------------------------------------------------------------------------------

def test_server_completions_choices_and_usage(echo_server):
    engine, url = echo_server
    r = httpx.post(f"{url}/v1/completions", json={
        "model": "echo-model", "prompt": ["one two", "three"], "n": 2, "max_tokens": 3, "seed": 5,
        "temperature": 0.7, "top_p": 0.9, "stop": "zzz"}, timeout=10)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "text_completion"
    assert [c["index"] for c in data["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in data["choices"]] == ["<one_two>#0 seed=5 a", "<one_two>#1 seed=5 a",
                                                    "<three>#0 seed=5 a", "<three>#1 seed=5 a"]
    assert {c["finish_reason"] for c in data["choices"]} == {"length"}
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 12, "total_tokens": 15}
    requests, params = engine.calls[-1]
    assert [q.text for q in requests] == ["one two", "three"]
    assert params.as_dict() == {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 3, "stop": ["zzz"],
                                "seed": 5}


def test_server_chat_applies_the_engines_template(echo_server):
    engine, url = echo_server
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": CHAT, "max_completion_tokens": 40,
                                                       "stop": ["c d"]}, timeout=10)
    data = r.json()
    assert data["object"] == "chat.completion"
    want = EchoEngine().generate([Request(messages=CHAT)], SamplingParams(max_tokens=40, stop=["c d"]))[0][0]
    assert want.text.endswith("a b ") and want.finish_reason == "stop"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": want.text}
    assert choice["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] == want.prompt_tokens
    assert engine.calls[-1][0][0].messages == CHAT


def test_server_models_and_errors(echo_server):
    _, url = echo_server
    assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "echo-model"
    assert httpx.get(f"{url}/v2/nothing").status_code == 404
    bad = [({"prompt": "x", "n": 0}, 400, "n must be"), ({"prompt": "x", "stream": True}, 400, "stream"),
           ({"prompt": [1, 2]}, 400, "token ids"), ({"prompt": "x", "model": "other"}, 404, "echo-model"),
           ({"prompt": "x", "top_p": "high"}, 400, "top_p"), ({"prompt": "x", "stop": [1]}, 400, "stop")]
    for body, status, words in bad:
        r = httpx.post(f"{url}/v1/completions", json=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user"}]})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]


def test_server_serializes_generation(echo_server):
    engine, url = echo_server
    client = OpenAIEngine("echo-model", url, concurrency=8, **FAST)
    out = client.generate([Request(text=f"p{i}") for i in range(16)], SamplingParams(max_tokens=2))
    assert [o[0].text for o in out] == [f"<p{i}>#0 seed=None" for i in range(16)]
    assert engine.max_active == 1 and len(engine.calls) == 16


# -- the openai engine against the echo server ---------------------------------------------------

def test_chat_mode_uses_chat_endpoint_and_prefix_needs_tokenizer(echo_server):
    engine, url = echo_server
    client = OpenAIEngine("echo-model", url, **FAST)
    out = client.generate([Request(messages=CHAT, seed=3)], SamplingParams(n=2, max_tokens=4))
    want = EchoEngine().generate([Request(messages=CHAT)], SamplingParams(n=2, max_tokens=4, seed=3))
    assert [c.text for c in out[0]] == [c.text for c in want[0]] and "seed=3" in want[0][0].text
    assert engine.calls[-1][0][0].messages == CHAT
    n_calls = len(engine.calls)
    with pytest.raises(EngineError, match="--tokenizer"):
        client.generate([Request(messages=CHAT, prefix="Step 1")], SamplingParams())
    with pytest.raises(EngineError, match="--tokenizer"):
        client.apply_chat_template(CHAT)
    assert len(engine.calls) == n_calls  # refused before sending anything


def test_token_counts_when_server_returns_n_choices(echo_server):
    _, url = echo_server
    client = OpenAIEngine("echo-model", url, **FAST)
    out = client.generate([Request(text="x y z")], SamplingParams(n=3, max_tokens=4, seed=1))
    assert [c.prompt_tokens for c in out[0]] == [3, 3, 3]
    # no tokenizer and only usage totals (12 tokens for 3 equally long texts): an even split
    assert [c.completion_tokens for c in out[0]] == [4, 4, 4]
    assert [c.finish_reason for c in out[0]] == ["length"] * 3


def test_fewer_choices_than_n_are_completed_with_follow_up_seeds(scripted):
    srv, url = scripted()
    client = OpenAIEngine("m", url, **FAST)
    out = client.generate([Request(text="p", seed=10)], SamplingParams(n=3, temperature=1.0))
    assert [c.text for c in out[0]] == ["seed=10", "seed=11", "seed=12"]
    assert [b["n"] for b in srv.bodies] == [3, 2, 1]
    assert [(c.prompt_tokens, c.completion_tokens) for c in out[0]] == [(7, 2)] * 3
    # greedy: one call, repeated
    srv.bodies.clear()
    out = client.generate([Request(text="p")], SamplingParams(n=4, temperature=0))
    assert [c.text for c in out[0]] == ["seed=None"] * 4 and [b["n"] for b in srv.bodies] == [1]


class CharTokenizer:
    """A Llama-like stand-in: adds BOS itself and its chat template starts with the BOS text."""

    bos_token, bos_token_id, chat_template = "<s>", 1, "[INST]...[/INST]"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [1] * add_special_tokens + [ord(c) for c in text]}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "<s>[INST]" + messages[-1]["content"] + "[/INST]"


def two_choices(body):
    return 200, {"choices": [{"index": 1, "text": "abcd", "finish_reason": "length"},
                             {"index": 0, "text": "ab", "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 100}}


def test_tokenizer_mode_prompt_and_local_token_counts(scripted):
    srv, url = scripted(default=two_choices)
    client = OpenAIEngine("m", url, tokenizer=CharTokenizer(), **FAST)
    out = client.generate([Request(messages=CHAT, prefix="So")], SamplingParams(n=2))
    assert srv.bodies[0]["prompt"] == "[INST]What is 2+3?[/INST]So"  # the server adds BOS
    assert "messages" not in srv.bodies[0]
    assert out[0] == [Completion("ab", 9, 2, "stop"), Completion("abcd", 9, 4, "length")]
    no_tok = OpenAIEngine("m", url, **FAST).generate([Request(text="p")], SamplingParams(n=2))
    assert [c.completion_tokens for c in no_tok[0]] == [33, 67]  # the total split by text length


def test_failover_to_the_live_server(echo_server):
    _engine, url = echo_server
    client = OpenAIEngine("echo-model", f"{dead_url()},{url}", concurrency=2, max_retries=3,
                          retry_backoff=0.5, retry_backoff_max=1.0)
    start = time.monotonic()
    out = client.generate([Request(text=f"q{i}") for i in range(6)], SamplingParams(max_tokens=2))
    assert [o[0].text for o in out] == [f"<q{i}>#0 seed=None" for i in range(6)]
    assert time.monotonic() - start < 10
    assert client.pool.failures[0] >= 1 and client.pool.failures[1] == 0


def test_load_is_spread_over_servers(scripted):
    (a, url_a), (b, url_b) = scripted(), scripted()
    client = OpenAIEngine("m", [url_a, url_b], concurrency=2, **FAST)
    client.generate([Request(text=str(i)) for i in range(10)], SamplingParams(temperature=0))
    assert len(a.bodies) + len(b.bodies) == 10 and len(a.bodies) >= 2 and len(b.bodies) >= 2


def test_all_servers_dead_is_a_clear_error_in_bounded_time():
    urls = [dead_url(), dead_url()]
    client = OpenAIEngine("m", ",".join(urls), **FAST)
    start = time.monotonic()
    with pytest.raises(EngineError) as err:
        client.generate([Request(text="p")] * 4, SamplingParams())
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "no server answered" in msg and urls[0] in msg and urls[1] in msg and "4 attempts" in msg


def test_retries_429_and_500_then_succeeds(scripted):
    fail = [(429, {"error": {"message": "slow down"}}), (500, b"oops"), (503, {"error": "busy"})]
    srv, url = scripted(script=fail)
    client = OpenAIEngine("m", url, **FAST)
    out = client.generate([Request(text="p")], SamplingParams(seed=1))
    assert out[0][0].text == "seed=1" and len(srv.bodies) == 4

    srv, url = scripted(script=fail * 3)
    client = OpenAIEngine("m", url, max_retries=2, retry_backoff=0.01, retry_backoff_max=0.05)
    with pytest.raises(EngineError, match="3 attempts.*HTTP 503 busy"):
        client.generate([Request(text="p")], SamplingParams())
    assert len(srv.bodies) == 3


def test_client_errors_are_not_retried(scripted):
    srv, url = scripted(script=[(400, {"error": {"message": "max_tokens is too large"}})])
    client = OpenAIEngine("m", url, **FAST)
    with pytest.raises(EngineError, match="HTTP 400 max_tokens is too large"):
        client.generate([Request(text="p")], SamplingParams())
    assert len(srv.bodies) == 1


@pytest.mark.parametrize("payload,words", [
    (b"<html>not an API</html>", "not JSON"),
    ([1, 2], "not an object"),
    ({"id": "x"}, "without choices"),
    ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "without text"),
    ({"choices": [{"index": 0, "text": "t", "finish_reason": "tool_calls"}], "usage": {}}, "finish_reason"),
    ({"choices": [{"index": 0, "text": "t", "finish_reason": "stop"}]}, "usage.prompt_tokens"),
])
def test_garbage_answers_are_clear_errors(scripted, payload, words):
    _srv, url = scripted(default=lambda body: (200, payload))
    client = OpenAIEngine("m", url, **FAST)
    with pytest.raises(EngineError, match=words) as err:
        client.generate([Request(text="p")], SamplingParams())
    assert url in str(err.value)


# -- end to end: the hf engine behind the server ----------------------------------------------------

@pytest.fixture(scope="module")
def hf_server(tiny_model_dir):
    from stepwiser.engines.hf import HFEngine

    engine = HFEngine(str(tiny_model_dir), device="cpu")
    server, _thread, url = serve(engine)
    yield engine, url
    server.shutdown()
    server.server_close()


def test_chat_mode_matches_the_hf_engine(hf_server):
    engine, url = hf_server
    params = SamplingParams(temperature=0, max_tokens=12)
    want = engine.generate([Request(messages=CHAT)], params)[0][0]
    with OpenAIEngine(engine.model, url, **FAST) as client:
        got = client.generate([Request(messages=CHAT)], params)[0][0]
    assert got == want and got.completion_tokens > 0


def test_tokenizer_mode_continues_a_prefix_like_the_hf_engine(hf_server, tiny_model_dir):
    engine, url = hf_server
    params = SamplingParams(temperature=0, max_tokens=10)
    requests = [Request(messages=CHAT, prefix="<chunk>First, "), Request(messages=CHAT, prefix="")]
    want = engine.generate(requests, params)
    with OpenAIEngine(engine.model, url, tokenizer=str(tiny_model_dir), **FAST) as client:
        assert client.apply_chat_template(CHAT) == engine.apply_chat_template(CHAT)
        got = client.generate(requests, params)
    assert [g[0].text for g in got] == [w[0].text for w in want]
    assert [g[0].prompt_tokens for g in got] == [w[0].prompt_tokens for w in want]
    assert [g[0].completion_tokens for g in got] == [w[0].completion_tokens for w in want]


def test_sampling_n_and_stop_strings_through_the_server(hf_server):
    engine, url = hf_server
    greedy = engine.generate([Request(messages=CHAT)], SamplingParams(temperature=0, max_tokens=16))[0][0]
    stop = greedy.text[len(greedy.text) // 2:][:3]
    assert stop and greedy.finish_reason == "length"
    with OpenAIEngine(engine.model, url, **FAST) as client:
        cut = client.generate([Request(messages=CHAT)], SamplingParams(temperature=0, max_tokens=16,
                                                                       stop=[stop]))[0][0]
        assert cut.text == greedy.text[: greedy.text.index(stop)] and cut.finish_reason == "stop"
        samples = client.generate([Request(messages=CHAT, seed=7)], SamplingParams(n=3, max_tokens=8))[0]
        again = client.generate([Request(messages=CHAT, seed=7)], SamplingParams(n=3, max_tokens=8))[0]
    assert len(samples) == 3 and [s.text for s in samples] == [s.text for s in again]
    assert len({s.text for s in samples}) > 1  # the n samples differ (one seed, n streams)
    assert all(s.prompt_tokens == greedy.prompt_tokens for s in samples)
    assert sum(s.completion_tokens for s in samples) <= 24
