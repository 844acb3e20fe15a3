"""The tables of `stepwiser report-run` (stage `run_report`): pure functions from loaded outputs to Markdown.

Every table takes {NAME: summary (or loaded input)} in the order given and returns its lines; the paired
differences (judges on the same chunks, search against its free baseline) bootstrap over problems.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from stepwiser.core.metrics import paired_difference, percentile_interval, resample_indices

LABELS_NOTE = ("Balanced accuracy and AUROC in percent, in brackets the bootstrap 95% interval (problems "
               "resampled); recalls against exact labels where the data has them, else against the MC labels; "
               "unparsed: % of chunks without a readable verdict. Always-one-verdict judges score 50 (the floor "
               "any judge must beat).")
BENCH_NOTE = ("F1 in percent (mean over subsets), in brackets the bootstrap 95% interval; error / correct acc.: "
              "% of erroneous solutions whose first error step is found / of correct solutions accepted.")
PAIRS_NOTE = ("A - B in balanced accuracy (points) on the chunks both judged, paired bootstrap over problems; "
              "one-sided p: share of replicates with A - B <= 0; real? = the interval excludes 0.")
SEARCH_NOTE = ("Accuracy in % of problems; difference = accuracy - baseline_accuracy (the same policy sampling "
               "freely); paired: the same difference over the problems of both files, bootstrap over problems; "
               "tokens per problem; judge time share: share of policy + judge time spent judging.")


def fmt(x, ci=None, digits: int = 1, sign: bool = False) -> str:
    """"59.3 [55.5, 62.9]" (or "-" for a missing value)."""
    if x is None:
        return "-"
    f = f"{{:+.{digits}f}}" if sign else f"{{:.{digits}f}}"
    return f"{f.format(x)} [{f.format(ci[0])}, {f.format(ci[1])}]" if ci else f.format(x)


def real(ci) -> str:
    """"yes" when the interval excludes 0, "no" when it holds it, "-" without an interval."""
    if not ci or any(c != c for c in ci):   # NaN: no replicate
        return "-"
    return "yes" if ci[0] > 0 or ci[1] < 0 else "no"


# --------------------------------------------------------------------------- judges on chunk labels

def labels_table(runs: Mapping[str, dict]) -> list[str]:
    """One row per `eval labels` summary: balanced accuracy and AUROC vs MC and exact labels, recalls."""
    rows = ["| judge | bal. acc. vs MC labels | AUROC (MC) | bal. acc. vs exact labels | AUROC (exact) | "
            "recall + / - | unparsed |", "|---|---|---|---|---|---|---|"]
    for name, s in runs.items():
        e = s.get("exact") or {}
        rec = e or s
        rows.append(f"| {name} | {fmt(s.get('balanced_accuracy'), s.get('balanced_accuracy_ci'))} | "
                    f"{fmt(s.get('auroc'), s.get('auroc_ci'))} | "
                    f"{fmt(e.get('balanced_accuracy'), e.get('balanced_accuracy_ci'))} | "
                    f"{fmt(e.get('auroc'), e.get('auroc_ci'))} | {fmt(rec.get('recall_positive'))} / "
                    f"{fmt(rec.get('recall_negative'))}{'' if e else ' (MC)'} | {fmt(s.get('unparsed', 0))} |")
    return rows


def pair_difference(ja: dict, jb: dict, exact: Mapping[str, int | None], kind: str, resamples: int,
                    seed: int) -> dict | None:
    """Judge A minus judge B (`paired_difference`) on the chunks both judged, against the MC labels
    (kind "MC", the judgments' own labels) or the exact labels; None when no chunk qualifies."""
    keys = [k for k in ja if k in jb and (kind == "MC" or exact.get(k) is not None)]
    if not keys:
        return None
    y = [ja[k]["label"] if kind == "MC" else int(exact[k]) for k in keys]
    return paired_difference([ja[k]["problem_id"] for k in keys], y, [ja[k]["verdict"] for k in keys],
                             [jb[k]["verdict"] for k in keys], resamples=resamples, seed=seed)


def pairs_table(pairs: Sequence[tuple[str, str]], judgments: Mapping[str, dict], exact: Mapping[str, int | None],
                resamples: int, seed: int) -> tuple[list[str], list[str]]:
    """(table lines, notes): per pair A:B one row against MC labels and one against exact labels (when
    the data has them); a pair with a judge whose judgments are missing becomes a note."""
    rows = ["| A vs B | labels | A - B (points) [95% CI] | one-sided p | real? |", "|---|---|---|---|---|"]
    notes = []
    for a, b in pairs:
        if a not in judgments or b not in judgments:
            notes.append(f"{a} vs {b}: left out ({a if a not in judgments else b} has no judgments.jsonl)")
            continue
        for kind in ("MC", "exact") if any(v is not None for v in exact.values()) else ("MC",):
            d = pair_difference(judgments[a], judgments[b], exact, kind, resamples, seed)
            if d is None:
                notes.append(f"{a} vs {b} ({kind}): no chunk judged by both")
                continue
            rows.append(f"| {a} vs {b} | {kind} ({d['n']} chunks, {d['groups']} problems) | "
                        f"{fmt(d['diff'], d['ci'], sign=True)} | {d['p']:.3f} | {real(d['ci'])} |")
    if not any(v is not None for v in exact.values()):
        notes.append("no exact labels (the --data examples have no exact_label): MC labels only")
    return rows, notes


# --------------------------------------------------------------------------- ProcessBench

def bench_table(runs: Mapping[str, dict]) -> list[str]:
    """One row per `eval processbench` summary: average F1 with its interval, error / correct accuracy
    (means over the summary's subsets)."""
    rows = ["| judge | F1 [95% CI] | error acc. | correct acc. | items |", "|---|---|---|---|---|"]
    for name, s in runs.items():
        subs = list(s["subsets"].values())
        mean = (lambda k: sum(x.get(k) or 0.0 for x in subs) / len(subs)) if subs else (lambda k: None)
        partial = f" (partial: {s.get('missing', '?')} missing)" if s.get("partial") else ""
        rows.append(f"| {name}{partial} | {fmt(s['average_f1'], s.get('average_f1_ci'))} | "
                    f"{fmt(mean('error_acc'))} | {fmt(mean('correct_acc'))} | {sum(x.get('n', 0) for x in subs)} |")
    return rows


# --------------------------------------------------------------------------- judge training

def val_points(rows: list[dict], key: str = "val_balanced_accuracy") -> list[tuple[int, float]]:
    """(step, a validation figure in percent) of a metrics.jsonl: the greedy balanced accuracy, or with
    `key` "val_calibrated_balanced_accuracy" the no-CoT judge's P(Positive) at its dev-best threshold."""
    return [(r["step"], 100.0 * r[key]) for r in rows if isinstance(r.get(key), (int, float))]


def _last_best(val: list[tuple[int, float]]) -> tuple[str, str]:
    if not val:
        return "-", "-"
    best = max(val, key=lambda p: (p[1], -p[0]))
    return f"{val[-1][1]:.1f} ({val[-1][0]})", f"{best[1]:.1f} ({best[0]})"


def train_table(runs: Mapping[str, dict]) -> list[str]:
    """One row per train-judge folder ({"summary": manifest summary, "metrics": rows}): steps, last and
    best validation balanced accuracy (greedy verdicts; and for no-CoT runs P(Positive) at the dev-best
    threshold, the figure `select_checkpoint.py --by calibrated` selects on), time."""
    out = ["| run | method | steps | last val. bal. acc. (step) | best val. bal. acc. (step) | "
           "best val. bal. acc., P(+) at a dev threshold (step) | time |", "|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        rows, summary = run["metrics"], run["summary"]
        steps = summary.get("steps") or max((r.get("step", 0) for r in rows), default=None)
        last, best = _last_best(val_points(rows))
        _, calibrated = _last_best(val_points(rows, "val_calibrated_balanced_accuracy"))
        seconds = summary.get("seconds")
        if seconds is None:
            times = [r["time"] for r in rows if isinstance(r.get("time"), (int, float))]
            seconds = max(times) - min(times) if len(times) > 1 else None
        took = "-" if seconds is None else f"{seconds / 60:.1f} min"
        out.append(f"| {name} | {run['config'].get('method', '-')} | {steps if steps is not None else '-'} | {last} | "
                   f"{best} | {calibrated} | {took} |")
    return out


# --------------------------------------------------------------------------- annotation

def annotations_table(runs: Mapping[str, dict]) -> list[str]:
    """One row per annotation file ({"summary": manifest summary or computed, ...}): the cost."""
    out = ["| annotations | samples | chunks | rollouts run | full-M budget | saved by prefix sharing | "
           "saved by early stopping | seconds |", "|---|---|---|---|---|---|---|---|"]
    for name, s in runs.items():
        pct = (lambda k: "-" if s.get(k) is None else f"{100 * s[k]:.1f}%")
        sec = s.get("seconds")
        out.append(f"| {name} | {s.get('annotations', '-')} | {s.get('chunks', '-')} | "
                   f"{s.get('rollouts_spent', '-')} | {s.get('full_M_budget', '-')} | {pct('saved_by_sharing')} | "
                   f"{pct('saved_by_early_stop')} | {'-' if sec is None else f'{sec:.0f}'} |")
    return out


# --------------------------------------------------------------------------- search

def correct_by_problem(path) -> dict[str, list]:
    """{problem_id: [correct, ...]} of a JSONL with problem_id and correct (search.jsonl, baseline.jsonl, the
    samples.jsonl of `sample` / `eval accuracy`, whose `answer_status` stands in when `correct` is absent)."""
    from stepwiser.io.records import iter_jsonl

    out: dict[str, list] = {}
    for _, r in iter_jsonl(path):
        out.setdefault(str(r["problem_id"]), []).append(bool(r.get("correct", r.get("answer_status") == "correct")))
    return out


def paired_accuracy(a: Mapping[str, list], b: Mapping[str, list], resamples: int, seed: int) -> dict | None:
    """Accuracy of A minus B in points over the problems both have ({problem: [correct, ...]}, a problem's
    mean counts once), with a percentile bootstrap over problems; None when no problem is shared."""
    import numpy as np

    keys = [k for k in a if k in b and a[k] and b[k]]
    if not keys:
        return None
    d = np.array([100.0 * (sum(map(bool, a[k])) / len(a[k]) - sum(map(bool, b[k])) / len(b[k])) for k in keys])
    ci = None
    if resamples:
        ci = [round(x, 2) for x in percentile_interval(d[resample_indices(len(keys), resamples, f"search:{seed}")]
                                                       .mean(axis=1))]
    return {"diff": round(float(d.mean()), 2), "ci": ci, "n": len(keys)}


def search_table(runs: Mapping[str, dict]) -> list[str]:
    """One row per search folder ({"summary", "paired": paired_accuracy or None}): the paper's Table 7."""
    out = ["| search | problems | accuracy | baseline accuracy | difference | paired difference [95% CI] | real? | "
           "accepted tokens | rejected tokens | resets / chunk | judge calls | judge time share |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        s, p = run["summary"], run["paired"]
        acc, base = s.get("accuracy"), s.get("baseline_accuracy")
        diff = acc - base if acc is not None and base is not None else None
        share = s.get("judge_seconds_share")
        out.append(f"| {name} | {s.get('n', '-')} | {fmt(acc)} | {fmt(base)} | {fmt(diff, sign=True)} | "
                   f"{fmt(p['diff'], p['ci'], sign=True) if p else '-'} | {real(p['ci']) if p else '-'} | "
                   f"{fmt(s.get('mean_accepted_tokens'))} | {fmt(s.get('mean_rejected_tokens'))} | "
                   f"{fmt(s.get('mean_resets_per_chunk'), digits=2)} | {fmt(s.get('mean_judge_calls'), digits=2)} | "
                   f"{'-' if share is None else f'{100 * share:.1f}%'} |")
    return out


# --------------------------------------------------------------------------- data selection

def select_table(selects: Mapping[str, dict], accuracy: Mapping[str, dict]) -> list[str]:
    """One row per select summary (and per `eval accuracy` summary of the same NAME: the policy trained on
    that selection); accuracy summaries without a select of their name get rows of their own."""
    out = ["| selection | strategy | prompts | kept (prompts with a correct response) | correct / samples | "
           "judge score kept | judge score all correct | policy accuracy |", "|---|---|---|---|---|---|---|---|"]

    def acc(name):
        a = accuracy.get(name)
        if a is None:
            return "-"
        err = f" +/- {a['stderr']:.1f}" if a.get("stderr") is not None else ""
        return f"{a.get('mean_accuracy', 0):.1f}{err} ({(a.get('meta') or {}).get('metric', 'accuracy')})"

    for name, s in selects.items():
        score = (lambda k: "-" if s.get(k) is None else f"{s[k]:.3f}")
        out.append(f"| {name} | {s.get('strategy', '-')} | {s.get('prompts', '-')} | {s.get('prompts_with_correct', '-')}"
                   f" | {s.get('correct_samples', '-')} / {s.get('samples', '-')} | {score('mean_judge_score_kept')} | "
                   f"{score('mean_judge_score_all_correct')} | {acc(name)} |")
    for name in accuracy:
        if name not in selects:
            out.append(f"| {name} | - | - | - | - | - | - | {acc(name)} |")
    return out
