"""`stepwiser serve` throughput: scoring requests per second and p50/p99 latency for 1, 8 and 64 concurrent
clients, batched (concurrent requests merged into one engine call, `--max-batch 256`) vs one request per
engine call (`--max-batch 1`), and their ratio.

    python benchmarks/serve.py                         # about 30 s
    python benchmarks/serve.py --clients 1,8,64 --seconds 3 --call-ms 20 --chunk-ms 0.5

The judge is the generative judge on a fake engine (tests' FakeEngine idea: the verdict is a function of
the chunk) whose engine call costs `--call-ms` plus `--chunk-ms` per judged chunk, the shape of a GPU
engine for which a batch costs little more than one item. Each request scores `--items` responses of 3
chunks. The service runs in a child process (uvicorn on 127.0.0.1, a free port); the clients are
threads of this process, each with its own keep-alive connection (stdlib http.client), sending
requests one after another for `--seconds` (at most `--max-requests` per cell). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stepwiser.engines.base import Completion, Engine

RESPONSE = "<chunk>Let x = 2.</chunk>\n<chunk>Then 2x = 4.</chunk>\n<chunk>So the answer is \\boxed{4}.</chunk>"


class TimedFakeEngine(Engine):
    """Positive for every chunk; each `generate` call sleeps call_ms + chunk_ms per request."""

    name = "fake"

    def __init__(self, call_ms: float, chunk_ms: float):
        self.call_s, self.chunk_s, self.model = call_ms / 1000, chunk_ms / 1000, "fake"

    def apply_chat_template(self, messages, add_generation_prompt=True):
        return "".join(m["content"] for m in messages)

    def generate(self, requests, params):
        time.sleep(self.call_s + self.chunk_s * len(requests))
        return [[Completion(text="Fine. \\boxed{Positive}", prompt_tokens=1, completion_tokens=3,
                            finish_reason="stop")] * params.n for _ in requests]


def serve_child(args) -> None:
    from stepwiser.judges.generative import GenerativeJudge
    from stepwiser.stages.serve import ServeConfig
    from stepwiser.stages.serve_app import run_serve

    cfg = ServeConfig(judge="fake", port=args.port, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                      log_level="error", timeout=120)
    run_serve(cfg, GenerativeJudge(TimedFakeEngine(args.call_ms, args.chunk_ms), max_tokens=16))


def get_json(url: str, path: str) -> dict:
    import httpx

    return httpx.get(f"{url}{path}", timeout=30).json()


def one_cell(url: str, clients: int, seconds: float, items: int, max_requests: int) -> dict:
    """`clients` threads, each with its own keep-alive connection (stdlib http.client: the client side
    costs little CPU), posting requests one after another for `seconds`."""
    import http.client
    import json
    import threading
    from urllib.parse import urlsplit

    host = urlsplit(url)
    body = json.dumps({"items": [{"problem": "What is 2*2?", "response": RESPONSE}] * items}).encode()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client():
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
        start.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and len(latencies) + errors[0] < max_requests:
            t0 = time.perf_counter()
            conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            with lock:
                if resp.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[0] += 1
        conn.close()

    before = get_json(url, "/health")
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    health = get_json(url, "/health")
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    calls = health["engine_calls"] - before["engine_calls"]
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / wall, "p50": 1000 * q[49],
            "p99": 1000 * q[98], "mean_batch": (health["responses"] - before["responses"]) / max(calls, 1)}


def start_server(args, max_batch: int) -> tuple[subprocess.Popen, str]:
    import httpx

    from stepwiser.stages.serve import free_port

    port = free_port()
    cmd = [sys.executable, __file__, "--child", "--port", str(port), "--max-batch", str(max_batch),
           "--call-ms", str(args.call_ms), "--chunk-ms", str(args.chunk_ms), "--batch-wait-ms", str(args.batch_wait_ms)]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the scoring service did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--seconds", type=float, default=3.0, help="per cell")
    ap.add_argument("--max-requests", type=int, default=5000, help="per cell")
    ap.add_argument("--items", type=int, default=1, help="responses per request")
    ap.add_argument("--call-ms", type=float, default=20.0)
    ap.add_argument("--chunk-ms", type=float, default=0.5)
    ap.add_argument("--batch-wait-ms", type=float, default=2.0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--max-batch", type=int, default=256, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return serve_child(args)
    clients = [int(c) for c in args.clients.split(",")]
    rows = {}
    for mode, max_batch in (("batched", 256), ("one request per call", 1)):
        proc, url = start_server(args, max_batch)
        try:
            for c in clients:
                rows[mode, c] = one_cell(url, c, args.seconds, args.items, args.max_requests)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"\nfake judge: {args.call_ms:g} ms per engine call + {args.chunk_ms:g} ms per chunk; {args.items} "
          f"response(s) of 3 chunks per request; {args.seconds:g} s per cell\n")
    print("| clients | mode | requests | req/s | p50 ms | p99 ms | responses per engine call | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for (mode, c), r in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"| {c} | {mode} | {r['requests']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{r['mean_batch']:.1f} | {r['errors']} |")
    print("\n| clients | batched / one-per-call req/s |\n|---|---|")
    for c in clients:
        print(f"| {c} | {rows['batched', c]['rps'] / rows['one request per call', c]['rps']:.2f}x |")


if __name__ == "__main__":
    main()
