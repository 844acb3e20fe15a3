"""Stage `annotate`: Monte Carlo Q-values and labels for every chunk (STEPWISER.md 2.2, section 4).

For a sample with chunks 1..H, Q_i (i < H) is the success rate of rollouts that continue the policy
prompt from ``render_chunks(chunks[:i]) + separator`` (the separator puts the model at the start of
a new chunk, exactly as in the sampled text); Q_H is the sample's own correctness; Q_0 is the
problem's success rate from the empty prefix (M rollouts once per problem, shared by its samples),
or with ``q0="samples"`` the pass rate of the problem's samples.

Throughput. Problems are processed in an active set that is refilled as problems finish; every
round gathers the rollouts that all active responses need and sends them to the engine in one
call, each prefix as one request with n rollouts (vLLM shares the prefix's KV cache; the hf engine
prefills it once for its n rollouts).

Resume. A problem's annotations are written when all its samples are done; a rerun redoes the
problems with any annotation missing. Rollout seeds are derived from (seed, problem, sample, index,
rollouts already done), so a deterministic engine reproduces the uninterrupted run exactly.
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field

from stepwiser.core.chunks import STYLES, render_chunks
from stepwiser.core.earlystop import MODES, EarlyStopper, GridPrior, StopConfig, Tally
from stepwiser.engines import Engine, Request, SamplingParams, as_engine
from stepwiser.core.labels import LABEL_TYPES, LabelParams, check_method
from stepwiser.data.prompts import policy_messages
from stepwiser.io.records import Annotation, JsonlWriter, Problem, RunManifest, Sample, content_hash, read_records
from stepwiser.io.records import request_seed, sample_key

SEPARATOR = {"tags": "\n", "blank": "\n\n"}


@dataclass
class AnnotateConfig:
    policy: str
    samples: str
    problems: str
    out: str
    rollouts: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    labels: tuple = LABEL_TYPES
    gamma: float = 0.8
    alpha: float = 0.4
    n: int = 4
    q0: str = "rollouts"
    early_stop: str = "off"
    delta: float = 0.05
    round_size: int | None = None   # rollouts per index per round; None: M when off, else 2
    min_rollouts: int = 2
    prior_from: str | None = None
    chunk_style: str = "tags"
    seed: int = 0
    shard: str | None = None
    engine: str = "hf"
    target_sequences: int = 256   # rollouts per engine call the active set aims for (volatile)
    verify_timeout: float = 5.0

    VOLATILE = ("target_sequences", "verify_timeout")

    def __post_init__(self):
        self.labels = tuple(self.labels)
        for t in self.labels:
            check_method(t)
        if not self.labels:
            raise ValueError(f"request at least one label type: {', '.join(LABEL_TYPES)}")
        if self.q0 not in ("rollouts", "samples"):
            raise ValueError(f"q0 must be 'rollouts' or 'samples', got {self.q0!r}")
        if self.early_stop not in MODES[:3]:
            raise ValueError(f"early_stop must be one of off, exact, confident; got {self.early_stop!r}")
        if self.chunk_style not in STYLES:
            raise ValueError(f"chunk_style must be one of {', '.join(STYLES)}")
        if self.rollouts < 1:
            raise ValueError("rollouts must be >= 1")
        LabelParams(self.gamma, self.alpha, self.n)          # validates gamma/alpha/n
        StopConfig(self.early_stop if self.early_stop != "off" else "exact", self.round_size or 2, self.delta,
                   self.min_rollouts)                            # validates delta/round_size
        parse_shard(self.shard)

    @property
    def label_params(self) -> LabelParams:
        return LabelParams(self.gamma, self.alpha, self.n)

    @property
    def stop_config(self) -> StopConfig:
        if self.early_stop == "off":
            return StopConfig("off", round_size=self.round_size or self.rollouts, delta=self.delta, min_rollouts=0)
        return StopConfig(self.early_stop, self.round_size or 2, self.delta, self.min_rollouts)

    def sampling_record(self) -> dict:
        return {"model": self.policy, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens}


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if shard is None:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {shard}: need 0 <= i < n")
    return i, n


def in_shard(problem_id: str, shard: tuple[int, int]) -> bool:
    return int(content_hash(problem_id, 8), 16) % shard[1] == shard[0]


@dataclass
class ProblemWork:
    """The rollout state of one problem: its shared Q_0 tally and one stopper per sample."""
    problem: Problem
    samples: list[Sample]
    q0: Tally
    q0_source: str
    stoppers: list[EarlyStopper]
    tokens: list[int] = field(default_factory=list)  # generated rollout tokens per sample
    draws: dict = field(default_factory=dict)        # (sample or None, index) -> outcomes in order

    def done(self) -> bool:
        return all(s.done() for s in self.stoppers)


class SkipLog:
    def __init__(self):
        self.reasons: Counter = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        self.reasons[reason] += n


def _check_q0_samples(cfg: AnnotateConfig, samples: list[Sample]) -> None:
    want = cfg.sampling_record()
    for s in samples:
        got = {k: s.sampling.get(k) for k in want}
        if got != want:
            diff = ", ".join(f"{k}: samples {got[k]!r} vs rollouts {want[k]!r}" for k in want if got[k] != want[k])
            raise ValueError(f"--q0 samples needs samples drawn with the rollout settings; {s.key} differs "
                             f"({diff}). Use --q0 rollouts, or match the settings.")


def reference_parses(answer: str, timeout: float) -> bool:
    """A reference answer is usable if math-verify finds it equal to itself."""
    from stepwiser.core.verify import check
    return bool(answer.strip()) and check(f"\\boxed{{{answer}}}", answer, timeout=timeout, fast=False).correct


def make_work(cfg: AnnotateConfig, problem: Problem, samples: list[Sample], skips: SkipLog,
              prior: GridPrior | None) -> ProblemWork | None:
    usable = []
    for s in samples:
        if not s.response.strip():
            skips.add("empty response")
        elif not s.chunks:
            skips.add("no chunks")
        else:
            usable.append(s)
    if not usable:
        return None
    if cfg.q0 == "samples":
        _check_q0_samples(cfg, samples)
        q0 = Tally(len(samples), sum(bool(s.correct) for s in samples), len(samples))
    else:
        q0 = Tally(cfg.rollouts)
    stoppers = [EarlyStopper(len(s.chunks), cfg.rollouts, bool(s.correct), cfg.labels, cfg.label_params,
                             cfg.stop_config, q0=q0, prior=prior) for s in usable]
    return ProblemWork(problem, usable, q0, cfg.q0, stoppers, [0] * len(usable))


@dataclass
class Job:
    work: ProblemWork
    sample: int | None   # None: a Q_0 rollout batch of the problem
    index: int
    count: int
    prefix: str


def collect_jobs(cfg: AnnotateConfig, active: list[ProblemWork]) -> list[Job]:
    """All rollouts that the active problems need in this round (one job per prefix)."""
    jobs = []
    for w in active:
        needs = [st.needs() for st in w.stoppers]
        q0_more = max((n.get(0, 0) for n in needs), default=0)
        if q0_more and w.q0_source == "rollouts":
            jobs.append(Job(w, None, 0, min(q0_more, w.q0.M - w.q0.m), ""))
        for si, n in enumerate(needs):
            chunks = w.samples[si].chunks
            for j, count in sorted(n.items()):
                if j:
                    prefix = render_chunks(chunks[:j], cfg.chunk_style) + SEPARATOR[cfg.chunk_style]
                    jobs.append(Job(w, si, j, count, prefix))
    return jobs


def run_jobs(cfg: AnnotateConfig, engine: Engine, jobs: list[Job], stats: Counter) -> None:
    """Generate and verify every job's rollouts (one engine call per distinct rollout count)."""
    from stepwiser.core.verify import check_batch

    by_count: dict[int, list[Job]] = {}
    for job in jobs:
        by_count.setdefault(job.count, []).append(job)
    for count, group in by_count.items():
        params = SamplingParams(n=count, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_tokens=cfg.max_tokens, seed=cfg.seed)
        reqs = []
        for job in group:
            w = job.work
            tally = w.q0 if job.sample is None else w.stoppers[job.sample].tallies[job.index]
            who = "q0" if job.sample is None else w.samples[job.sample].sample_id
            reqs.append(Request(messages=policy_messages(w.problem.problem), prefix=job.prefix,
                                seed=request_seed(cfg.seed, w.problem.id, who, job.index, tally.m)))
        outs = engine.generate(reqs, params)
        results = check_batch([(job.prefix + c.text, job.work.problem.answer) for job, cs in zip(group, outs)
                               for c in cs], timeout=cfg.verify_timeout)
        pos = 0
        for job, cs in zip(group, outs):
            res = results[pos: pos + len(cs)]
            pos += len(cs)
            wins = sum(bool(r.correct) for r in res)
            job.work.draws.setdefault((job.sample, job.index), []).extend(int(bool(r.correct)) for r in res)
            stats["verify_timeouts"] += sum(r.status == "timeout" for r in res)
            stats["rollouts"] += len(cs)
            toks = sum(c.completion_tokens for c in cs)
            stats["tokens"] += toks
            if job.sample is None:
                job.work.q0.add(wins, len(cs))
                stats["q0_rollouts"] += len(cs)
            else:
                job.work.stoppers[job.sample].record(job.index, wins, len(cs))
                job.work.tokens[job.sample] += toks


