"""Stage `segment`: a teacher model inserts <chunk> tags into correct responses (docs/METHOD.md 2.1).

Each response gets up to `attempts` tries (paper: 8), issued in rounds over all pending responses
so the engine sees full batches. An attempt is accepted only if removing the tags reproduces the
original exactly and the tags are well formed (`chunks.segmentation_problems`). Accepted
segmentations become SFT examples (C2: prompt = problem, response = chunk-tagged text,
source = "segment") for training the chunk policy; responses that never succeed are written to
`<out>.failed.jsonl` with the reasons, so a rerun does not retry them.
"""
from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass

from stepwiser.core.chunks import parse_chunks, render_chunks, segmentation_problems
from stepwiser.engines import Engine, Request, SamplingParams, as_engine
from stepwiser.errors import EmptyResultError
from stepwiser.io.config import option
from stepwiser.io.records import JsonlWriter, Problem, RunManifest, Sample, SFTExample, read_records
from stepwiser.io.records import request_seed

TEACHER_INSTRUCTIONS = """You will segment a solution to a math problem into chunks of reasoning.
Insert <chunk> and </chunk> tags into the solution, following these principles:
1. Each chunk serves one clear purpose: setting up an equation, carrying out one self-contained
   computation, or stating a conclusion.
2. The lines inside a chunk form one uninterrupted line of reasoning. Start a new chunk when the
   focus shifts.
3. A new phase (for example moving from solving to verifying, or a side remark) starts a new chunk.
4. Copy the text and the newlines inside the tags EXACTLY as in the original. Do not add, remove or
   change any character. Put nothing outside the tags except the original newlines between chunks.
Output only the tagged solution."""


def teacher_messages(problem: str, response: str) -> list[dict]:
    return [{"role": "system", "content": TEACHER_INSTRUCTIONS},
            {"role": "user", "content": f"Problem:\n{problem}\n\nSolution to segment:\n{response}"}]


def clean_teacher_output(text: str) -> str:
    """Remove a surrounding code fence, which teachers often add; nothing else is changed."""
    t = text.strip("\n")
    if t.startswith("```") and t.rstrip().endswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else ""
        t = t.rstrip()[:-3].rstrip("\n")
    return t


@dataclass
class SegmentConfig:
    teacher: str = option(help="Teacher model (HF id, dir, smollm2-135m-instruct, or the served model name with "
                               "--engine openai).")
    samples: str = option(help="Samples JSONL.", path="file")
    problems: str = option(help="Problems JSONL.", path="file")
    out: str = option(help="Output SFT examples JSONL.", short="-o")
    attempts: int = option(8, "Teacher attempts per response.")
    temperature: float = option(0.7, "Temperature of attempts 2..k (the first is greedy).")
    max_tokens: int = option(1024, "Most new tokens per attempt.")
    max_per_problem: int = option(4, "At most this many correct responses per problem.")
    seed: int = option(0, "Seed (per-request seeds are derived from it).")
    engine: str = option("hf", "Generation backend (set by --engine).", cli=False)
    batch: int = option(32, "Responses per engine call.")

    VOLATILE = ("batch",)

    def __post_init__(self):
        if self.attempts < 1 or self.max_per_problem < 1 or self.batch < 1 or self.max_tokens < 1:
            raise ValueError("attempts, max_per_problem, max_tokens and batch must be >= 1")


def select_responses(samples: list[Sample], max_per_problem: int) -> list[Sample]:
    """Correct samples, at most `max_per_problem` per problem (lowest sample_id first)."""
    per: Counter = Counter()
    out = []
    for s in sorted(samples, key=lambda s: (s.problem_id, s.sample_id)):
        if s.correct and per[s.problem_id] < max_per_problem:
            per[s.problem_id] += 1
            out.append(s)
    return out


def _key(o: dict) -> str:
    return o["sample_key"]


