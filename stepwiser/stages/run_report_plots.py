"""The PNG plots of `stepwiser report-run` (matplotlib, Agg backend, imported only when a plot is drawn).

Each function takes {NAME: data} in the order given and writes one PNG; every run is one colour on the
same axes. Training curves are rolling means over `window` logged steps (validation: its points as is).
"""
from __future__ import annotations

from pathlib import Path

TRAIN_WINDOW = 10


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rolling(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def series(rows: list[dict], key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
    """(steps, values) of the metrics.jsonl rows that have `key`."""
    pts = [(r["step"], scale * r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def _save(fig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _panel(ax, runs: dict[str, list[dict]], keys: list[tuple[str, str, str]], window: int, title: str,
           ylabel: str) -> bool:
    """Draw each run's rolling `keys` ((metric, label, line style)) on `ax`; False when nothing was drawn."""
    drawn = False
    for i, (name, rows) in enumerate(runs.items()):
        for key, label, style in keys:
            xs, ys = series(rows, key)
            if xs:
                ax.plot(xs, rolling(ys, window), style, color=f"C{i % 10}", lw=1.2, label=f"{name}: {label}")
                drawn = True
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    return drawn


def training_curves(runs: dict[str, list[dict]], path: str | Path, window: int = TRAIN_WINDOW) -> bool:
    """Two panels: GRPO reward and training accuracy per step (rolling means), and the validation balanced
    accuracy at the evaluation steps (greedy verdicts; dashed: P(Positive) at the dev-best threshold, no-CoT). False (nothing written) when no run logged any of them."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = _panel(left, runs, [("reward", "reward", "-"), ("accuracy", "train acc.", "--")], window,
                   f"reward and training accuracy (rolling mean of {window} steps)", "reward / accuracy")
    for i, (name, rows) in enumerate(runs.items()):
        for key, style, what in (("val_balanced_accuracy", "o-", "greedy"),
                                 ("val_calibrated_balanced_accuracy", "s--", "P(+) at a dev threshold")):
            xs, ys = series(rows, key, 100.0)
            if xs:
                right.plot(xs, ys, style, color=f"C{i % 10}", ms=3, lw=1.2, label=f"{name}, {what}")
                drawn = True
    right.axhline(50, color="grey", lw=0.8, ls=":", label="always one verdict (50)")
    right.set_title("validation balanced accuracy", fontsize=9)
    right.set_xlabel("step")
    right.set_ylabel("balanced accuracy (%)")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return False
    _save(fig, path)
    return True


def training_health(runs: dict[str, list[dict]], path: str | Path, window: int = TRAIN_WINDOW) -> bool:
    """Two panels: the share of prompt groups with zero reward variance (no gradient) and the share of
    completions failing the verdict format, per step (rolling means). False when no run logged them."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    a = _panel(axes[0], runs, [("zero_variance_groups", "zero-variance groups", "-")], window,
               f"zero-variance group share (rolling mean of {window} steps)", "share")
    b = _panel(axes[1], runs, [("format_failure", "format failures", "-")], window,
               f"format-failure share (rolling mean of {window} steps)", "share")
    if not (a or b):
        plt.close(fig)
        return False
    _save(fig, path)
    return True


def label_balance(shares: dict[str, dict[str, float]], path: str | Path) -> None:
    """Stacked bars, one per (annotation file, label type): the % of Positive and Negative chunks."""
    plt = _pyplot()
    bars = [(f"{name}\n{t}", pos) for name, by_type in shares.items() for t, pos in by_type.items()]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(bars) + 2), 4))
    xs = range(len(bars))
    pos = [p for _, p in bars]
    ax.bar(xs, pos, color="C2", label="Positive")
    ax.bar(xs, [100 - p for p in pos], bottom=pos, color="C3", label="Negative")
    for x, p in zip(xs, pos):
        ax.text(x, p / 2, f"{p:.0f}%", ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(list(xs), [b for b, _ in bars], fontsize=7)
    ax.set_ylabel("% of chunks")
    ax.set_ylim(0, 100)
    ax.set_title("chunk label balance per label type", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, path)
