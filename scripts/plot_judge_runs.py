"""Overlay the curves of several `train-judge` GRPO runs (e.g. the StepWiser judge and its shuffled-label
control) in one PNG: reward, validation balanced accuracy, negative-verdict recall, zero-variance groups,
completion length and the clip fractions per optimiser step.

    python scripts/plot_judge_runs.py runs/micro-judge-grpo runs/micro-judge-shuffled \
        --names stepwiser,shuffled -o docs/img/micro-judge-grpo.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stepwiser.train.judge_metrics import read_metrics

PANELS = (("reward (generation batches)", "reward"), ("validation balanced accuracy (greedy)", "val_balanced_accuracy"),
          ("recall of Negative labels (sampled)", "recall_negative"),
          ("groups with zero reward variance", "zero_variance_groups"),
          ("mean completion tokens", "completion_length"), ("clip fraction, high (1 + eps_high)", "clip_high"),
          ("clip fraction, low (1 - eps)", "clip_low"), ("entropy", "entropy"))


def plot_runs(runs: dict[str, list[dict]], path: str | Path, title: str = "") -> Path:
    """One panel per metric of `PANELS`, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for ax, (name, key) in zip(axes.flat, PANELS):
        for run, rows in runs.items():
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=run)
        if key == "val_balanced_accuracy":
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="always one verdict")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("optimiser step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="train-judge output folders (each with metrics.jsonl)")
    ap.add_argument("--names", help="comma-separated legend names (default: the folder names)")
    ap.add_argument("-o", "--out", required=True, help="PNG path")
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    names = args.names.split(",") if args.names else [Path(r).name for r in args.runs]
    if len(names) != len(args.runs):
        ap.error(f"--names has {len(names)} names for {len(args.runs)} runs")
    runs = {}
    for name, run in zip(names, args.runs):
        rows = read_metrics(run)
        if not rows:
            ap.error(f"{run}: no metrics.jsonl lines")
        runs[name] = rows
    print(plot_runs(runs, args.out, args.title))


if __name__ == "__main__":
    main()
