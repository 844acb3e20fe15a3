"""A micro ProcessBench from the policy's own solutions (the analogue of ProcessBench's model-written
solutions with expert-labelled first errors).

Each item is one sampled solution of a held-out micro problem: its chunks are the steps, and the label
is the index of the first chunk that the exact arithmetic oracle (`first_divergent_chunk`, the reference
judge's) finds wrong, or -1 when every chunk checks AND the final answer is right. A solution whose
chunks all check but whose answer is wrong (or missing) has no step-level label (the oracle cannot place
the error): it is skipped and counted, as are solutions without chunks and duplicate responses.
Items are split into `dev` and `test` by problem (no problem in both), at most `per_problem` items per
problem, clean and erroneous items in the proportion `clean_share` (as far as the samples allow).
The file format is the synthetic bench's (ProcessBench fields + `error_kind`, `reference`), so the same
evaluator and floors apply.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from stepwiser.data.synth import first_divergent_chunk
from stepwiser.errors import StepwiserError
from stepwiser.io.records import Problem, Sample


@dataclass
class PolicyBenchStats:
    samples: int = 0
    skipped: Counter = field(default_factory=Counter)   # reason -> count
    candidates: dict = field(default_factory=lambda: {"clean": 0, "erroneous": 0})
    error_kinds: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"samples": self.samples, "skipped": dict(self.skipped), "candidates": dict(self.candidates),
                "error_kinds": dict(self.error_kinds)}


def label_sample(sample: Sample, problem: Problem) -> tuple[int | None, str]:
    """(label, error kind) of one sampled solution: the first chunk the oracle finds wrong, -1 when all
    chunks check and the answer is right, None (kind = the reason) when no step label exists."""
    if not sample.chunks:
        return None, "no_chunks"
    first, kind = first_divergent_chunk(list(sample.chunks), problem)
    if first is not None:
        return first, kind
    if not sample.correct:
        return None, "wrong_answer_without_step_error"
    return -1, "none"


def bench_item(sample: Sample, problem: Problem, label: int, kind: str) -> dict:
    steps = problem.extra.get("steps") or []
    return {"id": f"policy-{sample.problem_id}-{sample.sample_id}", "generator": sample.sampling.get("model", ""),
            "problem": problem.problem, "steps": list(sample.chunks), "final_answer_correct": bool(sample.correct),
            "label": label, "error_kind": kind, "scenario": problem.extra.get("scenario"),
            "problem_id": sample.problem_id, "sample_id": sample.sample_id,
            "reference": {"answer": problem.answer, "steps": steps}}


def candidates(samples: list[Sample], problems: dict[str, Problem], stats: PolicyBenchStats) -> dict:
    """{problem_id: {"clean": [items], "erroneous": [items]}}, duplicates and unlabelled solutions counted."""
    out: dict[str, dict[str, list]] = {}
    seen = set()
    for s in samples:
        stats.samples += 1
        p = problems.get(s.problem_id)
        if p is None:
            stats.skipped["unknown_problem"] += 1
            continue
        if (s.problem_id, s.response) in seen:
            stats.skipped["duplicate_response"] += 1
            continue
        seen.add((s.problem_id, s.response))
        label, kind = label_sample(s, p)
        if label is None:
            stats.skipped[kind] += 1
            continue
        cls = "clean" if label == -1 else "erroneous"
        stats.candidates[cls] += 1
        out.setdefault(s.problem_id, {"clean": [], "erroneous": []})[cls].append(bench_item(s, p, label, kind))
    return out


def pick(pool: dict, pids: list[str], n: int, clean_share: float, per_problem: int,
         rng: random.Random) -> list[dict]:
    """`n` items from the problems `pids`: round(n * clean_share) clean ones (fewer if not available;
    erroneous ones fill up), at most `per_problem` per problem, in problem order."""
    want_clean = round(n * clean_share)
    clean, erroneous = [], []
    for pid in pids:
        c, e = list(pool[pid]["clean"]), list(pool[pid]["erroneous"])
        rng.shuffle(c)
        rng.shuffle(e)
        clean.append(c)
        erroneous.append(e)
    taken = [0] * len(pids)
    chosen: list[tuple[int, dict]] = []

    def draw(lists, k):
        got = 0
        while got < k:
            progress = False
            for i, lst in enumerate(lists):
                if got < k and lst and taken[i] < per_problem:
                    chosen.append((i, lst.pop()))
                    taken[i] += 1
                    got += 1
                    progress = True
            if not progress:
                break
        return got

    got_clean = draw(clean, want_clean)
    draw(erroneous, n - got_clean)
    draw(clean, n - len(chosen))   # not enough erroneous ones: clean ones fill up
    chosen.sort(key=lambda t: (t[0], t[1]["sample_id"]))
    return [it for _, it in chosen]


def build_policy_bench(samples: list[Sample], problems: list[Problem], n_test: int, n_dev: int, *,
                       seed: int = 0, clean_share: float = 0.5, per_problem: int = 1):
    """(test, dev, stats): see the module doc. Raises StepwiserError when no sample gives an item."""
    if not 0.0 <= clean_share <= 1.0:
        raise ValueError(f"clean_share must be in [0, 1], got {clean_share}")
    if n_test < 1 or n_dev < 0 or per_problem < 1:
        raise ValueError("n_test and per_problem must be >= 1, n_dev >= 0")
    by_id = {p.id: p for p in problems}
    stats = PolicyBenchStats()
    pool = candidates(samples, by_id, stats)
    if not pool:
        raise StepwiserError(f"no bench item from {stats.samples} samples (skipped: {dict(stats.skipped)}); "
                             "are the samples from these problems, with chunks?")
    pids = sorted(pool)
    rng = random.Random(f"policy-bench:{seed}")
    rng.shuffle(pids)
    cut = round(len(pids) * n_dev / (n_dev + n_test)) if n_dev else 0
    dev = pick(pool, sorted(pids[:cut]), n_dev, clean_share, per_problem, rng) if n_dev else []
    test = pick(pool, sorted(pids[cut:]), n_test, clean_share, per_problem, rng)
    for it in test + dev:
        stats.error_kinds[it["error_kind"]] += 1
    return test, dev, stats
