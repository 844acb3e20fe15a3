"""The trained judge as a process reward for policy RL: a TRL reward function, and clients of `stepwiser serve`.

`ProcessReward(judge)` is a reward function for TRL's GRPOTrainer (``prompts, completions, **kwargs ->
list[float | None]``): it splits each completion into chunks (C6), judges every chunk of every completion
in ONE batched `judge.judge` call (chunk i's history = the chunks before it), and aggregates the
verdicts per completion (`stepwiser.core.aggregate`: min, mean or first-negative; the unparsed rule;
optionally times or plus an outcome reward)::

    from trl import GRPOTrainer
    from stepwiser.judges.load import load_judge
    from stepwiser.judges.process_reward import ProcessReward

    trainer = GRPOTrainer(model=..., train_dataset=ds,
                          reward_funcs=[ProcessReward(load_judge("runs/judge"), aggregate="min"), outcome])

The problem the judge sees comes from a dataset column (`problem_key`, default ``problem``; TRL passes
extra columns as keyword lists), else from the prompt (the last user turn of a conversational prompt,
or the plain prompt text, chat-template markers removed: `problem_from_prompt`).

`RemoteProcessReward(url)` is the same reward computed by a `stepwiser serve` service on another
machine (POST /score; `AsyncRemoteProcessReward` as an async reward function), and `compute_score` / `compute_score_batch` are verl's custom reward functions
calling that service (see docs/PROCESS_REWARD.md).
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field

from stepwiser.core.aggregate import aggregate as aggregate_verdicts
from stepwiser.core.aggregate import check_aggregate, combine
from stepwiser.core.chunks import STYLES, parse_chunks
from stepwiser.judges.base import JudgeItem, StepJudge

log = logging.getLogger("stepwiser.process_reward")

VERDICT_NAMES = {1: "Positive", 0: "Negative", None: None}
DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "STEPWISER_SERVE_URL"


@dataclass
class ScoredResponse:
    chunks: list[str]
    verdicts: list            # per chunk: 1, 0 or None (unparsed), the majority of the k samples
    score: float | None = None

    def to_json(self) -> dict:
        return {"chunks": self.chunks, "verdicts": [VERDICT_NAMES[v] for v in self.verdicts], "score": self.score}


def judge_responses(judge: StepJudge, pairs: list[tuple[str, str]], chunk_style: str = "tags",
                    k: int = 1) -> list[ScoredResponse]:
    """Chunks and chunk verdicts of each (problem, response), all chunks judged in one `judge` call
    (scores are left unset)."""
    if chunk_style not in STYLES:
        raise ValueError(f"chunk_style must be one of {', '.join(STYLES)}; got {chunk_style!r}")
    chunked = [(problem, parse_chunks(response, chunk_style)) for problem, response in pairs]
    items = [JudgeItem(problem=problem, history=chunks[:i], chunk=c)
             for problem, chunks in chunked for i, c in enumerate(chunks)]
    judgments = judge.judge(items, k=k) if items else []
    if len(judgments) != len(items):
        raise RuntimeError(f"the judge returned {len(judgments)} judgments for {len(items)} chunks")
    out, at = [], 0
    for _, chunks in chunked:
        out.append(ScoredResponse(chunks=chunks, verdicts=[j.verdict for j in judgments[at:at + len(chunks)]]))
        at += len(chunks)
    return out


def score_responses(judge: StepJudge, pairs: list[tuple[str, str]], aggregate: str = "min",
                    unparsed: str = "negative", chunk_style: str = "tags", k: int = 1,
                    empty: float | None = 0.0) -> list[ScoredResponse]:
    """`judge_responses` with each response's process reward (`stepwiser.core.aggregate.aggregate`)."""
    check_aggregate(aggregate, unparsed)
    out = judge_responses(judge, pairs, chunk_style, k)
    for r in out:
        r.score = aggregate_verdicts(r.verdicts, aggregate, unparsed, empty)
    return out


# --------------------------------------------------------------------------- texts of TRL / RL frameworks

