"""`stepwiser eval`: ProcessBench (judges, critics, PRMs, external predictions, reference judges), judges
against held-out labels, and accuracy."""
from __future__ import annotations

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option

REFERENCES = ("always-correct", "first-step", "position-prior", "oracle")   # stepwiser.judges.reference


@click.group("eval")
def command():
    """Evaluate judges on ProcessBench (or the synthetic bench) and policies on problem sets.

    \b
      stepwiser eval processbench --judge runs/judge --data ../shared/data/processbench -o runs/eval-judge
      stepwiser eval processbench --critic Qwen/Qwen2.5-7B-Instruct --engine vllm --data hf -o runs/eval-critic
      stepwiser eval processbench --prm Qwen/Qwen2.5-Math-PRM-7B --data hf -o runs/eval-prm
      stepwiser eval processbench --predictions preds.jsonl --data bench/ --subsets test -o runs/eval-preds
      stepwiser eval processbench --reference oracle --data bench/ --subsets test -o runs/eval-oracle
      stepwiser eval labels --judge runs/judge/final --data runs/jd --split val -o runs/eval-labels
      stepwiser eval accuracy --policy runs/policy --problems test.jsonl --k 8 -o runs/acc
    """


def _mode(judge, critic, prm, predictions, reference) -> tuple[str, str]:
    given = [(m, v) for m, v in (("judge", judge), ("critic", critic), ("prm", prm), ("predictions", predictions),
                                 ("reference", reference)) if v]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --judge, --critic, --prm, --predictions, --reference")
    return given[0]


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


def _predictor(mode: str, model: str, engine_opts: dict, kind, cot, max_tokens, seed, threshold, prm_batch_size):
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
            return ProcessRewardModel(model, threshold=threshold, device=engine_opts.get("device"),
                                      dtype=engine_opts.get("dtype"), batch_size=prm_batch_size)
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
                   f"{', '.join(f'{k} {v}' for k, v in gaps.items())}; their records have \"missing\": true", err=True)


@command.command("processbench")
@click.option("--judge", metavar="MODEL", help="Stepwise judge: a trained judge folder or any chat model.")
@click.option("--critic", metavar="MODEL", help="Any chat model as a whole-solution critic (ProcessBench protocol).")
@click.option("--prm", metavar="MODEL", help="A Qwen2.5-Math-PRM-style process reward model.")
@click.option("--predictions", type=click.Path(exists=True, dir_okay=False),
              help="Score predictions made elsewhere (JSONL: id, prediction[, subset]).")
@click.option("--reference", type=click.Choice(REFERENCES), help="A reference judge (synthetic bench floors/ceiling).")
@click.option("--data", required=True, help="Folder of <subset>.json files, one such file, or 'hf' (Qwen/ProcessBench).")
@click.option("--subsets", default=None, help="Comma-separated subsets to evaluate (default: all in --data).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items of each subset.")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="N items of each subset drawn with --seed, clean and erroneous in the subset's proportions "
                   "(ProcessBench files list erroneous items first, so --limit keeps one class).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--maj", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples per step (judge) or per item (critic): greedy for 1, temperature 1.0 above.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Discriminative judge / PRM: a step is Negative when P(positive) is below it.")
@click.option("--all-steps", is_flag=True, help="Judge every step instead of stopping at the first Negative "
              "(the prediction is the same; for measuring what early stopping saves).")
@click.option("--judge-kind", type=click.Choice(["auto", "generative", "discriminative"]), default="auto",
              show_default=True, help="Judge kind (auto: from the judge folder's stepwiser_judge.json).")
@click.option("--cot/--no-cot", default=None, help="Generative judge: with or without analysis (default: as trained).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Most tokens per judgment (judge) or critique (critic).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prior", type=click.Path(exists=True, dir_okay=False), default=None,
              help="--reference position-prior: the dev split whose labels are drawn (default: DATA/dev.json).")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0: none).")
@click.option("--batch-items", type=click.IntRange(min=1), default=256, show_default=True,
              help="Items in flight: every round judges the next step of all of them in one call.")
