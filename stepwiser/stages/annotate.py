"""Stage `annotate`: Monte Carlo Q-values and labels for every chunk (docs/METHOD.md 2.2 and 4.1).

For a sample with chunks 1..H, Q_i (i < H) is the success rate of rollouts that continue the policy
prompt from ``render_chunks(chunks[:i]) + separator`` (the separator puts the model at the start of
a new chunk, exactly as in the sampled text); Q_H is the sample's own correctness; Q_0 is the
problem's success rate from the empty prefix (M rollouts once per problem, shared by its samples),
or with ``q0="samples"`` the pass rate of the problem's samples.

Throughput. Problems are processed in an active set that is refilled as problems finish; every
round gathers the rollouts that all active responses need and sends them to the engine in one
call, each prefix as one request with n rollouts (vLLM shares the prefix's KV cache; the hf engine
prefills it once for its n rollouts).

Resume. A problem's annotations are written when all its samples are done; problems go through the engine
in blocks (`block_problems`), and a rerun redoes every block with an annotation missing from its start.
Rollout seeds are derived from (seed, problem, sample, index, rollouts already done), so a deterministic
engine reproduces the uninterrupted run exactly.
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
from stepwiser.errors import EmptyResultError, StepwiserError
from stepwiser.io.config import check_choices, option
from stepwiser.stages.annotate_queue import in_shard, parse_shard, problem_blocks, resume_queue
from stepwiser.stages.annotate_summary import summarize

SEPARATOR = {"tags": "\n", "blank": "\n\n"}


@dataclass(kw_only=True)
class AnnotateConfig:
    policy: str | None = option(None, "Policy model that continues the prefixes (the one that wrote the samples).")
    samples: str | None = option(None, "Samples JSONL (C2).", path="file")
    problems: str | None = option(None, "Problems JSONL (answers).", path="file")
    out: str = option(help="Output annotations JSONL.", short="-o")
    rollouts: int = option(16, "Rollouts per chunk (M).", short="-M")
    temperature: float = option(1.0, "Sampling temperature of the rollouts.")
    top_p: float = option(1.0, "Nucleus sampling top-p of the rollouts.")
    max_tokens: int = option(512, "Most new tokens per rollout.")
    labels: tuple[str, ...] = option(LABEL_TYPES, "Label types to compute (comma-separated).", choices=LABEL_TYPES)
    gamma: float = option(0.8, "Rel-Ratio gamma.")
    alpha: float = option(0.4, "Rel-Effective alpha.")
    n: int = option(4, "Rel-Effective best-of-n.")
    q0: str = option("rollouts", "Q_0 from M rollouts of the empty prefix, or the pass rate of the problem's "
                                 "samples (only if they were sampled with the rollout settings).",
                     choices=("rollouts", "samples"))
    early_stop: str = option("off", "exact: labels identical to full M; confident: stop when each label is decided "
                                    "with error probability <= delta (agreement measured in "
                                    "benchmarks/earlystop.py).", choices=MODES[:3])
    delta: float = option(0.05, "confident mode error bound.")
    round_size: int | None = option(None, "Rollouts per index per round (default: M with --early-stop off, "
                                          "else 2).")
    min_rollouts: int = option(2, "confident: rollouts before a pause.")
    prior_from: str | None = option(None, "confident: fit the prior on Q from an earlier full-M annotation file "
                                          "(empirical Bayes).", path="file")
    chunk_style: str = option("tags", "How the samples were split into chunks (C6).", choices=STYLES)
    seed: int = option(0, "Seed (rollout seeds are derived from it, the problem, sample and index).")
    shard: str | None = option(None, "Process shard i of n (i/n), partitioned by problem_id.")
    engine: str = option("hf", "Generation backend (set by --engine).", cli=False)
    target_sequences: int = option(256, "Rollouts gathered per engine call (keeps the engine's batch full).")
    block_problems: int = option(
        32, "Problems per block: engine calls only mix problems of one block, and a rerun after a crash redoes "
            "an unfinished block from its start, so a resumed run writes the same records as an uninterrupted "
            "one (the same engine batches; 0: mix freely, a resumed run then differs where float rounding of "
            "other batches flips a near-tie).")
    verify_timeout: float = option(5.0, "Seconds per answer check (math-verify in a worker process).")
    relabel: str | None = option(None, "Recompute labels of this annotation file for new --gamma/--alpha/--n "
                                       "(no rollouts; stage `relabel`).", path="file")
    merge: list[str] = option([], "Merge these shard files into --out (repeat the option); checks against "
                                  "--samples (stage `merge`).", path="file")
    share_prefixes: bool = option(
        True, "Roll out each distinct (problem, prefix) once: samples whose first j chunks are identical share "
              "one Q_j estimate (the same distribution, fewer draws). Off: every sample rolls out its own.")
    max_verify_error_share: float = option(
        0.05, "Stop when more than this share of rollout checks end in a verifier error (such a rollout "
              "counts neither as a success nor as a failure and is redrawn).")

    # not hashed: they change speed or when a run gives up, never the records it writes
    VOLATILE = ("target_sequences", "verify_timeout", "max_verify_error_share", "block_problems")

    def __post_init__(self):
        self.labels = tuple(self.labels)
        for t in self.labels:
            check_method(t)
        if not self.labels:
            raise ValueError(f"request at least one label type: {', '.join(LABEL_TYPES)}")
        check_choices(self)
        self.merge = list(self.merge)
        if self.relabel and self.merge:
            raise ValueError("give --relabel FILE or --merge SHARD..., not both")
        missing = [f"--{k}" for k in ("policy", "samples", "problems") if not getattr(self, k)]
        if missing and self.task == "annotate":
            raise ValueError(f"missing {', '.join(missing)}")
        if self.rollouts < 1:
            raise ValueError("rollouts must be >= 1")
        if self.block_problems < 0:
            raise ValueError(f"block_problems must be >= 0 (0: no blocks), got {self.block_problems!r}")
        if not 0 <= self.max_verify_error_share <= 1:
            raise ValueError(f"max_verify_error_share must be in [0, 1], got {self.max_verify_error_share!r}")
        LabelParams(self.gamma, self.alpha, self.n)          # validates gamma/alpha/n
        StopConfig(self.early_stop if self.early_stop != "off" else "exact", self.round_size or 2, self.delta,
                   self.min_rollouts)                            # validates delta/round_size
        parse_shard(self.shard)

    @property
    def task(self) -> str:
        """What the command does: "annotate" (rollouts), "relabel" (--relabel) or "merge" (--merge)."""
        return "relabel" if self.relabel else "merge" if self.merge else "annotate"

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


def hashed_config(cfg: AnnotateConfig) -> dict:
    """The config as the manifest hashes it. `share_prefixes` came later: off, it is left out, so runs
    made before it existed (which rolled out every sample's prefixes) still resume with it off."""
    config = dataclasses.asdict(cfg)
    if not cfg.share_prefixes:
        config.pop("share_prefixes")
    for key in ("relabel", "merge"):   # other tasks of the command, not part of an annotation run
        config.pop(key)
    return config


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
    errors: dict = field(default_factory=dict)       # (sample or None, index) -> verifier errors
    shared: bool = False                             # one Q_j per distinct prefix (share_prefixes)

    def done(self) -> bool:
        return all(s.done() for s in self.stoppers)

    def slot(self, si: int | None, j: int):
        """The key of sample si's Q index j: (None, 0) for Q_0; with shared prefixes, the prefix itself."""
        if si is None:
            return None, 0
        return ("prefix", tuple(self.samples[si].chunks[:j])) if self.shared else (si, j)

    def slot_rollouts(self) -> dict:
        """{slot: rollouts spent} over the distinct Q slots of chunks 1..H-1 (Q_0 apart)."""
        return {self.slot(si, j): st.tallies[j].m for si, st in enumerate(self.stoppers)
                for j in range(1, st.H)}


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
    tallies: dict = {}   # distinct prefix -> its Q tally (shared by the samples that have it)

    def shared(s: Sample):
        if not cfg.share_prefixes:
            return None
        return [tallies.setdefault(tuple(s.chunks[:j]), Tally(cfg.rollouts)) for j in range(1, len(s.chunks))]

    stoppers = [EarlyStopper(len(s.chunks), cfg.rollouts, bool(s.correct), cfg.labels, cfg.label_params,
                             cfg.stop_config, q0=q0, prior=prior, shared=shared(s)) for s in usable]
    return ProblemWork(problem, usable, q0, cfg.q0, stoppers, [0] * len(usable), shared=cfg.share_prefixes)


@dataclass
class Job:
    work: ProblemWork
    sample: int | None   # None: a Q_0 rollout batch of the problem
    index: int
    count: int
    prefix: str
    key: tuple = (None, 0)   # the Q slot it feeds (`ProblemWork.slot`)


def collect_jobs(cfg: AnnotateConfig, active: list[ProblemWork]) -> list[Job]:
    """All rollouts that the active problems need in this round: one job per distinct prefix (with
    shared prefixes, the most any of its samples needs)."""
    jobs = []
    for w in active:
        needs = [st.needs() for st in w.stoppers]
        q0_more = max((n.get(0, 0) for n in needs), default=0)
        if q0_more and w.q0_source == "rollouts":
            jobs.append(Job(w, None, 0, min(q0_more, w.q0.M - w.q0.m), ""))
        by_slot: dict = {}
        for si, n in enumerate(needs):
            chunks = w.samples[si].chunks
            for j, count in sorted(n.items()):
                if not j:
                    continue
                key = w.slot(si, j)
                if key in by_slot:
                    by_slot[key].count = max(by_slot[key].count, count)
                    continue
                prefix = render_chunks(chunks[:j], cfg.chunk_style) + SEPARATOR[cfg.chunk_style]
                by_slot[key] = Job(w, si, j, count, prefix, key)
        jobs += by_slot.values()
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
            if w.shared and job.sample is not None:   # the same seeds whichever sample asks first
                who = "prefix:" + content_hash(list(job.key[1]), 12)
            drawn = tally.m + w.errors.get(job.key, 0)  # = tally.m without errors
            reqs.append(Request(messages=policy_messages(w.problem.problem), prefix=job.prefix,
                                seed=request_seed(cfg.seed, w.problem.id, who, job.index, drawn)))
        outs = engine.generate(reqs, params)
        results = check_batch([(job.prefix + c.text, job.work.problem.answer) for job, cs in zip(group, outs)
                               for c in cs], timeout=cfg.verify_timeout)
        pos = 0
        for job, cs in zip(group, outs):
            res = results[pos: pos + len(cs)]
            pos += len(cs)
            valid = [r for r in res if r.status != "error"]   # an error is neither success nor failure
            _count_errors(cfg, job, len(res) - len(valid), stats)
            wins = sum(bool(r.correct) for r in valid)
            job.work.draws.setdefault(job.key, []).extend(int(bool(r.correct)) for r in valid)
            stats["verify_timeouts"] += sum(r.status == "timeout" for r in res)
            stats["rollouts"] += len(cs)
            toks = sum(c.completion_tokens for c in cs)
            stats["tokens"] += toks
            if job.sample is None:
                job.work.q0.add(wins, len(valid))
                stats["q0_rollouts"] += len(valid)
            else:
                job.work.stoppers[job.sample].record(job.index, wins, len(valid))
                job.work.tokens[job.sample] += toks


MIN_CHECKS_FOR_SHARE = 100   # during a run, the error share is judged once this many checks are done


def _count_errors(cfg: AnnotateConfig, job: Job, errors: int, stats: Counter) -> None:
    """Record a job's verifier errors; a chunk whose redraws keep failing stops the run."""
    stats["verify_checks"] += job.count
    if not errors:
        return
    key = job.key
    job.work.errors[key] = job.work.errors.get(key, 0) + errors
    stats["verify_errors"] += errors
    if job.work.errors[key] >= cfg.rollouts:
        where = "Q_0" if job.sample is None else f"sample {job.work.samples[job.sample].sample_id} chunk {job.index}"
        raise StepwiserError(f"annotate: the verifier failed (status error) on {job.work.errors[key]} rollouts "
                             f"of problem {job.work.problem.id} {where}; check its reference answer "
                             f"{job.work.problem.answer!r} and the verifier (stepwiser.core.verify)")


def check_error_share(cfg: AnnotateConfig, stats: Counter, final: bool = False) -> None:
    """Stop the run when verifier errors exceed `max_verify_error_share` of the rollout checks."""
    errors, checks = stats["verify_errors"], stats["verify_checks"]
    if not errors or (checks < MIN_CHECKS_FOR_SHARE and not final):
        return
    if errors > cfg.max_verify_error_share * checks:
        raise StepwiserError(
            f"annotate: the verifier failed (status error) on {errors} of {checks} rollout checks "
            f"({100 * errors / checks:.1f}%), above --max-verify-error-share {cfg.max_verify_error_share}; "
            "the annotations written so far are kept (a rerun resumes), but results with this many "
            "unverifiable rollouts are suspect: check the problems' answers and the verifier")


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
                         "chunks": [w.draws.get(w.slot(si, j), []) for j in range(1, H)]},
               "verify_errors": {"q0": w.errors.get((None, 0), 0),
                                 "chunks": [w.errors.get(w.slot(si, j), 0) for j in range(1, H)]},
               "prefix_sharing": w.shared},
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
    groups = _group_samples(cfg, _read_samples(cfg), problems, skips)
    if not groups and (cfg.shard is None or skips.reasons):
        raise EmptyResultError(f"{cfg.samples}: nothing to annotate{f' in shard {cfg.shard}' if cfg.shard else ''}: "
                               f"{_skip_text(skips)}; give the problems file the samples were drawn from")
    inputs = [cfg.samples, cfg.problems] + ([cfg.prior_from] if cfg.prior_from else [])
    manifest = RunManifest.open(cfg.out, "annotate", hashed_config(cfg), inputs, overwrite=overwrite,
                                volatile=AnnotateConfig.VOLATILE)
    prior = load_prior(cfg.prior_from)
    writer = JsonlWriter(cfg.out, sample_key)
    block = problem_blocks(list(groups), cfg.block_problems)
    queue = resume_queue(groups, block, lambda s: s.key in writer)
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
            _refill(cfg, active, queue, groups, problems, skips, prior, bar, block)
            if not active:
                break
            jobs = collect_jobs(cfg, active)
            before = Counter(stats)
            run_jobs(cfg, engine, jobs, stats)
            check_error_share(cfg, stats)
            for w in [w for w in active if w.done()]:
                active.remove(w)
                for si, s in enumerate(w.samples):
                    if s.key not in writer:   # a redone block's finished samples are not written twice
                        writer.write(build_annotation(cfg, w, si))
                        bar.advance(len(s.chunks))
                stats["done_spent"] += sum(w.slot_rollouts().values()) + (
                    w.q0.m if w.q0_source == "rollouts" else 0)
                stats["done_budget"] += sum(cfg.rollouts * (len(s.chunks) - 1) for s in w.samples) + (
                    cfg.rollouts if w.q0_source == "rollouts" else 0)
            bar.advance(0, rollouts=stats["rollouts"] - before["rollouts"],
                        tokens=stats["tokens"] - before["tokens"])
            saved = 1 - stats["done_spent"] / stats["done_budget"] if stats["done_budget"] else 0.0
            bar.set(requests=len(jobs), saved=f"{100 * saved:.0f}%")
    check_error_share(cfg, stats, final=True)
    summary = summarize(cfg, stats, skips.reasons, time.time() - t0)
    # no groups: a shard that none of the problems hashes to (not an error)
    manifest.finish(summary, records=summary["annotations"] if groups else None, cause=_skip_text(skips))
    return summary


def _read_samples(cfg: AnnotateConfig) -> list[Sample]:
    samples = read_records(cfg.samples, Sample)
    if not samples:
        raise EmptyResultError(f"{cfg.samples}: no samples, nothing to annotate")
    return samples


def _skip_text(skips: SkipLog) -> str:
    return "every sample was skipped (" + ", ".join(f"{r}: {n}" for r, n in skips.reasons.items()) + ")"


def _refill(cfg, active, queue, groups, problems, skips, prior, bar, block) -> None:
    """Add problems to the active set until the next round has `target_sequences` rollouts, never mixing
    problems of two blocks."""
    def pending() -> int:
        return sum(sum(n.values()) for w in active for n in (st.needs() for st in w.stoppers))

    def same_block() -> bool:
        return block[queue[0]] == block[active[0].problem.id]

    while queue and (not active or (pending() < cfg.target_sequences and same_block())):
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
