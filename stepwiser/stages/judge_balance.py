"""Balancing judge examples by class and by chunk position, and the position-only baseline (`judge-data`).

A weak policy errs early and the chunks after its first error are often dropped or labelled Negative, so the
label correlates with ``chunk_index``: a judge can score above chance by reading the position alone
("late chunk = Negative"). `balance_by_position` removes the shortcut from the training split: within each
chunk index, the majority class is down-sampled to the minority's size (seeded, file order kept); a chunk
index with one class only is dropped whole. `position_baseline` measures the shortcut: the balanced accuracy
on validation of a predictor that knows the chunk index only (majority label per index learned on train; a
tie, or an index unseen in train, predicts the train split's majority, a tie there Negative).
"""
from __future__ import annotations

import random
from collections import defaultdict

from stepwiser.errors import StepwiserError
from stepwiser.io.records import JudgeExample

BALANCE_BY = ("class", "class_position")


def balance(examples: list[JudgeExample], seed: int) -> list[JudgeExample]:
    """Down-sample the majority class to the minority's size (seeded); file order is kept.

    Raises StepwiserError when one class is absent (a 50/50 balance is impossible)."""
    pos = [i for i, e in enumerate(examples) if e.label == 1]
    neg = [i for i, e in enumerate(examples) if e.label == 0]
    if not pos or not neg:
        raise StepwiserError(f"the training labels have one class only ({len(pos)} positive, {len(neg)} "
                             f"negative): balancing to 50/50 is impossible; use --no-balance, another "
                             f"--label, or more annotations")
    small, big = (pos, neg) if len(pos) <= len(neg) else (neg, pos)
    kept = set(small) | set(random.Random(f"judge-data-balance:{seed}").sample(big, len(small)))
    return [e for i, e in enumerate(examples) if i in kept]


def position_counts(examples: list[JudgeExample]) -> dict[int, dict]:
    """chunk_index -> {"positive": P, "negative": N}, in index order."""
    out: dict[int, dict] = {}
    for e in examples:
        c = out.setdefault(e.chunk_index, {"positive": 0, "negative": 0})
        c["positive" if e.label == 1 else "negative"] += 1
    return dict(sorted(out.items()))


def balance_by_position(examples: list[JudgeExample], seed: int) -> tuple[list[JudgeExample], dict]:
    """Equal positives and negatives within every chunk index (seeded down-sampling, file order kept).

    Returns the kept examples and a report: per chunk index the counts before, and the examples kept
    (``kept`` = 2 x the minority count; 0 for an index with one class only, which is dropped)."""
    groups: dict[int, dict[int, list[int]]] = defaultdict(lambda: {0: [], 1: []})
    for i, e in enumerate(examples):
        groups[e.chunk_index][e.label].append(i)
    rng = random.Random(f"judge-data-balance-position:{seed}")
    kept: set[int] = set()
    report = {}
    for index in sorted(groups):
        pos, neg = groups[index][1], groups[index][0]
        n = min(len(pos), len(neg))
        kept |= set(rng.sample(pos, n)) | set(rng.sample(neg, n))
        report[index] = {"positive": len(pos), "negative": len(neg), "kept": 2 * n}
    if not kept:
        raise StepwiserError(f"no chunk index has both classes among the {len(examples)} training examples: "
                             "balancing by class and position is impossible; use --balance-by class")
    return [e for i, e in enumerate(examples) if i in kept], report


def _majority(pos: int, neg: int, default: int) -> int:
    return 1 if pos > neg else 0 if neg > pos else default


def position_predictor(train: list[JudgeExample]) -> tuple[dict[int, int], int]:
    """The position-only predictor learned on `train`: chunk_index -> label, and the label for the rest."""
    pos = sum(e.label for e in train)
    fallback = _majority(pos, len(train) - pos, 0)
    return {i: _majority(c["positive"], c["negative"], fallback)
            for i, c in position_counts(train).items()}, fallback


def position_baseline(train: list[JudgeExample], val: list[JudgeExample]) -> dict | None:
    """Balanced accuracy (mean of the per-class recalls present) on `val` of the position-only predictor
    learned on `train`; None without validation examples."""
    if not val or not train:
        return None
    table, fallback = position_predictor(train)
    recalls = []
    for cls in (1, 0):
        idx = [e for e in val if e.label == cls]
        if idx:
            recalls.append(sum(table.get(e.chunk_index, fallback) == cls for e in idx) / len(idx))
    return {"val_balanced_accuracy": round(sum(recalls) / len(recalls), 4),
            "predicts": {str(i): y for i, y in table.items()}, "otherwise": fallback}
