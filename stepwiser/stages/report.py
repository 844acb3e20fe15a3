"""Comparison of ProcessBench runs: one Markdown table and one bar chart from several summary.json files.

The table has the layout of the paper's Table 5: one row per judge, one column per subset (F1) and the
average F1, each with its bootstrap 95% interval when the summary has one. Columns are the subsets of
all summaries in the order first seen (known ProcessBench subsets get their usual names); a judge
without a subset shows "-". Avg is each summary's own unweighted mean over its subsets; when the rows
were evaluated on different subsets a note under the table says so.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.io.config import option

DISPLAY = {"gsm8k": "GSM8K", "math": "MATH", "olympiadbench": "OlympiadBench", "omnimath": "Omni-MATH"}


@dataclass
class ReportConfig:
    summaries: list[str] = option(help="summary.json files of `stepwiser eval processbench`.", path="file")
    names: list[str] | None = option(None, "Comma-separated row names, one per summary (default: the judge names).")
    out: str | None = option(None, "Write the Markdown table here (it is printed either way).", short="-o")
    plot: str | None = option(None, "Write a PNG bar chart with the intervals.")
    select: bool = option(False, "Checkpoint selection (on a dev split): also print the judge to keep, on stdout "
                                 "after the table as `selected: JUDGE`: highest average F1; ties by mean "
                                 "error/correct accuracy, then later step.")


def load_summary(path: str | Path) -> dict:
    """A summary.json of `eval processbench`, checked (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise StepwiserError(f"{path}: file not found")
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StepwiserError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(s, dict) or not isinstance(s.get("subsets"), dict) or "average_f1" not in s:
        raise StepwiserError(f"{path}: not a summary.json of `stepwiser eval processbench` "
                             "(needs 'subsets' and 'average_f1')")
    for name, sub in s["subsets"].items():
        if not isinstance(sub, dict) or "f1" not in sub:
            raise StepwiserError(f"{path}: subset {name!r} has no 'f1'")
    return s


def default_name(summary: dict, path: str | Path) -> str:
    meta = summary.get("meta") or {}
    if meta.get("judge"):
        name = Path(str(meta["judge"])).name or str(meta["judge"])
        return f"{name} maj@{meta['maj']}" if meta.get("maj", 1) > 1 else name
    return Path(path).parent.name or str(path)


def _columns(rows: list[tuple[str, dict]]) -> list[str]:
    cols: list[str] = []
    for _, s in rows:
        cols += [c for c in s["subsets"] if c not in cols]
    return cols


def _cell(f1, ci, digits: int) -> str:
    if f1 is None:
        return "-"
    text = f"{f1:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def comparison_table(rows: list[tuple[str, dict]], digits: int = 1) -> str:
    """Markdown: rows = judges, columns = subsets + Avg, cells "F1 [lo, hi]"."""
    if not rows:
        raise ValueError("the table needs at least one summary")
    cols = _columns(rows)
    lines = ["| judge | " + " | ".join(DISPLAY.get(c, c) for c in cols) + " | Avg |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for name, s in rows:
        cells = [_cell(s["subsets"][c]["f1"], s["subsets"][c].get("f1_ci"), digits) if c in s["subsets"] else "-"
                 for c in cols]
        cells.append(_cell(s["average_f1"], s.get("average_f1_ci"), digits))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if len({tuple(s["subsets"]) for _, s in rows}) > 1:
        text += "\nAvg is each row's mean F1 over its own subsets; the rows were evaluated on different subsets.\n"
    return text + "\nF1 in percent; in brackets the bootstrap 95% interval.\n"


def comparison_plot(rows: list[tuple[str, dict]], path: str | Path, title: str = "ProcessBench F1") -> None:
    """A grouped bar chart (PNG): one group per subset and the average, one bar per judge, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = _columns(rows)
    labels = [DISPLAY.get(c, c) for c in cols] + ["Avg"]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) * max(1, len(rows)) ** 0.5 + 2), 4.2))
    for r, (name, s) in enumerate(rows):
        vals, lo, hi = [], [], []
        for c in [*cols, None]:
            f1, ci = (s["average_f1"], s.get("average_f1_ci")) if c is None else \
                (s["subsets"][c]["f1"], s["subsets"][c].get("f1_ci")) if c in s["subsets"] else (float("nan"), None)
            vals.append(f1)
            lo.append(f1 - ci[0] if ci else 0.0)
            hi.append(ci[1] - f1 if ci else 0.0)
        xs = [i + (r - (len(rows) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, vals, width, label=name, yerr=[lo, hi], capsize=3, error_kw={"elinewidth": 1})
        for x, v, up in zip(xs, vals, hi):
            if not math.isnan(v):  # NaN: a subset this judge was not evaluated on
                ax.text(x, v + up + 1, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 108)
    ax.set_title(title + " (error bars: bootstrap 95% interval)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _judge_step(summary: dict) -> int:
    """The training step of the judge a summary scored (its export's stepwiser_judge.json), else -1."""
    from stepwiser.judges.base import judge_meta

    judge = (summary.get("meta") or {}).get("judge")
    step = judge_meta(str(judge)).get("step") if judge else None
    return step if isinstance(step, int) else -1


def _mean_accuracy(summary: dict) -> float:
    """Mean over subsets of (error_acc + correct_acc) / 2, the accuracies F1 is made of (None counts 0)."""
    subs = list(summary["subsets"].values())
    return sum(((s.get("error_acc") or 0) + (s.get("correct_acc") or 0)) / 2 for s in subs) / max(len(subs), 1)


def select_best(rows: list[tuple[str, dict]]) -> int:
    """Index of the row to select (checkpoint selection on a dev split): the highest average F1; ties by
    the higher mean of error and correct accuracy, then by the later training step (the longer-trained
    judge), then the later row."""
    if not rows:
        raise ValueError("nothing to select from")
    keys = [((s.get("average_f1") or 0.0), _mean_accuracy(s), _judge_step(s), i) for i, (_, s) in enumerate(rows)]
    return max(keys)[3]


def load_rows(paths: list[str], names: list[str] | None = None) -> list[tuple[str, dict]]:
    """(name, summary) per summary.json, names given or from the judge."""
    if not paths:
        raise ValueError("give at least one summary.json")
    if names is not None and len(names) != len(paths):
        raise ValueError(f"--names has {len(names)} name(s) for {len(paths)} summary file(s)")
    summaries = [load_summary(p) for p in paths]
    rows = [(names[i] if names else default_name(s, p), s) for i, (p, s) in enumerate(zip(paths, summaries))]
    # a run scored with --allow-missing is not a headline result: say so in its row
    return [(f"{name} (partial: {s.get('missing', '?')} missing)" if s.get("partial") else name, s) for name, s in rows]


def make_report(paths: list[str], names: list[str] | None = None, table_out: str | None = None,
                plot_out: str | None = None, rows: list[tuple[str, dict]] | None = None) -> str:
    """Load the summaries (or take `rows` from `load_rows`), write the table (and plot) where asked; returns
    the Markdown table."""
    rows = rows if rows is not None else load_rows(paths, names)
    table = comparison_table(rows)
    if table_out:
        Path(table_out).parent.mkdir(parents=True, exist_ok=True)
        Path(table_out).write_text(table, encoding="utf-8")
    if plot_out:
        comparison_plot(rows, plot_out)
    return table