def build_annotation(cfg: AnnotateConfig, w: ProblemWork, si: int) -> Annotation:
    s, st = w.samples[si], w.stoppers[si]
    H = len(s.chunks)
    mid = st.tallies[1:H]
    labels = st.labels()
    q0 = w.q0
    return Annotation(
        problem_id=s.problem_id, sample_id=s.sample_id, response=s.response, chunks=s.chunks,
        correct=s.correct, sampling=s.sampling,
        extra={**s.extra, "rollout_tokens": w.tokens[si],
               "draws": {"q0": w.draws.get((None, 0), []),
                         "chunks": [w.draws.get((si, j), []) for j in range(1, H)]}},
        successes=[t.k for t in mid] + [int(bool(s.correct))],
        rollouts=[t.m for t in mid] + [0],
        q0={"successes": q0.k, "rollouts": q0.m, "source": w.q0_source},
        q=[q0.k / q0.m if q0.m else None] + [t.k / t.m if t.m else None for t in mid] + [float(bool(s.correct))],
        labels={t: labels.get(t) for t in LABEL_TYPES},
        label_params={"gamma": cfg.gamma, "alpha": cfg.alpha, "n": cfg.n},
        early_stop={"mode": cfg.early_stop, "delta": cfg.delta if cfg.early_stop == "confident" else None,
                    "round_size": cfg.stop_config.round_size},
    )


