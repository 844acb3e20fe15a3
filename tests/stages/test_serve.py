"""`stepwiser serve` over real HTTP on 127.0.0.1 (uvicorn in a background thread) with fake judges:
response shapes and values, batching, malformed bodies, a hanging or failing engine, a full queue."""
from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx

from stepwiser.cli import main
from stepwiser.engines import EngineError
from stepwiser.judges.process_reward import (
    AsyncRemoteProcessReward,
    RemoteProcessReward,
    compute_score,
    compute_score_batch,
)
from stepwiser.stages.serve import ServeConfig, ThreadServer
from stepwiser.stages.serve_app import make_app
from test_process_reward import BAD2, GOOD, UNP, fake_judge, tags

CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


class GatedJudge:
    """A judge whose calls wait for `gate` (set: no wait) and are counted (responses' chunks per call)."""

    def __init__(self, inner=None, gate_open=True):
        self.inner = inner or fake_judge()
        self.gate = threading.Event()
        if gate_open:
            self.gate.set()
        self.calls: list[int] = []

    def judge(self, items, k=1):
        self.calls.append(len(items))
        self.gate.wait(timeout=30)
        return self.inner.judge(items, k)


class FailingJudge:
    def judge(self, items, k=1):
        raise EngineError("connection refused by the judge server")


