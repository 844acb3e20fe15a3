"""ProcessBench scores (docs/METHOD.md 2.4, contract C4): pure functions, percentages.

Per subset: ``error_acc`` = share of items with label != -1 whose prediction is exactly the label,
``correct_acc`` = share of items with label == -1 predicted -1, ``f1`` = 2ab / (a + b) (0 when
a + b = 0). A null prediction (the judge's output could not be parsed, or a missing prediction) is
wrong. **(our convention)** a subset without error items has error_acc 0 (likewise correct_acc), so
its F1 is 0: such a subset cannot show that a judge finds errors (or accepts correct solutions). The
reported score is the unweighted mean of the subset F1s.

Intervals: a percentile bootstrap. Each replicate resamples the items of every subset with
replacement (within the subset, so subset sizes are kept) and recomputes each F1 and their mean;
the interval is the 2.5th and 97.5th percentile of the replicates. Each subset's draws come from a
generator seeded by (seed, subset name), so a subset's interval does not depend on which other
subsets are evaluated with it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

DEFAULT_RESAMPLES = 1000


def f1_score(a: float, b: float) -> float:
    """Harmonic mean 2ab / (a + b) of two accuracies; 0 when both are 0."""
    return 2 * a * b / (a + b) if a + b else 0.0


def _check(labels: Sequence[int], predictions: Sequence[int | None]) -> None:
    if len(labels) != len(predictions):
        raise ValueError(f"need one prediction per label, got {len(predictions)} for {len(labels)}")


def processbench_f1(labels: Sequence[int], predictions: Sequence[int | None]) -> dict:
    """{"error_acc", "correct_acc", "f1"} in percent for one subset (the official definition)."""
    _check(labels, predictions)
    err = [p == y for y, p in zip(labels, predictions) if y != -1]
    ok = [p == y for y, p in zip(labels, predictions) if y == -1]
    a = 100.0 * sum(err) / len(err) if err else 0.0
    b = 100.0 * sum(ok) / len(ok) if ok else 0.0
    return {"error_acc": a, "correct_acc": b, "f1": f1_score(a, b)}


def subset_scores(labels: Sequence[int], predictions: Sequence[int | None]) -> dict:
    """`processbench_f1` plus n, the error/correct item counts and the null predictions (unparsed)."""
    scores = processbench_f1(labels, predictions)
    n_error = sum(y != -1 for y in labels)
    return {"n": len(labels), "n_error": n_error, "n_correct": len(labels) - n_error, **scores,
            "unparsed": sum(p is None for p in predictions)}


def bootstrap_f1(labels: Sequence[int], predictions: Sequence[int | None], resamples: int = DEFAULT_RESAMPLES,
                 seed: int | str = 0):
    """F1 (percent) of `resamples` bootstrap replicates of one subset, as a numpy array."""
    import numpy as np

    _check(labels, predictions)
    if resamples < 1 or not labels:
        raise ValueError("bootstrap needs at least one resample and one item")
    is_err = np.array([y != -1 for y in labels])
    right = np.array([p == y for y, p in zip(labels, predictions)])
    idx = resample_indices(len(labels), resamples, seed)
    err, hit = is_err[idx], right[idx]
    n_err, n_ok = err.sum(1), (~err).sum(1)
    a = np.where(n_err > 0, 100.0 * (hit & err).sum(1) / np.maximum(n_err, 1), 0.0)
    b = np.where(n_ok > 0, 100.0 * (hit & ~err).sum(1) / np.maximum(n_ok, 1), 0.0)
    return np.where(a + b > 0, 2 * a * b / np.where(a + b > 0, a + b, 1.0), 0.0)


def resample_indices(n: int, resamples: int, seed: int | str):
    """The bootstrap draws: a (resamples, n) array of item indices, from a generator seeded by `seed`."""
    import numpy as np

    return np.random.default_rng(_seed_int(seed)).integers(0, n, size=(resamples, n))


def percentile_interval(replicates, level: float = 0.95) -> list[float]:
    """[lo, hi]: the central `level` percentile interval of bootstrap replicates."""
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.asarray(replicates, dtype=float), [tail, 100 - tail])
    return [float(lo), float(hi)]


def _seed_int(seed: int | str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "little")


def summarize(subsets: Mapping[str, tuple[Sequence[int], Sequence[int | None]]],
              resamples: int = DEFAULT_RESAMPLES, seed: int = 0, digits: int | None = 2) -> dict:
    """The scores part of summary.json (C4) from {subset: (labels, predictions)}.

    {"subsets": {name: {n, n_error, n_correct, error_acc, correct_acc, f1, unparsed, f1_ci}},
     "average_f1", "average_f1_ci"}; intervals are null when `resamples` is 0. Percentages are
    rounded to `digits` (None: not rounded)."""
    if not subsets:
        raise ValueError("summarize needs at least one subset")
    rnd = (lambda x: x) if digits is None else (lambda x: round(x, digits))
    out, reps = {}, []
    for name, (labels, predictions) in subsets.items():
        s = subset_scores(labels, predictions)
        for k in ("error_acc", "correct_acc", "f1"):
            s[k] = rnd(s[k])
        s["f1_ci"] = None
        if resamples:
            reps.append(bootstrap_f1(labels, predictions, resamples, f"{seed}:{name}"))
            s["f1_ci"] = [rnd(x) for x in percentile_interval(reps[-1])]
        out[name] = s
    average = sum(processbench_f1(*v)["f1"] for v in subsets.values()) / len(subsets)
    ci = None
    if resamples:
        ci = [rnd(x) for x in percentile_interval(sum(reps) / len(reps))]
    return {"subsets": out, "average_f1": rnd(average), "average_f1_ci": ci}


def verdict_metrics(labels: list[int], verdicts: list[int | None]) -> dict:
    """Balanced accuracy, per-class recall, accuracy and unparsed share of verdicts against labels
    (an unparsed verdict counts as wrong; a class absent from `labels` has no recall)."""
    if len(labels) != len(verdicts) or not labels:
        raise ValueError("need as many verdicts as labels, at least one")
    out = {"n": len(labels), "accuracy": sum(v == y for v, y in zip(verdicts, labels)) / len(labels),
           "unparsed": sum(v is None for v in verdicts) / len(labels)}
    recalls = []
    for cls, name in ((1, "recall_positive"), (0, "recall_negative")):
        idx = [i for i, y in enumerate(labels) if y == cls]
        if idx:
            out[name] = sum(verdicts[i] == cls for i in idx) / len(idx)
            recalls.append(out[name])
    out["balanced_accuracy"] = sum(recalls) / len(recalls)
    return out


def balanced_accuracy(labels, verdicts) -> float:
    """`verdict_metrics`' balanced accuracy alone."""
    return verdict_metrics(list(labels), list(verdicts))["balanced_accuracy"]


