"""`stepwiser eval`: ProcessBench (judges, critics, PRMs, external predictions, reference judges), judges
against held-out labels, and accuracy."""
from __future__ import annotations

import dataclasses

import click

from stepwiser.cli.common import EngineOptions, LazyEngine, engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.eval_accuracy import AccuracyConfig
from stepwiser.stages.eval_labels import LabelsEvalConfig
from stepwiser.stages.eval_processbench import ProcessBenchConfig


@click.group("eval")
def command():
    """Evaluate judges on ProcessBench (or the synthetic bench) and policies on problem sets.

    \b
      stepwiser eval processbench --judge runs/judge --data runs/bench --subsets dev -o runs/eval-judge
      stepwiser eval processbench --critic Qwen/Qwen2.5-7B-Instruct --engine vllm --data hf -o runs/eval-critic
      stepwiser eval processbench --prm Qwen/Qwen2.5-Math-PRM-7B --data hf -o runs/eval-prm
      stepwiser eval processbench --predictions preds.jsonl --data bench/ --subsets test -o runs/eval-preds
      stepwiser eval processbench --reference oracle --data bench/ --subsets test -o runs/eval-oracle
      stepwiser eval labels --judge runs/judge/final --data runs/jd --split val -o runs/eval-labels
      stepwiser eval accuracy --policy runs/policy --problems test.jsonl --k 8 -o runs/acc
    """


class _Lazy:
    """A zero-argument factory that builds the predictor once, on first call; `close` frees its engine."""

    def __init__(self, build):
        self.build, self.obj = build, None

    def __call__(self):
        if self.obj is None:
            self.obj = self.build()
        return self.obj

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        engine = getattr(self.obj, "engine", None)
        if engine is not None:
            engine.close()


def _predictor(mode: str, model: str, engine_opts: EngineOptions, kind, cot, max_tokens, seed, threshold, prm_batch_size):
    """A context manager and zero-argument factory of the mode's predictor (loaded only if items remain)."""
    if mode == "critic":
        return LazyEngine(model, engine_opts)
    if mode == "judge":
        def build():
            from stepwiser.judges.load import load_judge
            return load_judge(model, engine_opts, kind=kind, cot=cot, max_tokens=max_tokens, seed=seed,
                              threshold=threshold)
    elif mode == "prm":
        def build():
            from stepwiser.judges.prm import ProcessRewardModel
            return ProcessRewardModel(model, threshold=0.5 if threshold is None else threshold, device=engine_opts.device,
                                      dtype=engine_opts.dtype, batch_size=prm_batch_size)
    else:
        return _Lazy(lambda: None)
    return _Lazy(build)


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    subsets = summary["subsets"]
    missing = any("missing" in s for s in subsets.values())
    t = Table(title=f"eval processbench: {summary['meta']['mode']} {summary['meta']['judge']}", title_justify="left")
    for col in ("subset", "n", "error acc", "correct acc", "F1", "95% CI", "unparsed", *(["missing"] if missing else [])):
        t.add_column(col, justify="left" if col == "subset" else "right")

    def ci(c):
        return f"[{c[0]:.1f}, {c[1]:.1f}]" if c else "-"

    for name, s in subsets.items():
        t.add_row(name, str(s["n"]), f"{s['error_acc']:.1f}", f"{s['correct_acc']:.1f}", f"{s['f1']:.1f}",
                  ci(s["f1_ci"]), str(s["unparsed"]), *([str(s.get("missing", 0))] if missing else []))
    t.add_row("average", "", "", "", f"{summary['average_f1']:.1f}", ci(summary["average_f1_ci"]), "",
              *([""] if missing else []))
    Console().print(t)
    gaps = {k: s["missing"] for k, s in subsets.items() if s.get("missing")}
    if gaps:
        click.echo(f"warning: items without a prediction (scored as wrong): "
                   f"{', '.join(f'{k} {v}' for k, v in gaps.items())}; their records have \"missing\": true and "
                   "summary.json is marked \"partial\": true (not a headline result)", err=True)