@contextlib.contextmanager
def serving(judge, **kw):
    cfg = ServeConfig(judge="fake", **{"timeout": 10.0, **kw})
    app = make_app(judge, cfg)
    with ThreadServer(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        yield client, app.state.batcher


def wait_until(pred, limit=10.0):
    end = time.monotonic() + limit
    while not pred():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def test_score_and_health_shapes_and_values():
    with serving(fake_judge(), aggregate="mean") as (client, _):
        r = client.post("/score", json={"items": [{"problem": "p", "response": GOOD},
                                                  {"problem": "p", "response": BAD2},
                                                  {"problem": "p", "response": UNP},
                                                  {"problem": "p", "response": "no chunks"}]})
        assert r.status_code == 200
        res = r.json()["results"]
        assert res[0] == {"chunks": ["Let x = 2.", "Then 2x = 4.", "So \\boxed{4}."],
                          "verdicts": ["Positive"] * 3, "score": 1.0}
        assert res[1]["verdicts"] == ["Positive", "Negative", "Positive"]
        assert res[1]["score"] == pytest.approx(2 / 3)
        assert res[2]["verdicts"] == ["Positive", None, "Positive"] and res[2]["score"] == pytest.approx(2 / 3)
        assert res[3] == {"chunks": [], "verdicts": [], "score": 0.0}
        per_request = client.post("/score", json={"items": [{"problem": "p", "response": BAD2}],
                                                  "aggregate": "first-negative"}).json()
        assert per_request["results"][0]["score"] == pytest.approx(1 / 3)
        assert client.post("/score", json={"items": []}).json() == {"results": []}
        h = client.get("/health")
        assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["engine_calls"] == 2


def test_get_reward_openrlhf_body():
    prompts = [CHATML.format("What is 2*2?"), CHATML.format("What is 2*2?"), CHATML.format("Other?")]
    query = [prompts[0] + GOOD + "<|im_end|>", prompts[1] + BAD2, prompts[2] + GOOD]
    judge = GatedJudge()
    with serving(judge, combine="times") as (client, _):
        r = client.post("/get_reward", json={"query": query, "prompts": prompts, "labels": ["4", "4", "5"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scores"] == [1.0, 0.0, 1.0]       # min
        assert body["rewards"] == [1.0, 0.0, 0.0]      # times the outcome (the third answer 4 is not 5)
        assert body["extra_logs"]["outcome"] == [1.0, 0.0, 0.0]
        assert body["extra_logs"]["chunks"] == [3.0, 3.0, 3.0]
        assert body["extra_logs"]["positive_share"][1] == pytest.approx(2 / 3)
        assert judge.calls == [9]
        prompt = judge.inner.engine.prompts[0]
        assert "### Problem\nWhat is 2*2?\n" in prompt and "<|im_start|>" not in prompt
        missing = client.post("/get_reward", json={"query": query, "prompts": prompts})
        assert missing.status_code == 422 and "needs one label" in missing.json()["error"]
    with serving(fake_judge()) as (client, _):        # combine none: labels optional, rewards = scores
        body = client.post("/get_reward", json={"query": query, "prompts": prompts}).json()
        assert body["rewards"] == body["scores"] == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("path,body,status,words", [
    ("/score", {"itemz": []}, 422, "items: Field required"),
    ("/score", {"items": [{"problem": "p"}]}, 422, "items.0.response: Field required"),
    ("/score", {"items": [{"problem": 3, "response": "r"}]}, 422, "items.0.problem"),
    ("/score", {"items": "nope"}, 422, "items"),
    ("/score", {"items": [{"problem": "p", "response": "r"}], "aggregate": "max"}, 422,
     "aggregate must be one of min, mean, first-negative"),
    ("/score", b"{not json", 422, "invalid request body"),
    ("/get_reward", {"query": ["a", "b"], "prompts": ["a"]}, 422, "query has 2 entries but prompts has 1"),
    ("/get_reward", {"query": ["abc"], "prompts": ["zzz"]}, 422, "prompts[0] is not found in query[0]"),
    ("/get_reward", {"prompts": ["a"]}, 422, "query: Field required"),
    ("/score", {"items": [{"problem": "p", "response": "r"}] * 5}, 413, "at most 4"),
])
def test_malformed_bodies_get_4xx_with_a_message(path, body, status, words):
    with serving(fake_judge(), max_queue=4) as (client, _):
        if isinstance(body, bytes):
            r = client.post(path, content=body, headers={"content-type": "application/json"})
        else:
            r = client.post(path, json=body)
        assert r.status_code == status
        assert words in r.json()["error"]


def test_concurrent_requests_share_engine_calls():
    judge = GatedJudge(gate_open=False)
    one = {"items": [{"problem": "p", "response": GOOD}]}
    with serving(judge, batch_wait_ms=0) as (client, batcher), ThreadPoolExecutor(8) as pool:
        first = pool.submit(client.post, "/score", json=one)
        wait_until(lambda: len(judge.calls) == 1)             # the first request is in the engine
        rest = [pool.submit(client.post, "/score", json=one) for _ in range(7)]
        wait_until(lambda: batcher.waiting == 7)              # the other seven wait for it
        judge.gate.set()
        replies = [first.result()] + [f.result() for f in rest]
        assert all(r.status_code == 200 and r.json()["results"][0]["score"] == 1.0 for r in replies)
        assert judge.calls == [3, 21]                          # 8 requests, 2 engine calls
        assert client.get("/health").json()["mean_batch"] == 4.0


def test_max_batch_one_is_one_request_per_engine_call():
    judge = GatedJudge(gate_open=False)
    one = {"items": [{"problem": "p", "response": GOOD}]}
    with serving(judge, batch_wait_ms=0, max_batch=1) as (client, batcher), ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(client.post, "/score", json=one) for _ in range(4)]
        wait_until(lambda: len(judge.calls) == 1 and batcher.waiting == 3)
        judge.gate.set()
        assert all(f.result().status_code == 200 for f in futs)
        assert judge.calls == [3, 3, 3, 3]


def test_full_queue_is_503():
    judge = GatedJudge(gate_open=False)
    three = {"items": [{"problem": "p", "response": GOOD}] * 3}
    with serving(judge, batch_wait_ms=0, max_queue=4) as (client, batcher), ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/score", json=three)
        wait_until(lambda: len(judge.calls) == 1)
        queued = pool.submit(client.post, "/score", json=three)
        wait_until(lambda: batcher.waiting == 3)
        full = client.post("/score", json={"items": three["items"][:2]})
        assert full.status_code == 503 and "queue full" in full.json()["error"]
        assert full.headers["retry-after"] == "1"
        judge.gate.set()
        assert running.result().status_code == 200 and queued.result().status_code == 200
        assert client.get("/health").json()["rejected"] == 1


def test_a_hanging_engine_gets_an_error_reply_within_the_timeout():
    judge = GatedJudge(gate_open=False)
    one = {"items": [{"problem": "p", "response": GOOD}]}
    try:
        with serving(judge, timeout=1.0) as (client, _):
            t0 = time.monotonic()
            r = client.post("/score", json=one)
            took = time.monotonic() - t0
            assert r.status_code == 504 and "did not answer within 1 s" in r.json()["error"]
            assert took < 3.0
            wait_until(lambda: client.get("/health").status_code == 503, limit=5)
            t0 = time.monotonic()
            again = client.post("/score", json=one)                 # the engine still hangs: fail fast
            assert again.status_code == 504 and time.monotonic() - t0 < 2.0
            judge.gate.set()                                         # the engine recovers
            wait_until(lambda: client.get("/health").status_code == 200, limit=5)
            assert client.post("/score", json=one).status_code == 200
    finally:
        judge.gate.set()


def test_a_dead_engine_gets_a_502_with_its_error():
    with serving(FailingJudge()) as (client, _):
        r = client.post("/score", json={"items": [{"problem": "p", "response": GOOD}]})
        assert r.status_code == 502 and "connection refused by the judge server" in r.json()["error"]
        r = client.post("/get_reward", json={"query": ["q" + GOOD], "prompts": ["q"]})
        assert r.status_code == 502
        assert client.get("/health").json()["errors"] == 2
        # a request without chunks needs no engine: still answered
        ok = client.post("/score", json={"items": [{"problem": "p", "response": "none"}]})
        assert ok.status_code == 200 and ok.json()["results"][0]["score"] == 0.0


def test_remote_reward_and_verl_compute_score(monkeypatch):
    with serving(fake_judge(), aggregate="mean") as (client, _):
        url = str(client.base_url)
        reward = RemoteProcessReward(url)
        got = reward(prompts=[[{"role": "user", "content": "q"}]] * 2,
                     completions=[[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": BAD2}]])
        assert got == [1.0, pytest.approx(2 / 3)] and reward.last_stats.positive == 5
        assert RemoteProcessReward(url, aggregate="min")(prompts=["q"], completions=[BAD2]) == [0.0]
        info = {"question": "What is 2*2?"}
        assert compute_score("gsm8k", BAD2, "5", info, url=url) == pytest.approx(2 / 3)
        assert compute_score("gsm8k", BAD2, "4", info, url=url, combine_outcome="times") == 0.0
        monkeypatch.setenv("STEPWISER_SERVE_URL", url)
        assert compute_score_batch(["a", "b"], [GOOD, tags("WRONG")], ["4", "4"], [info, info]) == [1.0, 0.0]


def test_async_remote_reward_is_an_async_trl_reward():
    import asyncio

    from trl.trainer.utils import is_async_callable

    with serving(fake_judge()) as (client, _):
        reward = AsyncRemoteProcessReward(str(client.base_url))
        assert is_async_callable(reward) and not is_async_callable(RemoteProcessReward(str(client.base_url)))
        got = asyncio.run(reward(prompts=["q", "q"], completions=[GOOD, BAD2], problem=["a", "b"]))
        assert got == [1.0, 0.0] and reward.last_stats.chunks == 6


def test_remote_reward_retries_a_full_queue():
    judge = GatedJudge(gate_open=False)
    one = {"items": [{"problem": "p", "response": GOOD}]}
    with serving(judge, batch_wait_ms=0, max_queue=1) as (client, batcher), ThreadPoolExecutor(2) as pool:
        url = str(client.base_url)
        running = pool.submit(client.post, "/score", json=one)
        wait_until(lambda: len(judge.calls) == 1)
        queued = pool.submit(client.post, "/score", json=one)
        wait_until(lambda: batcher.waiting == 1)
        with pytest.raises(RuntimeError, match="answered 503 1 times"):
            RemoteProcessReward(url, retries=0)(prompts=["q"], completions=[GOOD])
        threading.Timer(0.3, judge.gate.set).start()       # the queue drains while the client waits
        assert RemoteProcessReward(url, retries=3)(prompts=["q"], completions=[GOOD]) == [1.0]
        assert running.result().status_code == 200 and queued.result().status_code == 200


def test_cli_help_and_bad_options(capsys):
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--aggregate [min|mean|first-negative]" in out and "--max-queue" in out and "--engine" in out
    assert main(["serve", "--judge", "x", "--aggregate", "max"]) == 2
    assert main(["serve", "--judge", "x", "--max-batch", "0"]) != 0


def test_stepwiser_serve_command_on_the_tiny_model(tiny_model_dir):
    """The real command (hf engine, a random tiny judge: its verdicts are unparsed) in a child process."""
    import os
    import subprocess
    import sys

    from stepwiser.stages.serve import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "stepwiser", "serve", "--judge", str(tiny_model_dir), "--port", str(port),
           "--max-tokens", "4", "--device", "cpu", "--log-level", "warning", "--aggregate", "mean"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < end, "stepwiser serve did not start"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        r = httpx.post(f"{url}/score", json={"items": [{"problem": "What is 2*2?", "response": GOOD}]}, timeout=60)
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
        assert len(res["chunks"]) == 3 and len(res["verdicts"]) == 3 and isinstance(res["score"], float)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