def paired_difference(groups, labels, verdicts_a, verdicts_b, resamples: int = 2000, seed: int | str = 0) -> dict:
    """Judge A minus judge B in balanced accuracy on the SAME items, with a paired percentile bootstrap that
    resamples groups (problems: the chunks of one solution are not independent). Returns {diff, ci, p}
    where p is the one-sided bootstrap share of replicates with a difference <= 0 (small: A is better),
    all in percentage points except p."""
    if not len(groups) == len(labels) == len(verdicts_a) == len(verdicts_b):
        raise ValueError("groups, labels and both verdict lists must have the same length")
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    diff = balanced_accuracy(labels, verdicts_a) - balanced_accuracy(labels, verdicts_b)
    reps = []
    for draw in resample_indices(len(keys), resamples, f"paired:{seed}"):
        idx = [i for k in draw for i in members[keys[k]]]
        y = [labels[i] for i in idx]
        if len(set(y)) < 2:
            continue
        reps.append(balanced_accuracy(y, [verdicts_a[i] for i in idx])
                    - balanced_accuracy(y, [verdicts_b[i] for i in idx]))
    lo, hi = percentile_interval(reps) if reps else (float("nan"), float("nan"))
    p = sum(r <= 0 for r in reps) / len(reps) if reps else float("nan")
    return {"diff": round(100 * diff, 2), "ci": [round(100 * lo, 2), round(100 * hi, 2)], "p": round(p, 4),
            "n": len(labels), "groups": len(keys)}


def best_threshold(labels, scores) -> tuple[float, float]:
    """(threshold, balanced accuracy): the cut "Positive when score >= threshold" with the highest balanced
    accuracy of `scores` against 0/1 `labels` (both classes needed). Candidates: 0.5 and every midpoint
    between two consecutive distinct scores; ties go to the candidate nearest 0.5, then the lower one.
    Chosen on a dev split, it turns a judge whose verdicts lean to one class into one whose scores decide."""
    import numpy as np

    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    if len(y) != len(s) or set(y.tolist()) != {0, 1}:
        raise ValueError("need one score per label and both classes among the labels")
    distinct = np.unique(s)
    cands = np.unique(np.concatenate([[0.5], (distinct[1:] + distinct[:-1]) / 2.0]))
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    below_pos = np.searchsorted(pos, cands, side="left")     # per cut: Positives scored below it (missed)
    below_neg = np.searchsorted(neg, cands, side="left")     # Negatives scored below it (right)
    bacc = ((len(pos) - below_pos) / len(pos) + below_neg / len(neg)) / 2.0
    order = np.lexsort((cands, np.abs(cands - 0.5), -bacc))   # the last key sorts first
    return float(cands[order[0]]), float(bacc[order[0]])


def auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve of chunk scores against 0/1 labels, in percent (Mann-Whitney: the chance
    that a random Positive-labelled chunk scores above a random Negative one, ties count half).
    Threshold-free: a judge whose verdicts are all one class can still rank chunks. Both classes needed."""
    import numpy as np

    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("AUROC needs both classes among the labels")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]   # 1-based, ties get their average rank
    return float(100.0 * (ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))
