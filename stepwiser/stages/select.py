"""Stage `select`: stepwise rejection-sampling data selection (docs/METHOD.md 2.6).

Per prompt, k responses from the chunk policy (the `sample` stage, resumable, in ``OUT/samples.jsonl``);
the correct ones are the candidates. ``--strategy judge`` scores every chunk of every candidate with the
judge (``JudgeItem(problem, history=previous chunks, chunk)``; chunk score = ``Judgment.score``: P(Positive)
from the judge's samples, or the discriminative judge's P(+); a chunk whose samples are all unparsed scores
0, our convention) and keeps the candidate with the highest average chunk score (ties: the lowest
sample id; a candidate without chunks ranks last). ``--strategy outcome`` keeps a random correct one
(seeded per prompt: the paper's outcome-only baseline); given a judge, it still scores the candidates so
the summary can compare.

Outputs in `out`: ``samples.jsonl``, ``scores.jsonl`` (per judged candidate: chunk scores and their mean;
appended as judged, so a rerun resumes), ``train.jsonl`` (one C2 SFT example per prompt with a correct
response: prompt, response, source "select", problem_id; `stepwiser train-policy --data` takes it as it
is) and ``summary.json``.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

from stepwiser.engines import EngineError
from stepwiser.errors import EmptyResultError
from stepwiser.io.config import check_choices, option
from stepwiser.io.records import (
    JsonlWriter,
    RunManifest,
    Sample,
    SFTExample,
    iter_jsonl,
    read_records,
    refuse_stale_outputs,
    request_seed,
    sample_key,
    write_json,
    write_jsonl,
)
from stepwiser.judges.base import JudgeItem
from stepwiser.judges.load import JudgeOptions
from stepwiser.stages.search import call_each, load_problems

STRATEGIES = ("judge", "outcome")

SUMMARY_NOTES = (
    "prompts_with_correct: prompts with at least one correct response among the k (each gives one training "
    "example); mean_judge_score_kept / mean_judge_score_all_correct: the judge's average chunk score "
    "(P(Positive), 0..1) of the kept responses / of every correct response (the selection's gain when "
    "strategy is judge; about equal under outcome).")


@dataclass(kw_only=True)
class SelectConfig(JudgeOptions):
    policy: str = option(help="Chunk policy: HF id or local dir.")
    judge: str | None = option(None, "Step judge (a trained judge folder or any chat model); needed for "
                                     "--strategy judge, optional for outcome (then the summary compares scores).")
    problems: str = option(help="Problems JSONL (id, problem, answer).", path="file")
    out: str = option(help="Output folder.", short="-o")
    k: int = option(8, "Responses sampled per prompt.")
    strategy: str = option("judge", "judge: keep the correct response with the best average chunk score; "
                                    "outcome: a random correct one (baseline).", choices=STRATEGIES)
    temperature: float = option(1.0, "Policy sampling temperature.")
    top_p: float = option(1.0, "Policy nucleus sampling top-p.")
    max_tokens: int = option(1024, "Most new tokens per response.")
    seed: int = option(0, "Seed of the sampling and of the outcome strategy's choice.")
    maj: int = option(1, "Judge samples per chunk (the score is the share of Positive among them): greedy "
                         "for 1, temperature 1.0 above.")
    batch_problems: int = option(16, "Problems per policy call (does not change results).")
    batch_items: int = option(256, "Chunks per judge call (does not change results).")
    limit: int | None = option(None, "Only the first N problems.")
    verify_timeout: float = option(5.0, "Seconds per answer check.")
    policy_engine: str = option("hf", "Policy backend (set by --policy-engine).", cli=False)
    judge_engine: str = option("hf", "Judge backend (set by --judge-engine).", cli=False)

    VOLATILE = ("batch_problems", "batch_items", "verify_timeout")

    def __post_init__(self):
        check_choices(self)
        for name in ("k", "max_tokens", "maj", "batch_problems", "batch_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.strategy == "judge" and not self.judge:
            raise ValueError("--strategy judge needs --judge MODEL (or use --strategy outcome)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    @property
    def scoring(self) -> bool:
        return bool(self.judge)


def chunk_items(problem: str, chunks: list[str]) -> list[JudgeItem]:
    return [JudgeItem(problem=problem, history=list(chunks[:i]), chunk=c) for i, c in enumerate(chunks)]


def score_record(s: Sample, judgments: list) -> dict:
    """A candidate's scores: per chunk `Judgment.score` (0 when all its samples are unparsed), their mean."""
    scores = [0.0 if j is None or j.score is None else float(j.score) for j in judgments]
    unparsed = sum(j is None or j.score is None for j in judgments)
    return {"problem_id": s.problem_id, "sample_id": s.sample_id, "chunk_scores": scores,
            "score": sum(scores) / len(scores) if scores else None, "unparsed_chunks": unparsed}


