"""Stage `serve`: the trained judge as an HTTP process-reward service (contract C9) for OpenRLHF, verl and
`RemoteProcessReward` (docs/PROCESS_REWARD.md).

`POST /score`, `POST /get_reward` (OpenRLHF's remote reward model), `GET /health` and `run_serve` are in
`stepwiser.stages.serve_app` (FastAPI, served by uvicorn). This module holds the config and the batcher:

- every request is a job of N responses put on one bounded queue (at most `max_queue` responses wait;
  a request that would pass it gets 503 at once; one larger than `max_queue` gets 413);
- ONE worker takes all jobs waiting, whole, up to `max_batch` responses (a job larger than that goes
  alone; `max_batch 1` = one request per engine call), after waiting `batch_wait_ms` for more, and
  judges all their chunks in one `judge` call in a worker thread; so concurrent requests share
  engine calls;
- a request is answered within `timeout` seconds: with its results, or 504 if the judge has not
  answered by then (a hanging engine), or 502 with the engine's error (a dead engine). While a timed-out
  engine call still runs, new batches fail at once with 504 (the engine is single-threaded), and
  `GET /health` answers 503.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from stepwiser.core.aggregate import AGGREGATES, COMBINE, UNPARSED_RULES, aggregate, check_aggregate
from stepwiser.core.chunks import STYLES
from stepwiser.io.config import check_choices, option
from stepwiser.judges.base import StepJudge
from stepwiser.judges.process_reward import ScoredResponse, judge_responses


@dataclass
class ServeConfig:
    judge: str = option(help="Judge model: a trained judge folder, an HF id or local dir.")
    host: str = option("127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    port: int = option(8000, "Port to listen on.")
    aggregate: str = option("min", "Chunk verdicts -> score: min (all Positive), mean (share Positive), "
                                   "first-negative (share before the first Negative).", choices=AGGREGATES)
    unparsed: str = option("negative", "An unparsed verdict counts as negative, positive, or is skipped.",
                           choices=UNPARSED_RULES)
    empty_score: float = option(0.0, "Score of a response without chunks (or with every verdict skipped).")
    combine: str = option("none", "/get_reward: mix in the outcome (final answer checked against `labels`): "
                                  "none, times or plus.", choices=COMBINE)
    chunk_style: str = option("tags", "How responses are split into chunks (C6).", choices=STYLES)
    k: int = option(1, "Judge samples per chunk (majority vote, a tie is Negative).")
    kind: str = option("auto", "Judge kind (auto: as recorded in the judge folder).",
                       choices=("auto", "generative", "discriminative"))
    cot: bool | None = option(None, "Generative judge with an analysis (default: as recorded, else on).")
    max_tokens: int | None = option(None, "Most tokens per judgment (default 1024 with CoT, 32 without).")
    seed: int = option(0, "Judge sampling seed.")
    max_batch: int = option(256, "Most responses per engine call (waiting requests are merged up to it).")
    batch_wait_ms: float = option(2.0, "Wait this long for more requests before an engine call.")
    max_queue: int = option(4096, "Most responses waiting; a request beyond it gets 503.")
    timeout: float = option(600.0, "Seconds a request may take (queue + judge); then 504.")
    log_level: str = option("info", "uvicorn log level.", choices=("critical", "error", "warning", "info", "debug"))
    engine: str = option("hf", "Judge backend (set by --engine).", cli=False)

    def __post_init__(self):
        check_choices(self)
        if self.k < 1 or self.max_batch < 1 or self.max_queue < 1:
            raise ValueError("k, max_batch and max_queue must be >= 1")
        if self.timeout <= 0 or self.batch_wait_ms < 0:
            raise ValueError("timeout must be > 0 and batch_wait_ms >= 0")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")


class ServiceError(Exception):
    """A request that cannot be answered with scores: `status` is its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Job:
    pairs: list[tuple[str, str]]
    aggregate: str
    unparsed: str
    future: asyncio.Future
    deadline: float


@dataclass
class BatchStats:
    requests: int = 0
    responses: int = 0
    engine_calls: int = 0
    rejected: int = 0
    timeouts: int = 0
    errors: int = 0
    batch_responses: list = field(default_factory=list)   # responses per engine call (last 1000)


