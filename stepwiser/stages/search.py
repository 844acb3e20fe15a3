"""Stage `search`: chunk-reset reasoning (docs/METHOD.md 2.5, contract C8).

The chunk policy writes one chunk at a time: each request continues the policy prompt from the
accepted chunks, ``render_chunks(accepted, "tags") + "\\n"`` (the rollout prefix of `annotate`, so the
policy sees exactly the text it was trained on) and stops at ``</chunk>``. The judge judges the new
chunk against the accepted history (``JudgeItem(problem, history=accepted, chunk)``): Positive accepts
it; Negative discards it and the chunk is sampled again, at most `max_resets` times; the attempt after
the last reset is accepted without being judged (our convention). An unparsed verdict (every judge
sample unparsed) follows `unparsed`: ``accept`` (default: no evidence against the chunk, so a judge
that fails to answer degrades to free generation) or ``reject`` (counts as Negative).

A solution ends when an accepted chunk holds a ``\\boxed{}`` answer (``answer``), when the policy ends
its text instead of opening a chunk (``eos``), after `max_chunks` chunks (``max_chunks``) or `max_tokens`
accepted tokens (``max_tokens``). A chunk that never closes is cut at `max_chunk_tokens` and judged as
is (counted as ``unclosed_chunks``). A problem the engine refuses (a prompt longer than the context)
ends with ``error`` and its message; it counts as wrong and the run goes on.

Throughput: problems advance together in an active set of `active` problems; every round is one
batched policy call (one per distinct token budget) and one batched judge call over the problems
whose attempt needs a verdict. Resume (C7): a problem's record is written when it finishes; a rerun
skips finished problems; a different config into the same folder is refused. Seeds are derived from
(seed, problem, chunk index, attempt), so a deterministic engine reproduces an uninterrupted run.

Outputs in `out`: ``search.jsonl`` (one record per problem, C8), ``baseline.jsonl`` (the same policy
generating freely with the same sampling settings: the `sample` stage, n = 1), ``summary.json``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from stepwiser.core.boxed import last_boxed
from stepwiser.core.chunks import CLOSE, OPEN, render_chunks, strip_tags
from stepwiser.data.prompts import policy_messages
from stepwiser.engines import EngineError, Request, SamplingParams, as_engine
from stepwiser.errors import EmptyResultError, StepwiserError
from stepwiser.io.config import check_choices, option
from stepwiser.io.records import (
    JsonlWriter,
    Problem,
    RunManifest,
    iter_jsonl,
    read_records,
    refuse_stale_outputs,
    request_seed,
    write_json,
)
from stepwiser.judges.base import JudgeItem, Judgment
from stepwiser.stages.annotate import SEPARATOR
from stepwiser.judges.load import JudgeOptions

UNPARSED_RULES = ("accept", "reject")
STOP_REASONS = ("answer", "eos", "max_chunks", "max_tokens", "error")
RESULTS = "search.jsonl"
BASELINE = "baseline.jsonl"

SUMMARY_NOTES = (
    "accuracy / baseline_accuracy: % of problems whose final \\boxed{} answer is right, with chunk-reset and "
    "with the same policy generating freely (same sampling settings); mean_accepted_tokens / "
    "mean_rejected_tokens: policy tokens per problem kept in the solution / discarded by resets; "
    "mean_resets_per_chunk: re-generations per accepted chunk; judge_seconds_share: share of the "
    "policy + judge time spent in the judge; unparsed_verdicts: chunks whose judge samples were all "
    "unparsed (decided by --unparsed); failed: problems the engine refused (counted as wrong).")


@dataclass(kw_only=True)
class SearchConfig(JudgeOptions):
    policy: str = option(help="Chunk policy: HF id or local dir (trained to write <chunk> tags).")
    judge: str = option(help="Step judge: a trained judge folder (its kind is read from it) or any chat model.")
    problems: str = option(help="Problems JSONL (id, problem, answer).", path="file")
    out: str = option(help="Output folder.", short="-o")
    max_resets: int = option(5, "Most re-generations of one chunk after Negative verdicts (the paper: 5); the "
                                "attempt after the last one is accepted unjudged.")
    max_chunks: int = option(32, "Most chunks per solution.")
    max_chunk_tokens: int = option(512, "Most tokens per chunk attempt (a chunk that never closes is cut here "
                                        "and judged as is).")
    max_tokens: int = option(1024, "Most accepted tokens per solution; also the free-generation baseline's "
                                   "max tokens.")
    temperature: float = option(1.0, "Policy sampling temperature (search and baseline).")
    top_p: float = option(1.0, "Policy nucleus sampling top-p.")
    seed: int = option(0, "Seed (per-request seeds derive from it, the problem, the chunk and the attempt).")
    unparsed: str = option("accept", "What an unparsed verdict does: accept the chunk, or reject it like a "
                                     "Negative.", choices=UNPARSED_RULES)
    maj: int = option(1, "Judge samples per chunk (majority verdict, ties Negative): greedy for 1, "
                         "temperature 1.0 above.")
    baseline: bool = option(True, "Also sample the policy freely on the same problems (baseline_accuracy).")
    active: int = option(64, "Problems in flight: each round sends all of them in one policy and one judge "
                             "call (does not change results).")
    limit: int | None = option(None, "Only the first N problems.")
    verify_timeout: float = option(5.0, "Seconds per answer check.")
    policy_engine: str = option("hf", "Policy backend (set by --policy-engine).", cli=False)
    judge_engine: str = option("hf", "Judge backend (set by --judge-engine).", cli=False)

    VOLATILE = ("active", "verify_timeout", "baseline")

    def __post_init__(self):
        check_choices(self)
        if self.max_resets < 0:
            raise ValueError(f"max_resets must be >= 0, got {self.max_resets}")
        for name in ("max_chunks", "max_chunk_tokens", "max_tokens", "maj", "active"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.judge_max_tokens is not None and self.judge_max_tokens < 1:
            raise ValueError(f"judge_max_tokens must be >= 1, got {self.judge_max_tokens}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def chunk_params(self, budget: int) -> SamplingParams:
        return SamplingParams(n=1, temperature=self.temperature, top_p=self.top_p, max_tokens=budget,
                              stop=[CLOSE], seed=self.seed)


def parse_attempt(text: str) -> str | None:
    """The chunk in one generated attempt (text up to ``</chunk>``), or None when the policy ended its text.

    With a ``<chunk>`` tag the chunk is the text after the first one (further tags removed); text without
    any tag is the chunk as is (a policy that does not tag is still judged); empty or whitespace-only
    text (EOS instead of a new chunk, or an empty chunk) is None."""
    if OPEN in text:
        text = text[text.index(OPEN) + len(OPEN):]
    chunk = strip_tags(text)
    return chunk if chunk.strip() else None


@dataclass
class Attempt:
    text: str
    chunk: str | None
    tokens: int
    unclosed: bool


@dataclass
class ProblemSearch:
    """One problem on its way through chunk-reset."""
    problem: Problem
    accepted: list = field(default_factory=list)
    resets: list = field(default_factory=list)
    verdicts: list = field(default_factory=list)     # per accepted chunk: verdicts of its judged attempts
    rejected: list = field(default_factory=list)     # per accepted chunk: texts of its rejected attempts
    cur_rejected: list = field(default_factory=list)
    cur_verdicts: list = field(default_factory=list)
    attempt: Attempt | None = None
    accepted_tokens: int = 0
    rejected_tokens: int = 0
    judge_calls: int = 0
    unparsed: int = 0
    unclosed: int = 0
    judge_tokens: int = 0
    judge_prompt_tokens: int = 0
    judge_errors: int = 0
    policy_seconds: float = 0.0
    judge_seconds: float = 0.0
    stop_reason: str | None = None
    error: str | None = None

    def prefix(self) -> str:
        return render_chunks(self.accepted, "tags") + SEPARATOR["tags"] if self.accepted else ""

    def budget(self, cfg: SearchConfig) -> int:
        return min(cfg.max_chunk_tokens, cfg.max_tokens - self.accepted_tokens)

    def request(self, cfg: SearchConfig) -> Request:
        pid, i, a = self.problem.id, len(self.accepted), len(self.cur_rejected)
        return Request(messages=policy_messages(self.problem.problem), prefix=self.prefix(),
                       seed=request_seed(cfg.seed, pid, "search", i, a))

    def judge_item(self) -> JudgeItem:
        return JudgeItem(problem=self.problem.problem, history=list(self.accepted), chunk=self.attempt.chunk)

    def accept(self, cfg: SearchConfig) -> None:
        a = self.attempt
        self.accepted.append(a.chunk)
        self.resets.append(len(self.cur_rejected))
        self.verdicts.append(self.cur_verdicts)
        self.rejected.append(self.cur_rejected)
        self.cur_rejected, self.cur_verdicts, self.attempt = [], [], None
        self.accepted_tokens += a.tokens
        if last_boxed(a.chunk) is not None:
            self.stop_reason = "answer"
        elif len(self.accepted) >= cfg.max_chunks:
            self.stop_reason = "max_chunks"
        elif self.accepted_tokens >= cfg.max_tokens:
            self.stop_reason = "max_tokens"

    def reject(self) -> None:
        self.cur_rejected.append(self.attempt.text)
        self.rejected_tokens += self.attempt.tokens
        self.attempt = None

    def record(self, correct: bool, answer_status: str) -> dict:
        return {"problem_id": self.problem.id, "response": render_chunks(self.accepted, "tags"),
                "chunks": self.accepted, "correct": correct, "resets": self.resets,
                "accepted_tokens": self.accepted_tokens, "rejected_tokens": self.rejected_tokens,
                "judge_calls": self.judge_calls, "unparsed_verdicts": self.unparsed,
                "stop_reason": self.stop_reason, "answer_status": answer_status,
                "rejected": self.rejected, "rejected_at_end": self.cur_rejected, "verdicts": self.verdicts,
                "unclosed_chunks": self.unclosed,
                "judge_tokens": self.judge_tokens, "judge_prompt_tokens": self.judge_prompt_tokens,
                "judge_errors": self.judge_errors, "policy_seconds": round(self.policy_seconds, 4),
                "judge_seconds": round(self.judge_seconds, 4), "error": self.error}


def call_each(call, items: list, what: str) -> list:
    """`call(items)`, or, when the engine refuses the batch, each item alone: a refused item's result is its
    EngineError (a problem-specific failure, e.g. a prompt over the context). Every item of a batch of
    several refused means the engine itself is broken: that raises."""
    try:
        return list(call(items))
    except EngineError as e:
        if len(items) == 1:
            return [e]
    out = []
    for it in items:
        try:
            out.extend(call([it]))
        except EngineError as e:
            out.append(e)
    errors = [o for o in out if isinstance(o, EngineError)]
    if len(errors) == len(out):
        raise StepwiserError(f"search: the {what} failed on every request of a round ({errors[0]})")
    return out


def generate_round(cfg: SearchConfig, engine, active: list[ProblemSearch]) -> None:
    """One attempt for every active problem (one engine call per distinct token budget)."""
    by_budget: dict[int, list[ProblemSearch]] = {}
    for w in active:
        by_budget.setdefault(w.budget(cfg), []).append(w)
    for budget, group in by_budget.items():
        t0 = time.time()
        params = cfg.chunk_params(budget)
        outs = call_each(lambda reqs, p=params: engine.generate(reqs, p), [w.request(cfg) for w in group], "policy")
        share = (time.time() - t0) / len(group)
        for w, cs in zip(group, outs):
            w.policy_seconds += share
            if isinstance(cs, EngineError):
                w.stop_reason, w.error = "error", f"policy: {cs}"
                continue
            c = cs[0]
            w.attempt = Attempt(text=c.text, chunk=parse_attempt(c.text), tokens=c.completion_tokens,
                                unclosed=c.finish_reason == "length")
            w.unclosed += int(w.attempt.unclosed)


def judge_round(cfg: SearchConfig, judge, group: list[ProblemSearch]) -> None:
    """Judge the attempt of every problem in `group` (one judge call) and accept or reject it."""
    if not group:
        return
    t0 = time.time()
    outs = call_each(lambda items: judge.judge(items, cfg.maj), [w.judge_item() for w in group], "judge")
    share = (time.time() - t0) / len(group)
    for w, j in zip(group, outs):
        w.judge_seconds += share
        w.judge_calls += 1
        if isinstance(j, EngineError):
            w.judge_errors += 1
            j = Judgment(verdicts=[None])
        w.judge_tokens += j.tokens
        w.judge_prompt_tokens += j.prompt_tokens
        verdict = j.verdict
        w.cur_verdicts.append(verdict)
        w.unparsed += int(verdict is None)
        ok = cfg.unparsed == "accept" if verdict is None else verdict == 1
        if ok:
            w.accept(cfg)
        else:
            w.reject()


def search_round(cfg: SearchConfig, engine, judge, active: list[ProblemSearch]) -> None:
    """Advance every active problem by one attempt."""
    generate_round(cfg, engine, active)
    to_judge = []
    for w in active:
        if w.stop_reason is not None:
            continue
        if w.attempt.chunk is None:   # the policy ended its text
            w.accepted_tokens += w.attempt.tokens
            w.attempt, w.stop_reason = None, "eos"
        elif len(w.cur_rejected) >= cfg.max_resets:
            w.accept(cfg)               # the last allowed attempt: accepted unjudged
        else:
            to_judge.append(w)
    judge_round(cfg, judge, to_judge)


def load_problems(cfg, stage: str) -> list[Problem]:
    """The problems of `cfg.problems` (first `cfg.limit`); an empty set or a repeated id is an error."""
    problems = read_records(cfg.problems, Problem)[: cfg.limit]
    if not problems:
        raise EmptyResultError(f"{stage}: {cfg.problems} holds no problems")
    seen = set()
    for p in problems:
        if p.id in seen:
            raise StepwiserError(f"{stage}: {cfg.problems} holds problem id {p.id!r} twice; ids must be unique")
        seen.add(p.id)
    return problems


def _resolve(obj, attr: str):
    return obj if hasattr(obj, attr) else obj()


def run_search(cfg: SearchConfig, engine, judge, overwrite: bool = False, progress: bool | None = None) -> dict:
    """Run chunk-reset on every problem (resumable) and the free baseline; returns the summary.

    `engine`: the policy Engine (or a zero-argument factory); `judge`: a StepJudge (or a factory)."""
    from stepwiser.core.verify import check_batch
    from stepwiser.io.progress import StageProgress

    problems = load_problems(cfg, "search")
    out = Path(cfg.out)
    refuse_stale_outputs(out, ("search", "baseline"), overwrite)
    manifest = RunManifest.open(out, "search", dataclasses.asdict(cfg), [cfg.problems], overwrite=overwrite,
                                volatile=SearchConfig.VOLATILE)
    writer = JsonlWriter(out / RESULTS, lambda o: o["problem_id"])
    todo = [p for p in problems if p.id not in writer]
    if todo:
        engine, judge = as_engine(engine), _resolve(judge, "judge")
    queue, active = list(reversed(todo)), []
    with writer, StageProgress("search", len(problems), "problems", rates=("tokens",), enabled=progress) as bar:
        skipped = len(problems) - len(todo)
        bar.advance(skipped)
        while queue or active:
            while queue and len(active) < cfg.active:
                active.append(ProblemSearch(queue.pop()))
            search_round(cfg, engine, judge, active)
            done = [w for w in active if w.stop_reason is not None]
            active = [w for w in active if w.stop_reason is None]
            results = check_batch([(render_chunks(w.accepted, "tags"), w.problem.answer) for w in done],
                                  timeout=cfg.verify_timeout)
            for w, r in zip(done, results):
                writer.write(w.record(bool(r.correct), r.status))
            bar.advance(len(done), tokens=sum(w.accepted_tokens + w.rejected_tokens for w in done),
                        solved=sum(bool(r.correct) for r in results))
            bar.set(acc=f"{100 * bar.sums.get('solved', 0) / max(bar.done - skipped, 1):.1f}%")
    records = [obj for _, obj in iter_jsonl(out / RESULTS)]
    summary = search_summary(records)
    if cfg.baseline:
        summary.update(run_baseline(cfg, engine, progress))
    write_json(out / "summary.json", summary)
    manifest.finish(summary, records=len(records), cause="no problem finished")
    return summary


def search_summary(records: list[dict]) -> dict:
    """The C8 summary of the search records (accuracy in percent)."""
    n = len(records)
    if not n:
        raise EmptyResultError("search: no problem finished")
    chunks = sum(len(r["chunks"]) for r in records)
    jsec = sum(r.get("judge_seconds", 0.0) for r in records)
    psec = sum(r.get("policy_seconds", 0.0) for r in records)
    stops = {s: sum(r.get("stop_reason") == s for r in records) for s in STOP_REASONS}

    def mean(key):
        return round(sum(r.get(key, 0) for r in records) / n, 2)

    return {"n": n, "accuracy": round(100 * sum(bool(r["correct"]) for r in records) / n, 2),
            "baseline_accuracy": None,
            "mean_accepted_tokens": mean("accepted_tokens"), "mean_rejected_tokens": mean("rejected_tokens"),
            "mean_resets_per_chunk": round(sum(sum(r["resets"]) for r in records) / max(chunks, 1), 3),
            "judge_seconds_share": round(jsec / (jsec + psec), 3) if jsec + psec > 0 else None,
            "mean_chunks": round(chunks / n, 2), "mean_judge_calls": mean("judge_calls"),
            "mean_judge_tokens": mean("judge_tokens"),
            "unparsed_verdicts": sum(r["unparsed_verdicts"] for r in records),
            "unclosed_chunks": sum(r.get("unclosed_chunks", 0) for r in records),
            "judge_errors": sum(r.get("judge_errors", 0) for r in records),
            "failed": stops["error"], "stop_reasons": stops,
            "policy_seconds": round(psec, 2), "judge_seconds": round(jsec, 2)}


def run_baseline(cfg: SearchConfig, engine, progress: bool | None = None) -> dict:
    """The same policy generating freely on the same problems (the `sample` stage, n = 1, same sampling)."""
    from stepwiser.stages.sample import SampleConfig, run_sample

    path = Path(cfg.out) / BASELINE
    scfg = SampleConfig(policy=cfg.policy, problems=cfg.problems, out=str(path), n=1,
                        temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed,
                        engine=cfg.policy_engine, batch_problems=cfg.active, limit=cfg.limit,
                        verify_timeout=cfg.verify_timeout)
    try:
        s = run_sample(scfg, engine, progress=progress)
    except EngineError as e:
        return {"baseline_error": f"the free-generation baseline failed: {e}"}
    toks = [obj.get("completion_tokens", 0) for _, obj in iter_jsonl(path)]
    return {"baseline_accuracy": s["pass@1"], "baseline_mean_tokens": round(sum(toks) / max(len(toks), 1), 2)}