def score_candidates(cfg: SelectConfig, judge, candidates: list[Sample], problems: dict, path: Path,
                     progress: bool | None = None) -> dict[str, dict]:
    """Judge every chunk of every candidate not yet scored in `path` (resumable); all scores by sample key."""
    from stepwiser.io.progress import StageProgress

    writer = JsonlWriter(path, sample_key)
    todo = [s for s in candidates if s.key not in writer]
    if todo and not hasattr(judge, "judge"):
        judge = judge()
    with writer, StageProgress("select: judge", len(candidates), "responses", enabled=progress) as bar:
        bar.advance(len(candidates) - len(todo))
        i = 0
        while i < len(todo):
            batch, n = [], 0
            while i < len(todo) and (not batch or n + len(todo[i].chunks) <= cfg.batch_items):
                batch.append(todo[i])
                n += len(todo[i].chunks)
                i += 1
            items = [it for s in batch for it in chunk_items(problems[s.problem_id].problem, s.chunks)]
            outs = call_each(lambda xs: judge.judge(xs, cfg.maj), items, "judge") if items else []
            pos = 0
            for s in batch:
                js = [None if isinstance(j, EngineError) else j for j in outs[pos: pos + len(s.chunks)]]
                pos += len(s.chunks)
                writer.write(score_record(s, js))
            bar.advance(len(batch))
    return {sample_key(obj): obj for _, obj in iter_jsonl(path)}


def choose(cfg: SelectConfig, pid: str, cands: list[Sample], scores: dict) -> Sample:
    """The kept response among a prompt's correct ones (see the module docstring)."""
    cands = sorted(cands, key=lambda s: s.sample_id)
    if cfg.strategy == "outcome":
        return random.Random(request_seed(cfg.seed, pid, "select")).choice(cands)

    def rank(s):
        sc = scores.get(s.key, {}).get("score")
        return (sc is not None, sc if sc is not None else 0.0, -s.sample_id)
    return max(cands, key=rank)


def run_select(cfg: SelectConfig, engine, judge=None, overwrite: bool = False, progress: bool | None = None
               ) -> dict:
    """Sample, score, select; writes train.jsonl and summary.json and returns the summary.

    `engine`: the policy Engine or a factory; `judge`: a StepJudge or a factory (None without --judge)."""
    from stepwiser.stages.sample import SampleConfig, run_sample

    problems = {p.id: p for p in load_problems(cfg, "select")}
    out = Path(cfg.out)
    refuse_stale_outputs(out, ("samples", "scores", "train"), overwrite)
    manifest = RunManifest.open(out, "select", dataclasses.asdict(cfg), [cfg.problems], overwrite=overwrite,
                                volatile=SelectConfig.VOLATILE)
    scfg = SampleConfig(policy=cfg.policy, problems=cfg.problems, out=str(out / "samples.jsonl"), n=cfg.k,
                        temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed,
                        engine=cfg.policy_engine, batch_problems=cfg.batch_problems, limit=cfg.limit,
                        verify_timeout=cfg.verify_timeout)
    sample_summary = run_sample(scfg, engine, progress=progress)
    samples = read_records(out / "samples.jsonl", Sample)
    candidates = [s for s in samples if s.correct and s.problem_id in problems]
    scores = {}
    if cfg.scoring and candidates:
        if judge is None:
            raise ValueError("select: a judge is configured but none was given")
        scores = score_candidates(cfg, judge, candidates, problems, out / "scores.jsonl", progress)
    by_problem: dict[str, list[Sample]] = {}
    for s in candidates:
        by_problem.setdefault(s.problem_id, []).append(s)
    kept = [choose(cfg, pid, by_problem[pid], scores) for pid in problems if pid in by_problem]
    if not kept:
        raise EmptyResultError(f"select: no prompt of {cfg.problems} has a correct response among its "
                               f"{cfg.k} samples; nothing to train on")
    write_jsonl(out / "train.jsonl", [
        SFTExample(prompt=problems[s.problem_id].problem, response=s.response, source="select",
                   problem_id=s.problem_id,
                   extra={"sample_id": s.sample_id, "strategy": cfg.strategy,
                          "score": scores.get(s.key, {}).get("score")}) for s in kept])
    summary = select_summary(cfg, problems, samples, candidates, kept, scores)
    summary["samples_pass@1"] = sample_summary["pass@1"]
    write_json(out / "summary.json", summary)
    manifest.finish(summary, records=len(kept))
    return summary


def _mean_score(samples: list[Sample], scores: dict) -> float | None:
    vals = [scores[s.key]["score"] for s in samples if s.key in scores and scores[s.key]["score"] is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def select_summary(cfg: SelectConfig, problems: dict, samples: list, candidates: list, kept: list,
                   scores: dict) -> dict:
    return {"strategy": cfg.strategy, "prompts": len(problems), "prompts_with_correct": len(kept),
            "samples": len(samples), "correct_samples": len(candidates),
            "mean_judge_score_kept": _mean_score(kept, scores),
            "mean_judge_score_all_correct": _mean_score(candidates, scores),
            "judged_chunks": sum(len(v["chunk_scores"]) for v in scores.values()),
            "unparsed_chunks": sum(v["unparsed_chunks"] for v in scores.values()),
            "candidates_without_chunks": sum(not s.chunks for s in candidates),
            "train_file": str(Path(cfg.out) / "train.jsonl")}
