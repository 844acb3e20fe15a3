"""Stage `relabel` (`stepwiser annotate --relabel FILE`): new labels for an annotation file, no new rollouts.

Labels are recomputed for new gamma/alpha/n (or label types) from the stored successes and rollouts;
refused for files annotated with early stopping, whose Q estimates are biased (only their labels, for
their own parameters, are exact). This is how gamma and alpha are searched. Shards are joined by the
stage `merge` (stepwiser.stages.merge).
"""
from __future__ import annotations

from pathlib import Path

from stepwiser.core.labels import LABEL_TYPES, check_method, label_chunks
from stepwiser.errors import StepwiserError
from stepwiser.io.records import Annotation, JsonlWriter, read_records, sample_key


def q_from_counts(a: Annotation) -> list[float]:
    if not a.q0.get("rollouts"):
        raise StepwiserError(f"{a.key}: Q_0 has no rollouts; cannot relabel")
    if any(m == 0 for m in a.rollouts[:-1]):
        raise StepwiserError(f"{a.key}: a chunk has no rollouts; cannot relabel")
    return ([a.q0["successes"] / a.q0["rollouts"]] + [k / m for k, m in zip(a.successes[:-1], a.rollouts[:-1])]
            + [float(bool(a.correct))])


def relabel(inp: str, out: str, labels=LABEL_TYPES, gamma: float = 0.8, alpha: float = 0.4, n: int = 4) -> dict:
    """Write `out` with labels recomputed from counts; returns the new positive shares (%)."""
    for t in labels:
        check_method(t)
    if Path(out).exists():
        raise StepwiserError(f"{out} exists; choose a new output for relabelled annotations")
    rows = read_records(inp, Annotation)
    for a in rows:
        mode = (a.early_stop or {}).get("mode", "off")
        if mode != "off":
            raise StepwiserError(f"{inp}: {a.key} was annotated with --early-stop {mode}; its Q estimates are "
                                 "biased, so relabelling is refused. Annotate with --early-stop off to search "
                                 "gamma/alpha.")
    pos = {t: [0, 0] for t in labels}
    with JsonlWriter(out, sample_key) as w:
        for a in rows:
            q = q_from_counts(a)
            a.q = q
            a.labels = {t: (label_chunks(q, t, gamma, alpha, n) if t in labels else None) for t in LABEL_TYPES}
            a.label_params = {"gamma": gamma, "alpha": alpha, "n": n}
            for t in labels:
                pos[t][0] += sum(a.labels[t])
                pos[t][1] += len(a.labels[t])
            w.write(a)
    return {"annotations": len(rows), "positive_pct": {t: round(100 * p / max(c, 1), 1) for t, (p, c) in pos.items()}}