def load_prior(path: str | None) -> GridPrior | None:
    """Empirical-Bayes prior for `confident` mode from an earlier full-M annotation file."""
    if not path:
        return None
    counts = []
    for a in read_records(path, Annotation):
        if (a.early_stop or {}).get("mode", "off") != "off":
            raise ValueError(f"--prior-from {path}: needs an annotation file made with --early-stop off")
        counts += [(k, m) for k, m in zip(a.successes[:-1], a.rollouts[:-1]) if m]
    return GridPrior.fit(counts)


def _group_samples(cfg: AnnotateConfig, samples: list[Sample], problems: dict, skips: SkipLog
                   ) -> dict[str, list[Sample]]:
    shard = parse_shard(cfg.shard)
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if not in_shard(s.problem_id, shard):
            continue
        if s.problem_id not in problems:
            skips.add("problem not in --problems")
            continue
        groups.setdefault(s.problem_id, []).append(s)
    return groups


def run_annotate(cfg: AnnotateConfig, engine: Engine, overwrite: bool = False, progress: bool | None = None
                 ) -> dict:
    """Annotate every sample of this shard; returns the summary (also kept in the manifest)."""
    from stepwiser.io.progress import StageProgress

    problems = {p.id: p for p in read_records(cfg.problems, Problem)}
    skips = SkipLog()
    groups = _group_samples(cfg, read_records(cfg.samples, Sample), problems, skips)
    inputs = [cfg.samples, cfg.problems] + ([cfg.prior_from] if cfg.prior_from else [])
    manifest = RunManifest.open(cfg.out, "annotate", dataclasses.asdict(cfg), inputs, overwrite=overwrite,
                                volatile=AnnotateConfig.VOLATILE)
    prior = load_prior(cfg.prior_from)
    writer = JsonlWriter(cfg.out, sample_key)
    queue = [pid for pid, g in groups.items() if any(s.key not in writer for s in g)]
    stats: Counter = Counter()
    if queue:
        engine = as_engine(engine)
    active: list[ProblemWork] = []
    t0 = time.time()
    total_chunks = sum(len(s.chunks) for g in groups.values() for s in g)
    with writer, StageProgress("annotate", total_chunks, "chunks", rates=("rollouts", "tokens"),
                               enabled=progress) as bar:
        bar.advance(sum(len(s.chunks) for g in groups.values() for s in g if s.key in writer))
        while queue or active:
            _refill(cfg, active, queue, groups, problems, skips, prior, bar)
            if not active:
                break
            jobs = collect_jobs(cfg, active)
            before = Counter(stats)
            run_jobs(cfg, engine, jobs, stats)
            for w in [w for w in active if w.done()]:
                active.remove(w)
                for si, s in enumerate(w.samples):
                    if s.key not in writer:
                        writer.write(build_annotation(cfg, w, si))
                bar.advance(sum(len(s.chunks) for s in w.samples))
                stats["done_spent"] += sum(sum(st.rollouts_spent()[1:]) for st in w.stoppers) + (
                    w.q0.m if w.q0_source == "rollouts" else 0)
                stats["done_budget"] += sum(cfg.rollouts * (len(s.chunks) - 1) for s in w.samples) + (
                    cfg.rollouts if w.q0_source == "rollouts" else 0)
            bar.advance(0, rollouts=stats["rollouts"] - before["rollouts"],
                        tokens=stats["tokens"] - before["tokens"])
            saved = 1 - stats["done_spent"] / stats["done_budget"] if stats["done_budget"] else 0.0
            bar.set(requests=len(jobs), saved=f"{100 * saved:.0f}%")
    summary = summarize(cfg, stats, skips, time.time() - t0)
    manifest.finish(summary)
    return summary