class Batcher:
    """Merges concurrent scoring jobs into batched `judge` calls (see the module docstring). Create and
    use it inside one running event loop (`start`, then `score`)."""

    def __init__(self, judge: StepJudge, cfg: ServeConfig):
        self.judge, self.cfg = judge, cfg
        self.stats = BatchStats()
        self.jobs: deque[Job] = deque()
        self.waiting = 0          # responses in queued jobs
        self.running: concurrent.futures.Future | None = None
        self.running_since = 0.0
        self.last_error: str | None = None
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stepwiser-judge")

    def start(self) -> None:
        self.wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def stuck_for(self) -> float:
        """Seconds the current engine call has run past the timeout (0 when none has)."""
        if self.running is None or self.running.done():
            return 0.0
        return max(0.0, time.monotonic() - self.running_since - self.cfg.timeout)

    async def score(self, pairs: list[tuple[str, str]], aggregate_: str | None = None,
                    unparsed: str | None = None) -> list[ScoredResponse]:
        """The scored responses of `pairs`, or ServiceError (413, 503, 504, 502)."""
        agg, unp = aggregate_ or self.cfg.aggregate, unparsed or self.cfg.unparsed
        check_aggregate(agg, unp)
        if not pairs:
            return []
        if len(pairs) > self.cfg.max_queue:
            raise ServiceError(413, f"{len(pairs)} items in one request; at most {self.cfg.max_queue} (--max-queue)")
        if self.waiting + len(pairs) > self.cfg.max_queue:
            self.stats.rejected += 1
            raise ServiceError(503, f"queue full ({self.waiting} responses waiting, --max-queue "
                                    f"{self.cfg.max_queue}); retry later")
        loop = asyncio.get_running_loop()
        job = Job(pairs, agg, unp, loop.create_future(), time.monotonic() + self.cfg.timeout)
        self.jobs.append(job)
        self.waiting += len(pairs)
        self.stats.requests += 1
        self.stats.responses += len(pairs)
        self.wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.cfg.timeout)
        except TimeoutError:
            self.stats.timeouts += 1
            raise ServiceError(504, f"the judge did not answer within {self.cfg.timeout:g} s (--timeout)") from None

    def take(self) -> list[Job]:
        """The jobs of the next batch: whole jobs in arrival order up to max_batch responses (at least one);
        jobs whose deadline has passed are dropped (their requests were already answered 504)."""
        batch, n, now = [], 0, time.monotonic()
        while self.jobs:
            job = self.jobs[0]
            if job.deadline <= now or job.future.done():
                self.jobs.popleft()
                self.waiting -= len(job.pairs)
                continue
            if batch and n + len(job.pairs) > self.cfg.max_batch:
                break
            self.jobs.popleft()
            self.waiting -= len(job.pairs)
            batch.append(job)
            n += len(job.pairs)
        return batch

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.cfg.batch_wait_ms:
                await asyncio.sleep(self.cfg.batch_wait_ms / 1000)
            while self.jobs:
                batch = self.take()
                try:
                    await self.run_batch(batch)
                except Exception as e:  # noqa: BLE001 - a bug must fail its batch, not stop the worker
                    fail(batch, ServiceError(500, f"scoring failed: {type(e).__name__}: {e}"))

    async def run_batch(self, batch: list[Job]) -> None:
        if not batch:
            return
        pairs = [p for job in batch for p in job.pairs]
        if self.running is not None and not self.running.done():
            late = time.monotonic() - self.running_since
            fail(batch, ServiceError(504, f"the judge engine has not answered a call for {late:.0f} s"))
            return
        self.stats.engine_calls += 1
        self.stats.batch_responses = (self.stats.batch_responses + [len(pairs)])[-1000:]
        self.running_since = time.monotonic()
        self.running = self.executor.submit(judge_responses, self.judge, pairs, self.cfg.chunk_style, self.cfg.k)
        remaining = max(0.01, max(job.deadline for job in batch) - time.monotonic())
        try:
            scored = await asyncio.wait_for(asyncio.wrap_future(self.running), remaining)
        except TimeoutError:
            self.last_error = f"engine call timed out after {remaining:.1f} s"
            fail(batch, ServiceError(504, f"the judge did not answer within {self.cfg.timeout:g} s (--timeout)"))
            return
        except Exception as e:  # noqa: BLE001 - the engine's failure, whatever it is, is the reply (502)
            self.stats.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            fail(batch, ServiceError(502, f"judge engine failed: {self.last_error}"))
            return
        at = 0
        for job in batch:
            part = scored[at:at + len(job.pairs)]
            at += len(job.pairs)
            for r in part:
                r.score = aggregate(r.verdicts, job.aggregate, job.unparsed, self.cfg.empty_score)
            if not job.future.done():
                job.future.set_result(part)

    def health(self) -> tuple[int, dict]:
        stuck = self.stuck_for()
        calls = self.stats.batch_responses
        body = {"status": "ok" if not stuck else "engine not answering", "judge": self.cfg.judge,
                "aggregate": self.cfg.aggregate, "unparsed": self.cfg.unparsed, "chunk_style": self.cfg.chunk_style,
                "waiting": self.waiting, "requests": self.stats.requests, "responses": self.stats.responses,
                "engine_calls": self.stats.engine_calls, "rejected": self.stats.rejected,
                "timeouts": self.stats.timeouts, "errors": self.stats.errors,
                "mean_batch": sum(calls) / len(calls) if calls else 0.0, "last_error": self.last_error}
        return (503 if stuck else 200), body


def fail(batch: list[Job], error: ServiceError) -> None:
    for job in batch:
        if not job.future.done():
            job.future.set_exception(error)


# --------------------------------------------------------------------------- running

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ThreadServer:
    """uvicorn serving `app` in a background thread (tests, benchmarks, notebooks): `with
    ThreadServer(app) as url: ...` (port 0 = a free port)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, log_level=log_level,
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="stepwiser-serve")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the scoring service did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def load_serve_judge(cfg: ServeConfig, engine_opts) -> StepJudge:
    from stepwiser.judges.load import load_judge

    return load_judge(cfg.judge, engine_opts, kind=cfg.kind, cot=cfg.cot, max_tokens=cfg.max_tokens, seed=cfg.seed)
