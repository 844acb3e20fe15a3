"""What a judge GRPO run records: OUT/metrics.jsonl, the compact progress line, validation and the plot.

metrics.jsonl holds one line per logged optimiser step (`{"step": N, ...}` with the names of `METRICS`)
and, when validation is on, one line per validation (`{"step": N, "val_balanced_accuracy": ...}`).
Generation metrics (reward, accuracy, recalls, unparsed, completion length, zero-variance groups,
generation_s) appear on the steps that generated a batch; optimisation metrics (loss, entropy, clip
fractions, step_s, optimisation_s) on every step. The first optimiser step after a generation is
on-policy, so its clip fractions are exactly 0.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from stepwiser.core.metrics import auroc, best_threshold, verdict_metrics
from stepwiser.io.records import iter_jsonl

# TRL's log keys -> the names written to metrics.jsonl
METRICS = {
    "reward": "reward", "judge/accuracy": "accuracy", "judge/recall_positive": "recall_positive",
    "judge/recall_negative": "recall_negative", "judge/unparsed": "unparsed", "judge/format_failure": "format_failure",
    "completions/mean_length": "completion_length", "completions/clipped_ratio": "truncated",
    "frac_reward_zero_std": "zero_variance_groups", "reward_std": "reward_std", "entropy": "entropy",
    "clip_ratio/low_mean": "clip_low", "clip_ratio/high_mean": "clip_high", "clip_ratio/region_mean": "clip_region",
    "loss": "loss", "grad_norm": "grad_norm", "learning_rate": "lr", "time/generation": "generation_s",
    "epoch": "epoch",
}
SHOWN = (("reward", "reward", "{:.3f}"), ("acc", "accuracy", "{:.3f}"), ("rec+", "recall_positive", "{:.2f}"),
         ("rec-", "recall_negative", "{:.2f}"), ("unparsed", "unparsed", "{:.2f}"),
         ("format fail", "format_failure", "{:.2f}"),
         ("len", "completion_length", "{:.0f}"), ("zero-var", "zero_variance_groups", "{:.2f}"),
         ("H", "entropy", "{:.2f}"), ("clip lo", "clip_low", "{:.4f}"), ("clip hi", "clip_high", "{:.4f}"),
         ("s", "step_s", "{:.1f}"), ("val bacc", "val_balanced_accuracy", "{:.3f}"),
         ("val cal", "val_calibrated_balanced_accuracy", "{:.3f}"), ("val auroc", "val_auroc", "{:.3f}"))


def metrics_record(step: int, logs: dict, step_s: float | None = None) -> dict:
    """One metrics.jsonl line: our names for TRL's keys; `optimisation_s` = step time minus generation."""
    rec = {"step": step, "time": round(time.time(), 1)}
    rec.update({ours: logs[k] for k, ours in METRICS.items() if k in logs and logs[k] is not None})
    if step_s is not None:
        rec["step_s"] = round(step_s, 3)
        rec["optimisation_s"] = round(step_s - rec.get("generation_s", 0.0), 3)
    return rec


def format_metrics(rec: dict) -> str:
    parts = [f"{name} {fmt.format(rec[k])}" for name, k, fmt in SHOWN if isinstance(rec.get(k), (int, float))]
    return f"step {rec['step']}: " + "  ".join(parts)