def _refill(cfg, active, queue, groups, problems, skips, prior, bar) -> None:
    """Add problems to the active set until the next round has `target_sequences` rollouts."""
    def pending() -> int:
        return sum(sum(n.values()) for w in active for n in (st.needs() for st in w.stoppers))

    while queue and (not active or pending() < cfg.target_sequences):
        pid = queue.pop(0)
        g = groups[pid]
        if not reference_parses(problems[pid].answer, cfg.verify_timeout):
            skips.add("reference answer cannot be parsed", len(g))
            bar.advance(sum(len(s.chunks) for s in g))
            continue
        w = make_work(cfg, problems[pid], g, skips, prior)
        if w is None:
            continue
        active.append(w)


def summarize(cfg: AnnotateConfig, stats: Counter, skips: SkipLog, seconds: float) -> dict:
    """Chunks, label balance, rollouts and tokens spent versus the full-M budget, skips (whole file)."""
    from stepwiser.io.records import iter_jsonl

    rows = [o for _, o in iter_jsonl(cfg.out)]
    chunks = sum(len(o["chunks"]) for o in rows)
    spent = sum(sum(o["rollouts"]) for o in rows)
    q0_spent = {o["problem_id"]: o["q0"]["rollouts"] for o in rows if o["q0"]["source"] == "rollouts"}
    budget = sum(cfg.rollouts * (len(o["chunks"]) - 1) for o in rows) + cfg.rollouts * len(q0_spent)
    total = spent + sum(q0_spent.values())
    balance = {}
    for t in cfg.labels:
        labs = [x for o in rows for x in (o["labels"].get(t) or [])]
        balance[t] = round(100 * sum(labs) / max(len(labs), 1), 1)
    return {
        "annotations": len(rows), "problems": len({o["problem_id"] for o in rows}), "chunks": chunks,
        "mean_chunks_per_sample": round(chunks / max(len(rows), 1), 2),
        "positive_pct": balance,
        "rollouts_spent": total, "full_M_budget": budget,
        "rollout_ratio": round(total / max(budget, 1), 3),
        "rollouts_this_run": stats["rollouts"], "tokens_this_run": stats["tokens"],
        "rollouts_per_s": round(stats["rollouts"] / max(seconds, 1e-9), 2),
        "tokens_per_s": round(stats["tokens"] / max(seconds, 1e-9), 1),
        "verify_timeouts": stats["verify_timeouts"],
        "skipped": dict(skips.reasons), "seconds": round(seconds, 1),
    }