_TEMPLATES = (  # (user turn opener, turn closer) of common chat templates
    (r"<\|im_start\|>user\s*\n", r"<\|im_end\|>"),                               # ChatML (Qwen, SmolLM2)
    (r"<\|start_header_id\|>user<\|end_header_id\|>\s*", r"<\|eot_id\|>"),       # Llama 3
    (r"<\|user\|>\s*", r"<\|end\|>|<\|assistant\|>"),                             # Phi-3 style
    (r"\[INST\]\s*", r"\[/INST\]"),                                               # Llama 2 / Mistral
)
_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "</s>", "<|end_of_text|>")


def problem_from_prompt(prompt: str) -> str:
    """The problem in a prompt string: the last user turn when the text is chat-templated (ChatML,
    Llama 3, Phi-3, [INST]), else the text itself (stripped)."""
    for opener, closer in _TEMPLATES:
        starts = list(re.finditer(opener, prompt))
        if starts:
            rest = prompt[starts[-1].end():]
            end = re.search(closer, rest)
            return (rest[:end.start()] if end else rest).strip()
    return prompt.strip()


def message_text(content) -> str:
    """The text of a chat message's content: a string, or a list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def completion_text(completion) -> str:
    """A TRL completion as text: a plain string, or the assistant messages of a conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(message_text(m.get("content")) for m in completion
                       if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    raise TypeError(f"a completion is a string or a list of messages, got {type(completion).__name__}")


def prompt_problem(prompt) -> str:
    """The problem in a TRL prompt: the last user message of a conversational prompt, else the text."""
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise ValueError("a conversational prompt without a user message: pass the problem as a column")
        return message_text(users[-1].get("content")).strip()
    return problem_from_prompt(str(prompt))


def response_from_query(query: str, prompt: str) -> str:
    """OpenRLHF's response: `query` (prompt + response, decoded) minus the `prompt` prefix, trailing
    end-of-turn markers removed. ValueError when the prompt is not found in the query."""
    at = query.find(prompt) if prompt else 0
    if at < 0:
        raise ValueError("the prompt is not a prefix of its query")
    text = query[at + len(prompt):].rstrip()
    changed = True
    while changed:
        changed = False
        for m in _END_MARKERS:
            if text.endswith(m):
                text, changed = text[: -len(m)].rstrip(), True
    return text


# --------------------------------------------------------------------------- the TRL reward function

@dataclass
class RewardStats:
    """One call's figures (logged; `ProcessReward.last_stats`)."""
    responses: int = 0
    chunks: int = 0
    positive: int = 0
    unparsed: int = 0
    no_chunks: int = 0
    seconds: float = 0.0
    rewards: list = field(default_factory=list)

    def metrics(self) -> dict:
        got = [r for r in self.rewards if r is not None]
        return {"positive_share": self.positive / self.chunks if self.chunks else 0.0,
                "unparsed_share": self.unparsed / self.chunks if self.chunks else 0.0,
                "chunks_per_response": self.chunks / self.responses if self.responses else 0.0,
                "no_chunks": float(self.no_chunks), "mean_reward": sum(got) / len(got) if got else 0.0,
                "judge_seconds": self.seconds}


def stats_of(scored: list[ScoredResponse], rewards: list, seconds: float) -> RewardStats:
    verdicts = [v for r in scored for v in r.verdicts]
    return RewardStats(responses=len(scored), chunks=len(verdicts), positive=sum(v == 1 for v in verdicts),
                       unparsed=sum(v is None for v in verdicts), no_chunks=sum(not r.chunks for r in scored),
                       seconds=seconds, rewards=list(rewards))


class ProcessReward:
    """The judge's process reward as a TRL reward function (see the module docstring).

    `aggregate`: min | mean | first-negative; `unparsed`: negative | positive | skip; `empty`: the reward
    of a completion without chunks (None = no reward); `k`: judge samples per chunk (majority, ties
    Negative); `outcome`: an optional reward function of the same signature whose values are combined
    (`combine`: times | plus). Each call logs its stats (`last_stats`) to the `stepwiser.process_reward`
    logger and, inside GRPOTrainer, as metrics ``process_reward/<name>`` via TRL's `log_metric`."""

    __name__ = "process_reward"   # TRL names reward columns after it

    def __init__(self, judge: StepJudge, aggregate: str = "min", unparsed: str = "negative",
                 chunk_style: str = "tags", k: int = 1, empty: float | None = 0.0, problem_key: str = "problem",
                 outcome=None, combine: str = "times"):
        check_aggregate(aggregate, unparsed, combine)
        if chunk_style not in STYLES:
            raise ValueError(f"chunk_style must be one of {', '.join(STYLES)}; got {chunk_style!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.judge, self.aggregate, self.unparsed, self.chunk_style = judge, aggregate, unparsed, chunk_style
        self.k, self.empty, self.problem_key, self.outcome, self.combine = k, empty, problem_key, outcome, combine
        self.last_stats: RewardStats | None = None

    def problems(self, prompts: list, kwargs: dict) -> list[str]:
        column = kwargs.get(self.problem_key)
        if column is not None:
            return [str(p) for p in column]
        return [prompt_problem(p) for p in prompts]

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        t0 = time.perf_counter()
        pairs = list(zip(self.problems(prompts, kwargs), [completion_text(c) for c in completions]))
        scored = score_responses(self.judge, pairs, self.aggregate, self.unparsed, self.chunk_style, self.k,
                                 self.empty)
        rewards = [r.score for r in scored]
        if self.outcome is not None:
            outcomes = self.outcome(prompts=prompts, completions=completions, **kwargs)
            rewards = [combine(p, o, self.combine) for p, o in zip(rewards, outcomes)]
        self.last_stats = stats_of(scored, rewards, time.perf_counter() - t0)
        report(self.last_stats, kwargs.get("log_metric"))
        return rewards


def report(stats: RewardStats, log_metric=None) -> None:
    m = stats.metrics()
    log.info("process reward: %d responses, %d chunks, %.1f%% positive, %.1f%% unparsed, mean reward %.3f",
             stats.responses, stats.chunks, 100 * m["positive_share"], 100 * m["unparsed_share"], m["mean_reward"])
    if callable(log_metric):
        for name, value in m.items():
            log_metric(f"process_reward/{name}", value)


# --------------------------------------------------------------------------- clients of `stepwiser serve`

class ServiceClient:
    """A client of a `stepwiser serve` service (`url` = http://host:port; default $STEPWISER_SERVE_URL).
    A full queue (503) is retried `retries` times after the server's Retry-After."""

    def __init__(self, url: str | None = None, timeout: float = 600.0, retries: int = 3):
        import httpx

        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.timeout, self.retries = timeout, retries
        self.http = httpx.Client(timeout=timeout)

    def body(self, pairs: list[tuple[str, str]], aggregate: str | None) -> dict:
        body: dict = {"items": [{"problem": p, "response": r} for p, r in pairs]}
        if aggregate is not None:
            body["aggregate"] = aggregate
        return body

    def results(self, resp) -> list[dict] | None:
        """The results of a reply; None for a 503 to retry; RuntimeError for any other failure."""
        if resp.status_code == 200:
            return resp.json()["results"]
        if resp.status_code != 503:
            raise RuntimeError(f"{self.url}/score answered {resp.status_code}: {resp.text[:300]}")
        return None

    def score(self, pairs: list[tuple[str, str]], aggregate: str | None = None) -> list[dict]:
        """POST /score: the result (chunks, verdicts, score) of each (problem, response)."""
        for attempt in range(self.retries + 1):
            resp = self.http.post(f"{self.url}/score", json=self.body(pairs, aggregate))
            out = self.results(resp)
            if out is not None:
                return out
            if attempt < self.retries:
                time.sleep(float(resp.headers.get("retry-after", 1)))
        raise self.busy(resp)

    async def ascore(self, pairs: list[tuple[str, str]], aggregate: str | None = None) -> list[dict]:
        """`score` with an async client (for TRL's async reward functions)."""
        import asyncio

        import httpx

        async with httpx.AsyncClient(timeout=self.timeout) as http:
            for attempt in range(self.retries + 1):
                resp = await http.post(f"{self.url}/score", json=self.body(pairs, aggregate))
                out = self.results(resp)
                if out is not None:
                    return out
                if attempt < self.retries:
                    await asyncio.sleep(float(resp.headers.get("retry-after", 1)))
        raise self.busy(resp)

    def busy(self, resp) -> RuntimeError:
        return RuntimeError(f"{self.url}/score answered 503 {self.retries + 1} times: {resp.text[:300]}")

    def close(self) -> None:
        self.http.close()


class RemoteProcessReward(ProcessReward):
    """`ProcessReward` computed by a `stepwiser serve` service (the judge on another machine). The
    service splits, judges and aggregates (its --aggregate, or `aggregate` when given; its unparsed
    rule and chunk style); `outcome` and `combine` are applied here. `AsyncRemoteProcessReward` is the
    same as an async reward function (TRL runs those concurrently with the other async ones)."""

    def __init__(self, url: str | None = None, aggregate: str | None = None, timeout: float = 600.0,
                 problem_key: str = "problem", outcome=None, combine: str = "times", retries: int = 3):
        super().__init__(judge=None, aggregate=aggregate or "min", problem_key=problem_key, outcome=outcome,
                         combine=combine)
        self.requested = aggregate
        self.client = ServiceClient(url, timeout, retries)

    def pairs(self, prompts: list, completions: list, kwargs: dict) -> list[tuple[str, str]]:
        return list(zip(self.problems(prompts, kwargs), [completion_text(c) for c in completions]))

    def finish(self, results: list[dict], prompts, completions, kwargs: dict, t0: float) -> list[float | None]:
        rewards = [r["score"] for r in results]
        if self.outcome is not None:
            outcomes = self.outcome(prompts=prompts, completions=completions, **kwargs)
            rewards = [combine(p, o, self.combine) for p, o in zip(rewards, outcomes)]
        scored = [ScoredResponse(r["chunks"], [{"Positive": 1, "Negative": 0}.get(v) for v in r["verdicts"]],
                                 r["score"]) for r in results]
        self.last_stats = stats_of(scored, rewards, time.perf_counter() - t0)
        report(self.last_stats, kwargs.get("log_metric"))
        return rewards

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        t0 = time.perf_counter()
        results = self.client.score(self.pairs(prompts, completions, kwargs), self.requested)
        return self.finish(results, prompts, completions, kwargs, t0)


class AsyncRemoteProcessReward(RemoteProcessReward):
    async def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        t0 = time.perf_counter()
        results = await self.client.ascore(self.pairs(prompts, completions, kwargs), self.requested)
        return self.finish(results, prompts, completions, kwargs, t0)


# --------------------------------------------------------------------------- verl

_CLIENTS: dict[str, ServiceClient] = {}


def _client(url: str | None) -> ServiceClient:
    key = url or os.environ.get(URL_ENV) or DEFAULT_URL
    if key not in _CLIENTS:
        _CLIENTS[key] = ServiceClient(key)
    return _CLIENTS[key]


def extra_problem(extra_info) -> str:
    """The problem of a verl sample: `extra_info["problem"]` (or "question", as verl's gsm8k/math
    preprocessing writes it)."""
    info = extra_info or {}
    for key in ("problem", "question"):
        if isinstance(info.get(key), str):
            return info[key]
    raise ValueError("stepwiser compute_score needs the problem text in extra_info['problem'] (or 'question'); "
                     "add it to the dataset's extra_info column")


def outcome_of(solution_str: str, ground_truth) -> float | None:
    from stepwiser.core.verify import is_correct

    return float(is_correct(solution_str, str(ground_truth))) if ground_truth not in (None, "") else None


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, url: str | None = None,
                        aggregate: str | None = None, combine_outcome: str = "none", **_) -> list[float]:
    """verl's batch reward function (reward_model.reward_manager=batch): one POST /score for the batch.
    `combine_outcome` (none | times | plus) mixes in the final answer's correctness against ground_truth."""
    check_aggregate(aggregate or "min", "negative", combine_outcome)
    pairs = [(extra_problem(info), s) for s, info in zip(solution_strs, extra_infos)]
    scores = [r["score"] for r in _client(url).score(pairs, aggregate)]
    if combine_outcome != "none":
        scores = [combine(p, outcome_of(s, g), combine_outcome) for p, s, g in zip(scores, solution_strs, ground_truths)]
    return [0.0 if s is None else float(s) for s in scores]


def compute_score(data_source, solution_str, ground_truth, extra_info=None, url: str | None = None,
                  aggregate: str | None = None, combine_outcome: str = "none", **_) -> float:
    """verl's custom reward function (custom_reward_function.path=<this file>, name=compute_score): the
    process reward of one response from the `stepwiser serve` service at `url` ($STEPWISER_SERVE_URL)."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], url=url,
                               aggregate=aggregate, combine_outcome=combine_outcome)[0]
