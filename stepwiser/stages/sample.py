"""Stage `sample`: N responses per problem from a policy, parsed into chunks (C6), verified (C2).

Resumable: samples are appended as each batch of problems finishes; a rerun generates only the
problems whose N samples are not all present (per-problem seeds make a deterministic engine
reproduce the same text). Ends with pass@1, pass@N and the all-correct / all-wrong shares (the
paper's pre-filter), and can write the filtered problem list (problems with mixed outcomes).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from stepwiser.errors import EmptyResultError
from stepwiser.io.config import check_choices, option

from stepwiser.core.chunks import STYLES, outside_text, parse_chunks
from stepwiser.engines import Engine, Request, SamplingParams, as_engine
from stepwiser.data.prompts import policy_messages
from stepwiser.io.records import JsonlWriter, Problem, RunManifest, Sample, read_records, request_seed, sample_key, write_jsonl


@dataclass
class SampleConfig:
    policy: str = option(help="Policy model: HF id, local dir, or smollm2-135m-instruct.")
    problems: str = option(help="Problems JSONL.", path="file")
    out: str = option(help="Output samples JSONL.", short="-o")
    n: int = option(4, "Responses per problem.")
    temperature: float = option(1.0, "Sampling temperature.")
    top_p: float = option(1.0, "Nucleus sampling top-p.")
    max_tokens: int = option(512, "Most new tokens per response.")
    seed: int = option(0, "Seed (per-request seeds are derived from it and the problem id).")
    chunk_style: str = option("tags", "How responses are split into chunks (C6).", choices=STYLES)
    engine: str = option("hf", "Generation backend (set by --engine).", cli=False)
    batch_problems: int = option(16, "Problems per engine call (does not change results).")
    filtered_out: str | None = option(None, "Also write the problems whose samples are neither all correct "
                                            "nor all wrong (the paper's pre-filter).")
    limit: int | None = option(None, "Only the first N problems.")
    verify_timeout: float = option(5.0, "Seconds per answer check (math-verify in a worker process).")

    VOLATILE = ("batch_problems", "filtered_out", "verify_timeout")

    def __post_init__(self):
        check_choices(self)
        if self.n < 1 or self.max_tokens < 1 or self.batch_problems < 1:
            raise ValueError("n, max_tokens and batch_problems must be >= 1")

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              max_tokens=self.max_tokens, seed=self.seed)

    def sampling_record(self) -> dict:
        """The `sampling` object stored with each sample (C2)."""
        return {"model": self.policy, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens, "seed": self.seed}


@dataclass
class SampleStats:
    problems: int = 0
    samples: int = 0
    correct: int = 0
    tokens: int = 0
    unparsed: int = 0
    no_chunks: int = 0
    outside: int = 0
    per_problem: dict = field(default_factory=dict)  # problem_id -> [correct flags]

    def add(self, s: Sample, tokens: int, status: str) -> None:
        self.samples += 1
        self.correct += int(s.correct)
        self.tokens += tokens
        self.unparsed += int(status == "unparsed")
        self.no_chunks += int(not s.chunks)
        self.outside += int(bool(outside_text(s.response)))
        self.per_problem.setdefault(s.problem_id, []).append(bool(s.correct))

    def summary(self) -> dict:
        groups = list(self.per_problem.values())
        n = max(len(groups), 1)
        return {
            "problems": len(groups), "samples": self.samples,
            "pass@1": round(100 * self.correct / max(self.samples, 1), 2),
            "pass@n": round(100 * sum(any(g) for g in groups) / n, 2),
            "all_correct_pct": round(100 * sum(all(g) for g in groups) / n, 2),
            "all_wrong_pct": round(100 * sum(not any(g) for g in groups) / n, 2),
            "mixed_problems": sum(any(g) and not all(g) for g in groups),
            "unparsed_answers": self.unparsed, "samples_without_chunks": self.no_chunks,
            "samples_with_text_outside_chunks": self.outside,
        }


def build_samples(problem: Problem, texts: list, cfg: SampleConfig, verdicts: list, start_id: int = 0
                  ) -> list[Sample]:
    out = []
    for j, (c, v) in enumerate(zip(texts, verdicts)):
        out.append(Sample(problem_id=problem.id, sample_id=start_id + j, response=c.text,
                          chunks=parse_chunks(c.text, cfg.chunk_style), correct=bool(v.correct),
                          sampling=cfg.sampling_record(),
                          extra={"finish_reason": c.finish_reason, "completion_tokens": c.completion_tokens,
                                 "answer_status": v.status}))
    return out


def run_sample(cfg: SampleConfig, engine: Engine, overwrite: bool = False, progress: bool | None = None) -> dict:
    """Run the stage; returns the summary (also stored in the manifest)."""
    from stepwiser.io.progress import StageProgress
    from stepwiser.core.verify import check_batch

    problems = read_records(cfg.problems, Problem)[: cfg.limit]
    if not problems:
        raise EmptyResultError(f"{cfg.problems}: no problems, nothing to sample")
    config = dataclasses.asdict(cfg)
    manifest = RunManifest.open(cfg.out, "sample", config, [cfg.problems], overwrite=overwrite,
                                volatile=SampleConfig.VOLATILE)
    writer = JsonlWriter(cfg.out, sample_key)
    stats = SampleStats()
    for _, obj in _existing(cfg.out):
        stats.add(Sample.from_dict(obj), obj.get("completion_tokens", 0), obj.get("answer_status", ""))
    todo = [p for p in problems if any(f"{p.id}/{j}" not in writer for j in range(cfg.n))]
    params = cfg.sampling_params()
    if todo:
        engine = as_engine(engine)
    t0 = time.time()
    with writer, StageProgress("sample", len(problems), "problems", rates=("samples", "tokens"),
                               enabled=progress) as bar:
        bar.advance(len(problems) - len(todo))
        for b in range(0, len(todo), cfg.batch_problems):
            batch = todo[b: b + cfg.batch_problems]
            reqs = [Request(messages=policy_messages(p.problem), seed=request_seed(cfg.seed, p.id)) for p in batch]
            outs = engine.generate(reqs, params)
            verdicts = check_batch([(c.text, p.answer) for p, cs in zip(batch, outs) for c in cs],
                                   timeout=cfg.verify_timeout)
            for i, (p, cs) in enumerate(zip(batch, outs)):
                for s in build_samples(p, cs, cfg, verdicts[i * cfg.n:(i + 1) * cfg.n]):
                    if s.key in writer:
                        continue
                    writer.write(s)
                    stats.add(s, s.extra["completion_tokens"], s.extra["answer_status"])
            tokens = sum(c.completion_tokens for cs in outs for c in cs)
            bar.advance(len(batch), samples=len(batch) * cfg.n, tokens=tokens)
            bar.set(acc=f"{100 * stats.correct / max(stats.samples, 1):.1f}%")
    summary = stats.summary()
    summary["seconds"] = round(time.time() - t0, 1)
    if cfg.filtered_out:
        keep = {pid for pid, g in stats.per_problem.items() if any(g) and not all(g)}
        summary["filtered_written"] = write_jsonl(cfg.filtered_out, [p for p in problems if p.id in keep])
    manifest.finish(summary, records=stats.samples, cause=f"no sample of the {len(problems)} problems")
    return summary


def _existing(path):
    from pathlib import Path

    from stepwiser.io.records import iter_jsonl
    return iter_jsonl(path) if Path(path).exists() else iter(())