@command.command("processbench")
@config_options(ProcessBenchConfig, section="eval_processbench")
@engine_options()
@overwrite_option
def processbench(cfg, engine_opts, overwrite):
    """Score a judge on ProcessBench: per-item predictions and F1 per subset (contract C4).

    Give exactly one of --judge, --critic, --prm, --predictions, --reference.
    Writes OUT/<subset>.jsonl (one record per item: id, label, prediction and the per-step details),
    OUT/manifest.json, and OUT/summary.json once every item is done (n, error_acc, correct_acc, f1 with a
    bootstrap 95% interval, unparsed per subset; the unweighted average F1). Rerunning resumes.
    """
    from stepwiser.stages.eval_processbench import run_processbench

    cfg = dataclasses.replace(cfg, engine=engine_opts.engine)
    with _predictor(cfg.mode, cfg.model, engine_opts, cfg.judge_kind, cfg.cot, cfg.max_tokens, cfg.seed,
                    cfg.threshold, cfg.prm_batch_size) as factory:
        summary = run_processbench(cfg, factory if cfg.mode in ("judge", "critic", "prm") else None,
                                   overwrite=overwrite)
    _print_summary(summary)
    click.echo(f"wrote {cfg.out}/summary.json")


@command.command("accuracy")
@config_options(AccuracyConfig, section="eval_accuracy")
@engine_options()
@overwrite_option
def accuracy(cfg, engine_opts, overwrite):
    """A policy's accuracy on a problem set: greedy (k = 1) or Avg@k, on any engine.

    Writes OUT/samples.jsonl (resumable, as `stepwiser sample`), OUT/problems.jsonl (per problem) and
    OUT/summary.json (mean accuracy, standard error, unparsed answers).
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.eval_accuracy import run_accuracy

    cfg = dataclasses.replace(cfg, engine=engine_opts.engine)
    with LazyEngine(cfg.policy, engine_opts) as factory:
        summary = run_accuracy(cfg, factory, overwrite=overwrite)
    print_summary("eval accuracy", {k_: v for k_, v in summary.items() if k_ != "meta"})


def _print_labels_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    meta = summary["meta"]
    t = Table(title=f"eval labels: {meta['judge']} on {meta['data']} ({summary['n']} examples, "
                    f"{summary['n_problems']} problems)", title_justify="left")
    for col in ("metric", "value", "95% CI"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for name, key in (("balanced accuracy", "balanced_accuracy"), ("recall Positive", "recall_positive"),
                      ("recall Negative", "recall_negative"), ("accuracy", "accuracy"), ("AUROC of scores", "auroc")):
        ci = summary.get(f"{key}_ci")
        t.add_row(name, f"{summary[key]:.1f}", f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "-")
    t.add_row("unparsed", f"{summary['unparsed']:.1f}", "")
    t.add_row("Positive labels", f"{summary['positives']:.1f}", "")
    t.add_row("completion tokens", f"{summary['mean_completion_tokens']:.1f}", "")
    refs = summary["references"]
    t.add_row("always-Positive / always-Negative", f"{refs['always_positive']:.1f} / {refs['always_negative']:.1f}",
              "")
    Console().print(t)


@command.command("labels")
@config_options(LabelsEvalConfig, section="eval_labels")
@engine_options()
@overwrite_option
def labels(cfg, engine_opts, overwrite):
    """Score a judge against held-out Monte Carlo labels (a judge-data split): balanced accuracy.

    Writes OUT/judgments.jsonl (one record per example: key, problem_id, label, verdict, score,
    completion_tokens, analyses), OUT/manifest.json, and OUT/summary.json once every example is done
    (balanced accuracy, per-class recall, accuracy with bootstrap 95% intervals over problems; unparsed;
    the always-Positive / always-Negative references). Rerunning resumes.
    """
    from stepwiser.stages.eval_labels import run_labels

    cfg = dataclasses.replace(cfg, engine=engine_opts.engine)
    with _predictor("judge", cfg.judge, engine_opts, cfg.judge_kind, cfg.cot, cfg.max_tokens, cfg.seed,
                    cfg.threshold, 1) as factory:
        summary = run_labels(cfg, factory, overwrite=overwrite)
    _print_labels_summary(summary)
    click.echo(f"wrote {cfg.out}/summary.json")