def _append(path: Path, rec: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def validate(model, tokenizer, examples, cot: bool, max_tokens: int, seed: int = 0, batch_size: int = 64,
             prompt: str = "full") -> dict:
    """Greedy (k = 1) judgments of `examples` by an in-memory model, scored against their labels; without
    CoT also the judge's P(Positive) (`calibrated_metrics`)."""
    from stepwiser.engines.hf import HFEngine
    from stepwiser.judges.base import JudgeItem
    from stepwiser.judges.generative import GenerativeJudge
    from stepwiser.judges.verdict_probability import VerdictProbabilityJudge

    was_training = model.training
    model.eval()
    items = [JudgeItem(e.problem, list(e.history), e.chunk) for e in examples]
    try:
        engine = HFEngine("validation", hf_model=model, tokenizer=tokenizer, batch_size=batch_size)
        judge = GenerativeJudge(engine, cot=cot, max_tokens=max_tokens, seed=seed, prompt=prompt)
        res = judge.judge(items, k=1)
        scores = None if cot else VerdictProbabilityJudge(engine, prompt=prompt).scores(items)
    finally:
        model.train(was_training)
    labels = [e.label for e in examples]
    out = verdict_metrics(labels, [j.verdicts[0] for j in res])
    out["completion_tokens"] = sum(j.tokens for j in res) / len(res)
    if scores is not None and len(set(labels)) == 2:
        out.update(calibrated_metrics(labels, scores))
    return out


def calibrated_metrics(labels: list[int], scores: list[float]) -> dict:
    """Validation of a no-CoT judge read by P(Positive): AUROC (fraction), and the balanced accuracy at the
    threshold that maximises it on these examples (`best_threshold`; checkpoint selection `--by calibrated`)."""
    cut, bacc = best_threshold(labels, scores)
    return {"auroc": auroc(labels, scores) / 100.0, "threshold": cut, "calibrated_balanced_accuracy": bacc}


def metrics_callbacks(path: Path, show: bool = True, val_examples=None, eval_steps: int = 0, cot: bool = True,
                      max_tokens: int = 1024, seed: int = 0, prompt: str = "full"):
    """Callbacks: write metrics.jsonl and time steps; validate every `eval_steps` (and before the first
    step); print one compact line per logged step instead of the raw log dict.

    Several processes: rank 0 validates on its full copy of the model while the others wait at a barrier
    (the first callback's `val_examples` may be emptied to turn validation off, e.g. for sharded weights)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    from stepwiser.train.dist import barrier

    def run_validation(examples, args, state, model, tokenizer) -> None:
        if not examples or not eval_steps:
            return
        if state.is_world_process_zero:
            import torch

            t0 = time.perf_counter()
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bool(args.bf16)):
                res = validate(model, tokenizer, examples, cot, max_tokens, seed, prompt=prompt)
            rec = {"step": state.global_step, "time": round(time.time(), 1), "val_seconds":
                   round(time.perf_counter() - t0, 1), **{f"val_{k}": v for k, v in res.items()}}
            _append(path, rec)
            state.stepwiser_last_val = rec
        barrier()

    class MetricsToJsonl(TrainerCallback):
        def __init__(self):
            self.t0, self.step_s = None, None
            self.val_examples = list(val_examples or [])

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
            if state.global_step == 0:
                run_validation(self.val_examples, args, state, model, processing_class)

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
            self.step_s = time.perf_counter() - self.t0 if self.t0 is not None else None
            if eval_steps and (state.global_step % eval_steps == 0 or state.global_step == state.max_steps):
                run_validation(self.val_examples, args, state, model, processing_class)

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            rec = metrics_record(state.global_step, logs, self.step_s if args.logging_steps == 1 else None)
            _append(path, rec)
            state.stepwiser_last_metrics = rec

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            rec = getattr(state, "stepwiser_last_metrics", None)
            if show and state.is_world_process_zero and self.training_bar is not None and rec is not None:
                val = getattr(state, "stepwiser_last_val", None) or {}
                self.training_bar.write(format_metrics({**rec, **{k: v for k, v in val.items() if k != "step"}}))
                state.stepwiser_last_metrics = state.stepwiser_last_val = None

    return MetricsToJsonl(), CompactProgress()


COLLAPSE_WINDOW = 3   # generation batches averaged by the collapse watch


def collapse_callback(threshold: float | None, action: str = "warn"):
    """The collapse watch: when the share of prompt groups with zero reward variance (no gradient), averaged
    over the last `COLLAPSE_WINDOW` generation batches, reaches `threshold`, warn (`action` "warn", once per
    batch) or end training cleanly ("stop": the Trainer stops after this step, the final model is saved).
    The callback's `stopped` then says why (None while training goes on). `threshold` None: off.

    Widening the batch (more prompts per generation) is not offered: TRL fixes the generation batch and its
    sampler when training starts, and the prompts of each batch are already drawn afresh from the whole set."""
    import warnings

    from transformers import TrainerCallback

    class CollapseWatch(TrainerCallback):
        def __init__(self):
            self.seen: list[float] = []
            self.stopped: str | None = None

        def on_log(self, args, state, control, logs=None, **kw):
            share = (logs or {}).get("frac_reward_zero_std")
            if threshold is None or share is None:
                return
            self.seen.append(float(share))
            window = self.seen[-COLLAPSE_WINDOW:]
            mean = sum(window) / len(window)
            if len(window) < COLLAPSE_WINDOW or mean < threshold:
                return
            why = (f"collapse: {mean:.2f} of the prompt groups had zero reward variance over the last "
                   f"{COLLAPSE_WINDOW} generation batches (threshold {threshold:g}) at step {state.global_step}")
            if action == "stop":
                self.stopped = why
                control.should_training_stop = True
            if state.is_world_process_zero:
                warnings.warn(f"train-judge: {why}" + ("; stopping" if action == "stop" else ""), stacklevel=2)

    return CollapseWatch()


def read_metrics(out: str | os.PathLike) -> list[dict]:
    path = Path(out) / "metrics.jsonl"
    return [o for _, o in iter_jsonl(path)] if path.exists() else []


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines after `last_step` (the resumed checkpoint) so a resumed run does not repeat steps."""
    if not path.exists():
        return
    keep = [o for _, o in iter_jsonl(path, on_error="skip") if o.get("step", 0) <= last_step]
    path.write_text("".join(json.dumps(o) + "\n" for o in keep), encoding="utf-8")


def summarize_metrics(rows: list[dict]) -> dict:
    """Means over the run of the main training metrics, and the last validation (manifest, CLI summary)."""
    out = {}
    for k in ("reward", "accuracy", "recall_positive", "recall_negative", "unparsed", "format_failure",
              "completion_length",
              "zero_variance_groups", "entropy", "clip_low", "clip_high", "generation_s", "optimisation_s"):
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        if vals:
            out[f"mean_{k}"] = round(sum(vals) / len(vals), 4)
    vals = [r for r in rows if "val_balanced_accuracy" in r]
    if vals:
        out.update({k: round(v, 4) for k, v in vals[-1].items() if k.startswith("val_")})
    return out


PANELS = (("reward and accuracy", ("reward", "accuracy", "val_balanced_accuracy", "val_calibrated_balanced_accuracy",
                                   "val_auroc")),
          ("per-class recall", ("recall_positive", "recall_negative", "val_recall_positive", "val_recall_negative")),
          ("format", ("unparsed", "format_failure", "zero_variance_groups", "truncated")),
          ("clip fractions", ("clip_low", "clip_high")),
          ("entropy", ("entropy",)), ("completion length", ("completion_length",)))


def plot_metrics(rows: list[dict], path: str | os.PathLike, title: str = "") -> Path | None:
    """A PNG of the curves (one panel per group of `PANELS`); None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (name, keys) in zip(axes.flat, PANELS):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o" if k.startswith("val_") or len(pts) < 50 else None, markersize=3,
                        label=k)
        ax.set_title(name)
        ax.set_xlabel("optimiser step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
