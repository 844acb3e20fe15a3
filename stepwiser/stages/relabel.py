"""Re-labelling and shard merging for annotation files (no new rollouts).

`relabel`: recompute labels for new gamma/alpha/n (or label types) from the stored successes and
rollouts; refused for files annotated with early stopping, whose Q estimates are biased (only
their labels, for their own parameters, are exact). This is how gamma and alpha are searched.

`merge`: join the shards written with `--shard i/n`; every key must appear exactly once, and every
sample with chunks must be present unless the shards' manifests record it as skipped.
"""
from __future__ import annotations

import json
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.core.labels import LABEL_TYPES, check_method, label_chunks
from stepwiser.io.records import Annotation, JsonlWriter, Sample, iter_jsonl, manifest_path, parse_record, read_records
from stepwiser.io.records import sample_key


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


def merge(shards: list[str], out: str, samples: str | None = None) -> dict:
    """Join shard files into `out`; error on duplicates, and on missing samples not explained by skips."""
    if Path(out).exists():
        raise StepwiserError(f"{out} exists; choose a new output for the merged file")
    seen: dict[str, str] = {}
    skipped = 0
    with JsonlWriter(out, sample_key) as w:
        for path in shards:
            m = manifest_path(path)
            if m.exists():
                data = json.loads(m.read_text())
                if not data.get("complete"):
                    raise StepwiserError(f"{path}: this shard's run is not complete (its manifest says so)")
                skipped += sum((data.get("summary") or {}).get("skipped", {}).values())
            for lineno, obj in iter_jsonl(path):
                a = parse_record(Annotation, obj, f"{path}:{lineno}")
                if a.key in seen:
                    raise StepwiserError(f"{a.key} appears in both {seen[a.key]} and {path}")
                seen[a.key] = path
                w.write(obj)
    summary = {"shards": len(shards), "annotations": len(seen)}
    if samples:
        expected = {s.key for s in read_records(samples, Sample)}
        extra = sorted(set(seen) - expected)
        if extra:
            raise StepwiserError(f"{len(extra)} annotations are not in {samples} (e.g. {extra[0]})")
        missing = sorted(expected - set(seen))
        if len(missing) > skipped:
            Path(out).unlink()
            raise StepwiserError(f"{len(missing)} samples of {samples} are missing from the shards and only "
                                 f"{skipped} were skipped by them (e.g. {missing[0]}); run the missing shard(s)")
        summary["missing_explained_by_skips"] = len(missing)
    return summary