def run_segment(cfg: SegmentConfig, engine: Engine, overwrite: bool = False, progress: bool | None = None) -> dict:
    from stepwiser.io.progress import StageProgress

    problems = {p.id: p for p in read_records(cfg.problems, Problem)}
    samples = read_records(cfg.samples, Sample)
    chosen = [s for s in select_responses(samples, cfg.max_per_problem) if s.problem_id in problems]
    if not chosen:
        correct = [s for s in samples if s.correct]
        raise EmptyResultError(
            f"{cfg.samples}: no response to segment ({len(samples)} samples, {len(correct)} correct, "
            f"{sum(s.problem_id in problems for s in correct)} of those with their problem in {cfg.problems})"
            + ("; give the problems file the samples were drawn from" if correct else ""))
    manifest = RunManifest.open(cfg.out, "segment", dataclasses.asdict(cfg), [cfg.samples, cfg.problems],
                                overwrite=overwrite, volatile=SegmentConfig.VOLATILE,
                                outputs=[cfg.out + ".failed.jsonl"])
    ok = JsonlWriter(cfg.out, _key)
    failed = JsonlWriter(cfg.out + ".failed.jsonl", _key)
    pending = [s for s in chosen if s.key not in ok and s.key not in failed]
    reasons: dict[str, Counter] = {s.key: Counter() for s in pending}
    if pending:
        engine = as_engine(engine)
    t0, tried = time.time(), 0
    with ok, failed, StageProgress("segment", len(chosen), "responses", enabled=progress) as bar:
        bar.advance(len(chosen) - len(pending))
        for attempt in range(cfg.attempts):
            if not pending:
                break
            params = SamplingParams(n=1, temperature=0.0 if attempt == 0 else cfg.temperature,
                                    max_tokens=cfg.max_tokens, seed=cfg.seed)
            still = []
            for b in range(0, len(pending), cfg.batch):
                batch = pending[b: b + cfg.batch]
                reqs = [Request(messages=teacher_messages(problems[s.problem_id].problem, s.response),
                                seed=request_seed(cfg.seed, s.key, attempt)) for s in batch]
                for s, outs in zip(batch, engine.generate(reqs, params)):
                    tried += 1
                    tagged = clean_teacher_output(outs[0].text)
                    why = segmentation_problems(tagged, s.response)
                    if not why:
                        chunks = parse_chunks(tagged, "tags")
                        ok.write(SFTExample(prompt=problems[s.problem_id].problem,
                                            response=render_chunks(chunks, "tags"), source="segment",
                                            problem_id=s.problem_id,
                                            extra={"sample_key": s.key, "attempt": attempt + 1,
                                                   "n_chunks": len(chunks)}))
                        bar.advance(1)
                    else:
                        reasons[s.key].update(why)
                        still.append(s)
            pending = still
        for s in pending:
            failed.write({"sample_key": s.key, "problem_id": s.problem_id, "attempts": cfg.attempts,
                          "reasons": dict(reasons[s.key])})
            bar.advance(1)
    return _finish(cfg, manifest, tried, time.time() - t0)


def _finish(cfg: SegmentConfig, manifest: RunManifest, tried: int, seconds: float) -> dict:
    from stepwiser.io.records import iter_jsonl

    accepted = [o for _, o in iter_jsonl(cfg.out)]
    failed = [o for _, o in iter_jsonl(cfg.out + ".failed.jsonl")]
    total = len(accepted) + len(failed)
    reasons: Counter = Counter()
    for f in failed:
        reasons.update(f.get("reasons", {}))
    summary = {
        "responses": total, "accepted": len(accepted),
        "acceptance_rate_pct": round(100 * len(accepted) / max(total, 1), 2),
        "mean_chunks": round(sum(o["n_chunks"] for o in accepted) / max(len(accepted), 1), 2),
        "mean_attempts_accepted": round(sum(o["attempt"] for o in accepted) / max(len(accepted), 1), 2),
        "teacher_calls_this_run": tried, "failure_reasons": dict(reasons.most_common(4)),
        "seconds": round(seconds, 1),
    }
    manifest.finish(summary, records=len(accepted),
                    cause=f"the teacher failed on all {total} responses ({cfg.out}.failed.jsonl has the "
                          f"reasons: {', '.join(reasons) or 'none'})")
    return summary