@click.option("--prm-batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="--prm: items per forward pass.")
@engine_options()
@overwrite_option
def processbench(judge, critic, prm, predictions, reference, data, subsets, limit, sample, out, maj, threshold, all_steps,
                 judge_kind, cot, max_tokens, seed, prior, bootstrap, batch_items, prm_batch_size, engine_opts,
                 overwrite):
    """Score a judge on ProcessBench: per-item predictions and F1 per subset (contract C4).

    Writes OUT/<subset>.jsonl (one record per item: id, label, prediction and the per-step details),
    OUT/manifest.json, and OUT/summary.json once every item is done (n, error_acc, correct_acc, f1 with a
    bootstrap 95% interval, unparsed per subset; the unweighted average F1). Rerunning resumes.
    """
    from stepwiser.stages.eval_processbench import ProcessBenchConfig, run_processbench

    mode, model = _mode(judge, critic, prm, predictions, reference)
    cfg = ProcessBenchConfig(mode=mode, model=model, data=data, out=out,
                             subsets=tuple(s.strip() for s in subsets.split(",") if s.strip()) if subsets else None,
                             limit=limit, sample=sample, maj=maj, threshold=threshold, all_steps=all_steps, max_tokens=max_tokens,
                             seed=seed, engine=engine_opts["engine"], judge_kind=judge_kind, cot=cot, prior=prior,
                             bootstrap=bootstrap, batch_items=batch_items)
    with _predictor(mode, model, engine_opts, judge_kind, cot, max_tokens, seed, threshold, prm_batch_size) as factory:
        summary = run_processbench(cfg, factory if mode in ("judge", "critic", "prm") else None, overwrite=overwrite)
    _print_summary(summary)
    click.echo(f"wrote {out}/summary.json")


@command.command("accuracy")
@click.option("--policy", required=True, help="Policy model: HF id, local dir, or smollm2-135m-instruct.")
@click.option("--problems", required=True, type=click.Path(exists=True, dir_okay=False), help="Problems JSONL.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--k", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per problem (Avg@k).")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="Sampling temperature [default: 0 (greedy) for k = 1, 1.0 for k > 1].")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N problems.")
@click.option("--batch-problems", type=click.IntRange(min=1), default=16, show_default=True,
              help="Problems per engine call.")
@engine_options()
@overwrite_option
def accuracy(policy, problems, out, k, temperature, top_p, max_tokens, seed, limit, batch_problems, engine_opts,
             overwrite):
    """A policy's accuracy on a problem set: greedy (k = 1) or Avg@k, on any engine.

    Writes OUT/samples.jsonl (resumable, as `stepwiser sample`), OUT/problems.jsonl (per problem) and
    OUT/summary.json (mean accuracy, standard error, unparsed answers).
    """
    from stepwiser.stages.eval_accuracy import AccuracyConfig, run_accuracy
    from stepwiser.io.summary import print_summary

    cfg = AccuracyConfig(policy=policy, problems=problems, out=out, k=k, temperature=temperature, top_p=top_p,
                         max_tokens=max_tokens, seed=seed, engine=engine_opts["engine"], limit=limit,
                         batch_problems=batch_problems)
    with LazyEngine(policy, engine_opts) as factory:
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
@click.option("--judge", required=True, metavar="MODEL", help="Step judge: a trained judge folder or any chat model.")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="A judge-data output folder (its <split>.jsonl) or a JSONL file of judge examples.")
@click.option("--split", default="val", show_default=True, help="The split file read from a judge-data folder.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--maj", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples per example: greedy for 1, temperature 1.0 above; the majority decides (tie: Negative).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Most tokens per judgment.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Discriminative judge: Negative when P(positive) is below it.")
@click.option("--judge-kind", type=click.Choice(["auto", "generative", "discriminative"]), default="auto",
              show_default=True, help="Judge kind (auto: from the judge folder's stepwiser_judge.json).")
@click.option("--cot/--no-cot", default=None, help="Generative judge: with or without analysis (default: as trained).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N examples.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples (of problems) for the 95% intervals (0: none).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-items", type=click.IntRange(min=1), default=256, show_default=True,
              help="Examples per judging call.")
@engine_options()
@overwrite_option
def labels(judge, data, split, out, maj, max_tokens, threshold, judge_kind, cot, limit, bootstrap, seed, batch_items,
           engine_opts, overwrite):
    """Score a judge against held-out Monte Carlo labels (a judge-data split): balanced accuracy.

    Writes OUT/judgments.jsonl (one record per example: key, problem_id, label, verdict, score,
    completion_tokens, analyses), OUT/manifest.json, and OUT/summary.json once every example is done
    (balanced accuracy, per-class recall, accuracy with bootstrap 95% intervals over problems; unparsed;
    the always-Positive / always-Negative references). Rerunning resumes.
    """
    from stepwiser.stages.eval_labels import LabelsEvalConfig, run_labels

    cfg = LabelsEvalConfig(judge=judge, data=data, out=out, split=split, maj=maj, max_tokens=max_tokens,
                           threshold=threshold, judge_kind=judge_kind, cot=cot, limit=limit, bootstrap=bootstrap,
                           seed=seed, engine=engine_opts["engine"], batch_items=batch_items)
    with _predictor("judge", judge, engine_opts, judge_kind, cot, max_tokens, seed, threshold, 1) as factory:
        summary = run_labels(cfg, factory, overwrite=overwrite)
    _print_labels_summary(summary)
    click.echo(f"wrote {out}/summary.json")
