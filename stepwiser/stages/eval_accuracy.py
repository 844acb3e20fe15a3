"""Stage `eval accuracy`: a policy's accuracy on a problem set, greedy (k = 1) or Avg@k, on any engine.

Sampling, answer checking and resume are the `sample` stage's (`stepwiser.stages.sample.run_sample`, with
its manifest beside ``OUT/samples.jsonl``); this stage adds the per-problem records
(``OUT/problems.jsonl``: problem_id, k, correct, accuracy, unparsed) and ``OUT/summary.json``:
mean accuracy over problems (percent; Avg@k = the mean over problems of the share of its k samples
that are correct), its standard error (sample standard deviation of the per-problem accuracies over
sqrt(number of problems); null for one problem) and the number of samples without a final answer.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from stepwiser.io.config import option
from stepwiser.errors import StepwiserError
from stepwiser.io.records import iter_jsonl, write_json, write_jsonl


@dataclass
class AccuracyConfig:
    policy: str = option(help="Policy model: HF id, local dir, or smollm2-135m-instruct.")
    problems: str = option(help="Problems JSONL.", path="file")
    out: str = option(help="Output folder.", short="-o")
    k: int = option(1, "Samples per problem (Avg@k).")
    temperature: float | None = option(None, "Sampling temperature [default: 0 (greedy) for k = 1, 1.0 for k > 1].")
    top_p: float = option(1.0, "Nucleus sampling top-p, in (0, 1].")
    max_tokens: int = option(1024, "Most new tokens per response.")
    seed: int = option(0, "Seed (per-request seeds are derived from it and the problem id).")
    engine: str = option("hf", "Generation backend (set by --engine).", cli=False)
    limit: int | None = option(None, "Only the first N problems.")
    batch_problems: int = option(16, "Problems per engine call.")

    def __post_init__(self):
        if self.k < 1 or self.max_tokens < 1 or self.batch_problems < 1:
            raise ValueError("k, max_tokens and batch_problems must be >= 1")
        if self.temperature is None:
            self.temperature = 0.0 if self.k == 1 else 1.0
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


def accuracy_stats(per_problem: list[float]) -> dict:
    """{"mean_accuracy", "stderr"} in percent from per-problem accuracies in [0, 1]."""
    n = len(per_problem)
    if not n:
        raise ValueError("accuracy needs at least one problem")
    mean = sum(per_problem) / n
    if n == 1:
        return {"mean_accuracy": 100 * mean, "stderr": None}
    var = sum((x - mean) ** 2 for x in per_problem) / (n - 1)
    return {"mean_accuracy": 100 * mean, "stderr": 100 * math.sqrt(var / n)}


def problem_records(samples_path: Path, k: int) -> list[dict]:
    """One record per problem (in the order first seen) from the sample records."""
    groups: dict[str, list[dict]] = {}
    for _, s in iter_jsonl(samples_path):
        groups.setdefault(s["problem_id"], []).append(s)
    out = []
    for pid, ss in groups.items():
        correct = sum(bool(s["correct"]) for s in ss)
        out.append({"problem_id": pid, "k": len(ss), "correct": correct, "accuracy": correct / len(ss),
                    "unparsed": sum(s.get("answer_status") == "unparsed" for s in ss)})
    wrong = [r for r in out if r["k"] != k]
    if wrong:   # the sample stage writes k per problem: the file was changed by hand, or ids repeat
        raise StepwiserError(f"{samples_path}: problem {wrong[0]['problem_id']!r} has {wrong[0]['k']} samples, "
                             f"expected k = {k} ({len(wrong)} such problem(s)); rerun into a new --out")
    return out


def run_accuracy(cfg: AccuracyConfig, engine, overwrite: bool = False, progress: bool | None = None) -> dict:
    """Sample (resumable), then write problems.jsonl and summary.json; returns the summary."""
    from stepwiser.stages.sample import SampleConfig, run_sample

    out = Path(cfg.out)
    samples = out / "samples.jsonl"
    scfg = SampleConfig(policy=cfg.policy, problems=cfg.problems, out=str(samples), n=cfg.k,
                        temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed,
                        engine=cfg.engine, batch_problems=cfg.batch_problems, limit=cfg.limit)
    t0 = time.time()
    run_sample(scfg, engine, overwrite=overwrite, progress=progress)
    recs = problem_records(samples, cfg.k)
    write_jsonl(out / "problems.jsonl", recs)
    stats = accuracy_stats([r["accuracy"] for r in recs])
    summary = {"problems": len(recs), "k": cfg.k, "samples": sum(r["k"] for r in recs),
               "mean_accuracy": round(stats["mean_accuracy"], 2),
               "stderr": None if stats["stderr"] is None else round(stats["stderr"], 2),
               "unparsed": sum(r["unparsed"] for r in recs),
               "meta": {**asdict(cfg), "metric": "greedy" if cfg.k == 1 and cfg.temperature == 0 else f"Avg@{cfg.k}",
                        "time": datetime.now(UTC).isoformat(timespec="seconds"),
                        "seconds_this_run": round(time.time() - t0, 1)}}
    write_json(out / "summary.json", summary)
    return summary
