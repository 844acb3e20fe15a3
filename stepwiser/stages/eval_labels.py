"""Stage `eval labels`: any step judge against held-out Monte Carlo labels (a `judge-data` split).

Every C2 judge example (problem, history, chunk, label) of the split is judged once with k = `maj`
samples (greedy for k = 1, temperature 1.0 above; see `GenerativeJudge.judge`); the verdict is the
majority of the parsed samples (a tie is Negative, all unparsed -> null, counted as wrong), or
P(+) >= threshold for a discriminative judge.

Outputs in the folder `out`: ``judgments.jsonl``, one record per example keyed by the example key,
appended as batches finish; ``manifest.json`` (C7: the same config resumes, another is refused);
``summary.json``, written atomically once every example has its record. For a generative judge the
summary's ``analysis`` says how often its analysis' own recomputation is right and how often its verdict
agrees with it (`stepwiser.judges.analysis_stats`; a rerun on a finished output adds it).

Scores (`label_scores`, percentages): balanced accuracy = mean of the recalls of the two classes,
per-class recall, accuracy, unparsed share. Intervals: a percentile bootstrap that resamples
PROBLEMS with replacement (all examples of a drawn problem come together: chunks of one solution are
not independent), seeded. A replicate that happens to draw no example of a class has no recall for it:
its balanced accuracy is the other class's recall (as `verdict_metrics` defines it), and it is left
out of that class's recall interval. References: always-Positive and always-Negative judges score a
balanced accuracy of exactly 50. `auroc`: the threshold-free ranking quality of the chunk scores (share
of Positive samples with `maj` > 1, P(+) for a discriminative judge), with the same problem bootstrap.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.judges.analysis_stats import analysis_stats, record_pairs
from stepwiser.judges.load import JUDGE_KINDS, THRESHOLD_HELP, reading_or_none
from stepwiser.io.config import option
from stepwiser.io.records import JsonlWriter, RunManifest, iter_jsonl, write_json
from stepwiser.core.metrics import DEFAULT_RESAMPLES, auroc, percentile_interval, resample_indices

STAGE = "eval-labels"
OUTPUT = "judgments"
RATES = ("balanced_accuracy", "recall_positive", "recall_negative", "accuracy")


@dataclass
class LabelsEvalConfig:
    judge: str = option(help="Step judge: a trained judge folder or any chat model.")
    data: str = option(help="A judge-data output folder (its <split>.jsonl) or a JSONL file of judge examples.",
                       path="any")
    out: str = option(help="Output folder.", short="-o")
    split: str = option("val", "The split file read from a judge-data folder.")
    maj: int = option(1, "Samples per example: greedy for 1, temperature 1.0 above; the majority decides "
                         "(tie: Negative).")
    max_tokens: int = option(1024, "Most tokens per judgment.")
    threshold: float | None = option(None, THRESHOLD_HELP)
    judge_kind: str = option("auto", "Judge kind (auto: from the judge folder's stepwiser_judge.json).",
                             choices=JUDGE_KINDS)
    cot: bool | None = option(None, "Generative judge: with or without analysis (default: as trained).")
    limit: int | None = option(None, "Only the first N examples (file order).")
    bootstrap: int = option(DEFAULT_RESAMPLES, "Bootstrap resamples (of problems) for the 95% intervals (0: none).")
    seed: int = option(0, "Seed of the sampling and of the bootstrap.")
    engine: str = option("hf", "Generation backend (set by --engine).", cli=False)
    batch_items: int = option(256, "Examples per judging call.")

    VOLATILE = ("batch_items",)

    def __post_init__(self):
        if self.maj < 1 or self.max_tokens < 1 or self.batch_items < 1:
            raise ValueError("maj, max_tokens and batch_items must be >= 1")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.judge_kind not in JUDGE_KINDS:
            raise ValueError(f"judge_kind must be one of {', '.join(JUDGE_KINDS)}, got {self.judge_kind!r}")


# --------------------------------------------------------------------------- scores (pure)

def _class_counts(problem_ids: Sequence[str], labels: Sequence[int], verdicts: Sequence[int | None]):
    """Per problem (first-appearance order): counts of [positives, positives right, negatives, negatives right]."""
    import numpy as np

    index: dict[str, int] = {}
    rows: list[list[int]] = []
    for p, y, v in zip(problem_ids, labels, verdicts):
        if p not in index:
            index[p] = len(rows)
            rows.append([0, 0, 0, 0])
        r = rows[index[p]]
        c = 0 if y == 1 else 2
        r[c] += 1
        r[c + 1] += int(v == y)
    return np.array(rows, dtype=float)


def _replicates(counts, resamples: int, seed: int | str) -> dict:
    """Bootstrap replicates (percent) of the four rates, resampling problems (rows of `counts`)."""
    import numpy as np

    idx = resample_indices(len(counts), resamples, seed)
    pos, pos_hit, neg, neg_hit = (counts[:, j][idx].sum(1) for j in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        rec_pos = np.where(pos > 0, 100.0 * pos_hit / pos, np.nan)
        rec_neg = np.where(neg > 0, 100.0 * neg_hit / neg, np.nan)
    bacc = np.nanmean(np.stack([rec_pos, rec_neg]), axis=0)   # both absent cannot happen: n >= 1 per problem
    acc = 100.0 * (pos_hit + neg_hit) / (pos + neg)
    return {"balanced_accuracy": bacc, "recall_positive": rec_pos[~np.isnan(rec_pos)],
            "recall_negative": rec_neg[~np.isnan(rec_neg)], "accuracy": acc}


def label_scores(problem_ids: Sequence[str], labels: Sequence[int], verdicts: Sequence[int | None],
                 resamples: int = DEFAULT_RESAMPLES, seed: int | str = 0, digits: int | None = 2) -> dict:
    """Scores of verdicts (1, 0 or None = unparsed, wrong) against 0/1 labels, in percent.

    {n, n_problems, positives, balanced_accuracy, recall_positive, recall_negative, accuracy, unparsed,
    <rate>_ci for the four rates ([lo, hi], problems resampled; null when `resamples` is 0),
    references: {always_positive, always_negative} balanced accuracy}. Both classes must be present."""
    from stepwiser.train.judge_metrics import verdict_metrics

    if not len(problem_ids) == len(labels) == len(verdicts):
        raise ValueError(f"need one problem id and one verdict per label, got {len(problem_ids)} ids and "
                         f"{len(verdicts)} verdicts for {len(labels)} labels")
    if any(y not in (0, 1) for y in labels) or any(v not in (0, 1, None) for v in verdicts):
        raise ValueError("labels must be 0 or 1 and verdicts 0, 1 or None")
    if set(labels) != {0, 1}:
        raise ValueError("balanced accuracy needs both classes among the labels, got "
                         f"{'only ' + str(labels[0]) if labels else 'no labels'}")
    rnd = (lambda x: x) if digits is None else (lambda x: round(x, digits))
    m = verdict_metrics(list(labels), list(verdicts))
    out = {"n": len(labels), "n_problems": len(set(problem_ids)), "positives": rnd(100.0 * sum(labels) / len(labels))}
    out.update({k: rnd(100.0 * m[k]) for k in (*RATES, "unparsed")})
    reps = _replicates(_class_counts(problem_ids, labels, verdicts), resamples, seed) if resamples else None
    for k in RATES:   # null without resamples (or, for a recall, when no replicate drew its class)
        ok = reps is not None and len(reps[k]) > 0
        out[f"{k}_ci"] = [rnd(x) for x in percentile_interval(reps[k])] if ok else None
    out["references"] = {
        name: rnd(100.0 * verdict_metrics(list(labels), [v] * len(labels))["balanced_accuracy"])
        for name, v in (("always_positive", 1), ("always_negative", 0))}
    return out


def auroc_interval(problem_ids: Sequence[str], labels: Sequence[int], scores: Sequence[float],
                   resamples: int = DEFAULT_RESAMPLES, seed: int | str = 0) -> list[float]:
    """Percentile bootstrap 95% interval of `auroc`, resampling problems; replicates without both classes
    are left out."""
    import numpy as np

    groups: dict[str, list[int]] = {}
    for i, p in enumerate(problem_ids):
        groups.setdefault(p, []).append(i)
    members = list(groups.values())
    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    reps = []
    for draw in resample_indices(len(members), resamples, f"auroc:{seed}"):
        idx = np.concatenate([members[j] for j in draw])
        if 0 < y[idx].sum() < len(idx):
            reps.append(auroc(y[idx], s[idx]))
    return percentile_interval(np.array(reps))


# --------------------------------------------------------------------------- data

def load_examples(data: str, split: str = "val", limit: int | None = None):
    """(file, examples): the C2 judge examples of a judge-data folder's `<split>.jsonl` or of a JSONL file,
    the first `limit` of them; errors name the file (malformed lines: file and line)."""
    from stepwiser.data.judge_examples import data_file, load_judge_examples

    path = data_file(data, split)
    examples = load_judge_examples(path)[:limit]
    seen: set[str] = set()
    for e in examples:
        if e.key in seen:
            raise StepwiserError(f"{path}: duplicate example key {e.key!r}")
        seen.add(e.key)
    present = {e.label for e in examples}
    if present != {0, 1}:
        cut = f" (the first {limit})" if limit else ""
        raise StepwiserError(f"{path}: all {len(examples)} examples{cut} have label {present.pop()}; balanced "
                             "accuracy needs both classes (Positive and Negative) in the data")
    return path, examples


# --------------------------------------------------------------------------- the stage

def _record(example, judgment) -> dict:
    """One judgments.jsonl record: the example's key and label, the verdict and the judge's samples."""
    k = max(len(judgment.verdicts), 1)
    return {"key": example.key, "problem_id": example.problem_id, "label": example.label,
            "verdict": judgment.verdict, "score": judgment.score, "verdicts": judgment.verdicts,
            "completion_tokens": judgment.tokens / k,
            "analyses": None if judgment.scores else judgment.texts}


def _judge_all(cfg: LabelsEvalConfig, todo: list, total: int, judge, writer: JsonlWriter, progress) -> None:
    """Judge `todo` in batches of `cfg.batch_items` and append a record per example as batches finish."""
    from stepwiser.judges.base import JudgeItem
    from stepwiser.io.progress import StageProgress
    from stepwiser.judges.base import resolve_lazy

    with StageProgress("eval labels", total, "examples", rates=("tokens",), enabled=progress) as bar:
        bar.advance(total - len(todo))
        if not todo:
            return
        judge = resolve_lazy(judge, "judge")
        for s in range(0, len(todo), cfg.batch_items):
            batch = todo[s:s + cfg.batch_items]
            outs = judge.judge([JudgeItem(e.problem, list(e.history), e.chunk) for e in batch], cfg.maj)
            if len(outs) != len(batch):
                raise StepwiserError(f"the judge returned {len(outs)} judgments for {len(batch)} examples")
            for e, j in zip(batch, outs):
                writer.write(_record(e, j))
            bar.advance(len(batch), tokens=sum(j.tokens for j in outs))


def run_labels(cfg: LabelsEvalConfig, judge=None, overwrite: bool = False, progress: bool | None = None) -> dict:
    """Run the stage (see the module doc); returns the summary (also written to `out/summary.json`).

    `judge`: a StepJudge or a zero-argument factory of one, called only if some example still needs judging."""
    from stepwiser.io.records import refuse_stale_outputs

    path, examples = load_examples(cfg.data, cfg.split, cfg.limit)
    out = Path(cfg.out)
    refuse_stale_outputs(out, [OUTPUT], overwrite)
    manifest = RunManifest.open(out, STAGE, dataclasses.asdict(cfg), [path], overwrite=overwrite,
                                volatile=LabelsEvalConfig.VOLATILE)
    t0 = time.time()
    with JsonlWriter(out / f"{OUTPUT}.jsonl", lambda r: str(r["key"])) as writer:
        todo = [e for e in examples if e.key not in writer]
        _judge_all(cfg, todo, len(examples), judge, writer, progress)
    summary = _summary(cfg, path, examples, out, time.time() - t0)
    write_json(out / "summary.json", summary)
    manifest.finish({"balanced_accuracy": summary["balanced_accuracy"], "n": summary["n"]})
    return summary


def exact_scores(cfg: LabelsEvalConfig, examples: list, records: list[dict]) -> dict | None:
    """The same verdicts scored against the oracle's exact labels (`exact_label`, micro domain: judge-data
    adds it for problems with a reference trace), on the examples that have one; None when none has."""
    pairs = [(e, r) for e, r in zip(examples, records) if e.extra.get("exact_label") is not None]
    labels = [int(e.extra["exact_label"]) for e, _ in pairs]
    if len(set(labels)) < 2:
        return None
    ids = [e.problem_id for e, _ in pairs]
    out = label_scores(ids, labels, [r["verdict"] for _, r in pairs], cfg.bootstrap, cfg.seed)
    scores = [0.5 if r["score"] is None else r["score"] for _, r in pairs]
    out["auroc"] = round(auroc(labels, scores), 2)
    out["auroc_ci"] = ([round(x, 2) for x in auroc_interval(ids, labels, scores, cfg.bootstrap, cfg.seed)]
                       if cfg.bootstrap else None)
    out["mc_agreement"] = round(sum(e.label == y for (e, _), y in zip(pairs, labels)) / len(pairs), 4)
    return out


def _summary(cfg: LabelsEvalConfig, path: Path, examples: list, out: Path, seconds: float) -> dict:
    recs = {str(r["key"]): r for _, r in iter_jsonl(out / f"{OUTPUT}.jsonl")}
    missing = [e.key for e in examples if e.key not in recs]
    if missing:   # an internal invariant: every example was written above
        raise StepwiserError(f"{out / (OUTPUT + '.jsonl')}: no record for {len(missing)} example(s), e.g. "
                             f"{missing[0]!r}; summary.json not written (rerun to complete)")
    rs = [recs[e.key] for e in examples]
    summary = label_scores([e.problem_id for e in examples], [e.label for e in examples],
                           [r["verdict"] for r in rs], cfg.bootstrap, cfg.seed)
    summary["n_unparsed"] = sum(r["verdict"] is None for r in rs)
    # the chunk score (share of Positive samples, or P(+)); all samples unparsed -> 0.5, no preference
    scores = [0.5 if r["score"] is None else r["score"] for r in rs]
    labels = [e.label for e in examples]
    summary["auroc"] = round(auroc(labels, scores), 2)
    summary["auroc_ci"] = ([round(x, 2) for x in auroc_interval([e.problem_id for e in examples], labels, scores,
                                                                 cfg.bootstrap, cfg.seed)] if cfg.bootstrap else None)
    summary["mean_completion_tokens"] = round(sum(r["completion_tokens"] for r in rs) / len(rs), 2)
    exact = exact_scores(cfg, examples, rs)
    if exact is not None:
        summary["exact"] = exact
    pairs = record_pairs(examples, rs)
    if pairs:   # a generative judge: does its analysis recompute, and does its verdict follow?
        summary["analysis"] = analysis_stats(pairs)
    summary["meta"] = {
        "judge": cfg.judge, "judge_kind": cfg.judge_kind, "maj": cfg.maj, "threshold": cfg.threshold, "cot": cfg.cot,
        "max_tokens": cfg.max_tokens, "engine": cfg.engine, "data": str(path), "limit": cfg.limit,
        "bootstrap": cfg.bootstrap, "seed": cfg.seed, "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds_this_run": round(seconds, 1), "read_as": reading_or_none(cfg.judge, cfg.judge_kind, cfg.threshold)}
    return summary
