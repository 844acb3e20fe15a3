"""GRPO of the chunk policy (beyond the paper) on TRL's GRPOTrainer: an outcome reward, optionally plus the
StepWiser judge's process reward (`stepwiser train-policy-grpo`; docs/PROCESS_REWARD.md).

Prompts are exactly those of `stepwise sample` (`policy_messages(problem)`, the policy's chat template), so a
trained policy is evaluated as it was trained. Rewards, per completion:

- ``outcome``: 1.0 when the final answer verifies against the problem's `answer` (`stepwiser.core.verify`,
  the rule `sample` uses for `correct`: the last boxed answer, math-verify), else 0.0 (no answer: 0.0);
- ``outcome+process``: that plus `process_weight` x the judge's process reward (`ProcessReward`: every chunk
  judged with the chunks before it as history, aggregated by `aggregate`; a completion without chunks
  gets 0). TRL sums the two (``reward_weights = [1, process_weight]``) before normalising within a group.
  `process_weight` 0 trains on the outcome alone while logging the process reward.

Run layout under ``cfg.out``: ``checkpoints/`` (resumable), ``metrics.jsonl`` (one line per logged step:
outcome_reward, process_reward, reward (the weighted total), zero_variance_groups, completion_length,
step_s, generation_s, judge_positive_share, judge_unparsed, judge_uncovered (chunks a micro judge's vocabulary
cannot encode: unparsed, see `CoverageGuard`), judge_s, answer_unparsed, entropy, loss, ...),
``manifest.json`` (C7: the same config resumes, a changed one is refused) and ``final/``: a plain HF model
directory (LoRA merged) with its tokenizer, usable by every engine.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from stepwiser.core.aggregate import AGGREGATES, UNPARSED_RULES
from stepwiser.core.chunks import STYLES
from stepwiser.data.prompts import policy_messages
from stepwiser.errors import StepwiserError
from stepwiser.io.config import check_choices, option
from stepwiser.io.records import Problem, RunManifest, read_records
from stepwiser.judges.coverage import CoverageGuard, guard_judge
from stepwiser.judges.load import JudgeOptions
from stepwiser.judges.process_reward import ProcessReward, completion_text
from stepwiser.train.dist import barrier, is_main, world_size
from stepwiser.train.judge_config import GRPO_DEFAULTS, LOSS_TYPES, SCALE_REWARDS, SCHEDULERS
from stepwiser.train.judge_metrics import metrics_record, read_metrics, summarize_metrics, trim_metrics
from stepwiser.train.sft import ModelTrainOptions

REWARDS = ("outcome", "outcome+process")
# settings that only matter with the process reward: left out of an outcome run's manifest
PROCESS_FIELDS = ("judge", "judge_kind", "cot", "judge_max_tokens", "threshold", "aggregate", "unparsed",
                  "process_weight", "chunk_style")


@dataclass
class PolicyGRPOConfig(JudgeOptions, ModelTrainOptions):
    """One `train-policy-grpo` run. Batches count completions, as TRL does: `per_device_batch` completions
    per micro-batch, `grad_accum` micro-batches per optimiser step, so one optimiser step sees
    per_device_batch x grad_accum x world / num_generations prompts (default 64 / 8 = 8 prompts)."""

    model: str = option(help="The chunk policy to start from (a train-policy OUT/final, HF id or folder).")
    problems: str = option(help="Training problems JSONL (id, problem, answer).", path="file")
    out: str = option(help="Run folder: checkpoints/, metrics.jsonl, manifest.json and final/ (the policy).",
                      short="-o")
    reward: str = option("outcome", "outcome: 1 for a right final answer, else 0; outcome+process: that plus "
                                    "--process-weight x the judge's process reward (needs --judge).",
                         choices=REWARDS)
    judge: str | None = option(None, "outcome+process: the step judge (a train-judge folder or model), run in "
                                     "this process (--judge-engine options).")
    aggregate: str = option("mean", "outcome+process: chunk verdicts -> process reward: min (1 if all "
                                    "Positive), mean (share Positive) or first-negative.", choices=AGGREGATES)
    unparsed: str = option("negative", "outcome+process: an unparsed chunk verdict counts as negative, "
                                       "positive, or is skipped.", choices=UNPARSED_RULES)
    process_weight: float = option(1.0, "outcome+process: reward = outcome + this x process (0: trained on "
                                        "the outcome alone, the process reward only logged).")
    chunk_style: str = option("tags", "outcome+process: how completions are split into chunks (C6).",
                              choices=STYLES)
    lr: float = option(1e-4, "Learning rate (a micro policy; larger models want about 1e-6).")
    epochs: float = option(1.0, "Passes over the problems.")
    max_steps: int | None = option(None, "Optimiser steps (overrides --epochs).")
    per_device_batch: int = option(64, "Completions per micro-batch (a multiple of --num-generations).")
    grad_accum: int = option(1, "Micro-batches per optimiser step.")
    optimizer_steps_per_generation: int = option(1, "Optimiser steps per generation batch (1: every step "
                                                    "samples fresh completions; clipping acts from the 2nd).")
    num_generations: int = option(8, "Completions per prompt (the GRPO group).")
    max_completion_length: int = option(160, "Most tokens per completion (micro solutions: about 100).")
    temperature: float = option(GRPO_DEFAULTS["temperature"], "Sampling temperature.")
    top_p: float = option(GRPO_DEFAULTS["top_p"], "Sampling top-p.")
    beta: float = option(GRPO_DEFAULTS["beta"], "KL coefficient.")
    loss_type: str = option(GRPO_DEFAULTS["loss_type"], "TRL loss type.", choices=LOSS_TYPES)
    epsilon: float = option(GRPO_DEFAULTS["epsilon"], "Lower clip range.")
    epsilon_high: float = option(GRPO_DEFAULTS["epsilon_high"], "Upper clip range (clip-higher).")
    scale_rewards: str = option(GRPO_DEFAULTS["scale_rewards"], "Advantage normalisation.", choices=SCALE_REWARDS)
    mask_truncated_completions: bool = option(GRPO_DEFAULTS["mask_truncated_completions"], "Leave completions cut at --max-completion-length out of "
                                                     "the loss.")
    scheduler: str = option("constant", "Learning-rate schedule.", choices=SCHEDULERS)
    lr_warmup_ratio: float = option(0.0, "Share of the steps with a linear learning-rate warm-up.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    seed: int = option(0, "Seed of the problem order, sampling and the judge.")
    verify_timeout: float = option(5.0, "Seconds per answer check (math-verify in a worker process).")
    log_completions: bool = option(False, "Print sample completions when logging.")
    logging_steps: int = option(1, "Log every N optimiser steps.")
    save_steps: int = option(50, "Checkpoint every N optimiser steps.")
    save_total_limit: int = option(2, "Checkpoints kept.")
    resume: bool = option(True, "Continue from the last checkpoint in OUT/checkpoints.")
    num_threads: int | None = option(None, "torch CPU threads (the policy and an in-process judge share them).")

    VOLATILE = ("logging_steps", "save_steps", "save_total_limit", "resume", "num_threads", "log_completions",
                "verify_timeout")

    def __post_init__(self):
        check_choices(self)
        if not self.model or not self.out or not self.problems:
            raise ValueError("model, problems and out are required")
        if self.reward == "outcome+process" and not self.judge:
            raise ValueError("reward outcome+process needs judge (the step judge model)")
        positive = {k: getattr(self, k) for k in (
            "lr", "epochs", "per_device_batch", "grad_accum", "optimizer_steps_per_generation", "num_generations",
            "max_completion_length", "temperature", "verify_timeout", "logging_steps", "save_steps", "lora_r",
            "lora_alpha")}
        positive.update({k: getattr(self, k) for k in ("max_steps", "num_threads") if getattr(self, k) is not None})
        bad = [f"{k}={v!r}" for k, v in positive.items() if not isinstance(v, (int, float)) or v <= 0]
        if bad:
            raise ValueError(f"these settings must be positive numbers: {', '.join(bad)}")
        self._check_ranges()

    def _check_ranges(self) -> None:
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2 (GRPO normalises rewards within a group)")
        batch = self.per_device_batch * self.grad_accum * self.optimizer_steps_per_generation
        if batch % self.num_generations:
            raise ValueError(f"per_device_batch x grad_accum x optimizer_steps_per_generation ({batch}) must be "
                             f"a multiple of num_generations ({self.num_generations})")
        if self.process_weight < 0:
            raise ValueError(f"process_weight must be >= 0, got {self.process_weight}")
        if not (0 <= self.epsilon < 1 and self.epsilon_high >= 0 and self.beta >= 0):
            raise ValueError("need 0 <= epsilon < 1, epsilon_high >= 0 and beta >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.lr_warmup_ratio < 1 or not 0 <= self.lora_dropout < 1:
            raise ValueError("lr_warmup_ratio and lora_dropout must be in [0, 1)")

    @property
    def uses_judge(self) -> bool:
        return self.reward == "outcome+process"

    @property
    def trl_steps_per_generation(self) -> int:
        """TRL's steps_per_generation counts micro-batches: optimiser steps x gradient accumulation."""
        return self.optimizer_steps_per_generation * self.grad_accum


def run_config(cfg: PolicyGRPOConfig) -> dict:
    """The config a run's manifest records and hashes: an outcome run leaves out the process settings (a
    recipe's judge does not make two outcome runs differ)."""
    config = dataclasses.asdict(cfg)
    if not cfg.uses_judge:
        config = {k: v for k, v in config.items() if k not in PROCESS_FIELDS}
    return config


# --------------------------------------------------------------------------- data and rewards

def policy_rows(problems: list[Problem]) -> list[dict]:
    """GRPOTrainer rows: the policy prompt of `sample`, plus the columns the rewards read (TRL hands every
    column to the reward functions as keyword lists): `answer` (outcome), `problem` (the judge)."""
    return [{"prompt": policy_messages(p.problem), "problem": p.problem, "answer": str(p.answer), "id": p.id}
            for p in problems]


def outcome_rewards(texts: list[str], answers: list[str], timeout: float = 5.0) -> list[float]:
    """1.0 where the final answer of the text verifies against the answer (as `sample` decides `correct`),
    else 0.0 (a wrong, missing or unparsable answer)."""
    from stepwiser.core.verify import check_batch

    return [1.0 if v.correct else 0.0 for v in check_batch(list(zip(texts, answers)), timeout=timeout)]


class OutcomeReward:
    """The outcome reward as a TRL reward function (reads the `answer` column). Logs `outcome/unparsed`:
    the share of completions without a final answer."""

    __name__ = "outcome"   # TRL names the reward's metrics after it: rewards/outcome/mean

    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout

    def __call__(self, prompts, completions, answer, log_metric=None, **kwargs) -> list[float]:
        from stepwiser.core.verify import extract_answer

        texts = [completion_text(c) for c in completions]
        rewards = outcome_rewards(texts, [str(a) for a in answer], self.timeout)
        if callable(log_metric):
            for t in texts:
                log_metric("outcome/unparsed", float(extract_answer(t) is None))
        return rewards


class PolicyProcessReward(ProcessReward):
    """`ProcessReward` that also logs `process_reward/uncovered_share` when its judge is a `CoverageGuard`."""

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        rewards = super().__call__(prompts, completions, **kwargs)
        if isinstance(self.judge, CoverageGuard) and callable(kwargs.get("log_metric")):
            kwargs["log_metric"]("process_reward/uncovered_share", self.judge.last_share)
        return rewards


def reward_functions(cfg: PolicyGRPOConfig, judge=None) -> tuple[list, list[float]]:
    """The reward functions of a run and their weights: [outcome] or [outcome, process] with [1, weight]."""
    outcome = OutcomeReward(cfg.verify_timeout)
    if not cfg.uses_judge:
        return [outcome], [1.0]
    if judge is None:
        raise StepwiserError("reward outcome+process needs a judge")
    process = PolicyProcessReward(guard_judge(judge), aggregate=cfg.aggregate, unparsed=cfg.unparsed,
                                  chunk_style=cfg.chunk_style, empty=0.0, problem_key="problem")
    return [outcome, process], [1.0, float(cfg.process_weight)]


def load_run_judge(cfg: PolicyGRPOConfig, engine_opts=None):
    """The step judge of an outcome+process run, in this process (engine options: default hf)."""
    from stepwiser.judges.load import load_judge

    return load_judge(cfg.judge, engine_opts, kind=cfg.judge_kind, cot=cfg.cot, max_tokens=cfg.judge_max_tokens,
                      seed=cfg.seed, threshold=cfg.threshold)


# --------------------------------------------------------------------------- trainer

def policy_grpo_args(cfg: PolicyGRPOConfig, reward_weights: list[float]):
    """The TRL GRPOConfig of a policy run (the judge's GRPO settings builder, plus the reward weights)."""
    from stepwiser.train.grpo import trl_grpo_config

    return trl_grpo_config(cfg, cfg.lr, cfg.scheduler, reward_weights=reward_weights)


def make_policy_trainer(cfg: PolicyGRPOConfig, model_path: str, rows: list[dict], rewards: list,
                        weights: list[float], callbacks=()):
    """The GRPOTrainer of a run (model in float32; bf16 runs use autocast). It also logs `time/generation`
    (seconds spent generating and scoring each generation batch, the judge included)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from stepwiser.train.sft import check_micro_coverage, peft_config_of

    class TimedGRPOTrainer(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            with self.accelerator.autocast():
                out = super()._generate_and_score_completions(inputs)
            self._metrics["train" if self.model.training else "eval"]["time/generation"].append(
                time.perf_counter() - t0)
            return out

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if not tokenizer.chat_template:
        raise StepwiserError(f"model {cfg.model!r} has no chat template; the policy prompt is a chat")
    rows = check_micro_coverage(tokenizer, rows, cfg.model)
    args = policy_grpo_args(cfg, weights)   # before the model (DeepSpeed ZeRO-3 shards from_pretrained)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    return TimedGRPOTrainer(model=model, reward_funcs=list(rewards), args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list(rows), callbacks=list(callbacks),
                            peft_config=peft_config_of(cfg) if cfg.lora else None)


# --------------------------------------------------------------------------- metrics

# TRL's log keys of the policy run -> the names written to metrics.jsonl (besides judge_metrics.METRICS)
POLICY_METRICS = {
    "rewards/outcome/mean": "outcome_reward", "rewards/process_reward/mean": "process_reward",
    "outcome/unparsed": "answer_unparsed", "process_reward/positive_share": "judge_positive_share",
    "process_reward/unparsed_share": "judge_unparsed", "process_reward/chunks_per_response": "chunks_per_response",
    "process_reward/no_chunks": "no_chunks", "process_reward/judge_seconds": "judge_s",
    "process_reward/uncovered_share": "judge_uncovered",
}
SHOWN = (("outcome", "outcome_reward", "{:.3f}"), ("process", "process_reward", "{:.3f}"),
         ("reward", "reward", "{:.3f}"), ("zero-var", "zero_variance_groups", "{:.2f}"),
         ("len", "completion_length", "{:.0f}"), ("gen s", "generation_s", "{:.1f}"),
         ("judge s", "judge_s", "{:.1f}"), ("s", "step_s", "{:.1f}"))
MEANS = ("outcome_reward", "process_reward", "judge_positive_share", "judge_uncovered", "answer_unparsed", "step_s",
         "judge_s")


def policy_metrics_record(step: int, logs: dict, step_s: float | None = None) -> dict:
    """One metrics.jsonl line: `judge_metrics.metrics_record` plus the policy run's reward figures."""
    rec = metrics_record(step, logs, step_s)
    rec.update({ours: logs[k] for k, ours in POLICY_METRICS.items() if logs.get(k) is not None})
    return rec


def format_policy_metrics(rec: dict) -> str:
    parts = [f"{name} {fmt.format(rec[k])}" for name, k, fmt in SHOWN if isinstance(rec.get(k), (int, float))]
    return f"step {rec['step']}: " + "  ".join(parts)


def policy_callbacks(path: Path, show: bool = True):
    """Callbacks: time each step, append each log to metrics.jsonl, print one compact line per step."""
    import json

    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class MetricsToJsonl(TrainerCallback):
        t0 = step_s = None

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.step_s = time.perf_counter() - self.t0 if self.t0 is not None else None

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            rec = policy_metrics_record(state.global_step, logs, self.step_s if args.logging_steps == 1 else None)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            state.stepwiser_last_metrics = rec

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            rec = getattr(state, "stepwiser_last_metrics", None)
            if show and state.is_world_process_zero and self.training_bar is not None and rec is not None:
                self.training_bar.write(format_policy_metrics(rec))
                state.stepwiser_last_metrics = None

    return MetricsToJsonl(), CompactProgress()


def summarize_policy_metrics(rows: list[dict]) -> dict:
    """Means over the run: `summarize_metrics` plus the policy run's rewards and timings."""
    out = summarize_metrics(rows)
    for k in MEANS:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        if vals:
            out[f"mean_{k}"] = round(sum(vals) / len(vals), 4)
    return out


# --------------------------------------------------------------------------- the run

def _open_run(cfg: PolicyGRPOConfig, config: dict, overwrite: bool):
    """Rank 0 opens the manifest (C7; `overwrite` clears the outputs); the other ranks wait for it."""
    out, manifest = Path(cfg.out), None
    if is_main():
        manifest = RunManifest.open(out, "train-policy-grpo", config, inputs=[cfg.problems], overwrite=overwrite,
                                    volatile=PolicyGRPOConfig.VOLATILE)
        if overwrite:
            for p in ("checkpoints", "final", "adapter"):
                shutil.rmtree(out / p, ignore_errors=True)
    barrier()
    return manifest


def _drop_default_progress(trainer) -> None:
    from transformers.trainer_callback import ProgressCallback

    for cb in list(trainer.callback_handler.callbacks):
        if type(cb) is ProgressCallback:
            trainer.callback_handler.callbacks.remove(cb)


def train_policy_grpo(cfg: PolicyGRPOConfig, overwrite: bool = False, judge=None, judge_engine=None,
                      show: bool = True) -> Path:
    """GRPO-train the policy `cfg.model` on `cfg.problems`; return OUT/final.

    `judge`: the step judge of reward outcome+process (any `StepJudge`, or a zero-argument factory of one);
    default: `cfg.judge` loaded with `judge_engine` options (hf). Resumes from the last checkpoint in
    OUT/checkpoints; a finished run with the same config returns at once; another config is refused (C7)."""
    from transformers.trainer_utils import get_last_checkpoint

    from stepwiser.models.loading import resolve_model
    from stepwiser.train.sft import save_final

    problems = read_records(cfg.problems, Problem)
    if not problems:
        raise StepwiserError(f"{cfg.problems}: no problems to train on")
    if cfg.num_threads:
        import torch
        torch.set_num_threads(cfg.num_threads)
    out, final, config = Path(cfg.out), Path(cfg.out) / "final", run_config(cfg)
    if not overwrite and RunManifest.completed(out, config, PolicyGRPOConfig.VOLATILE) and (final / "config.json").exists():
        return final
    manifest = _open_run(cfg, config, overwrite)
    ckdir, metrics = out / "checkpoints", out / "metrics.jsonl"
    last = get_last_checkpoint(str(ckdir)) if cfg.resume and ckdir.is_dir() else None
    if is_main():
        trim_metrics(metrics, int(last.rsplit("-", 1)[1]) if last else 0)
    if cfg.uses_judge:
        judge = judge() if callable(judge) and not hasattr(judge, "judge") else judge
        judge = judge if judge is not None else load_run_judge(cfg, judge_engine)
    rewards, weights = reward_functions(cfg, judge)
    base = resolve_model(cfg.model)
    trainer = make_policy_trainer(cfg, base, policy_rows(problems), rewards, weights, policy_callbacks(metrics, show))
    _drop_default_progress(trainer)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    save_final(trainer, SimpleNamespace(lora=cfg.lora, model=base), final)
    if is_main():
        manifest.finish({"problems": len(problems), "steps": trainer.state.global_step, "world_size": world_size(),
                         "train_loss": round(result.training_loss, 6), "seconds": round(time.time() - start, 1),
                         "resumed_from": last, "final": str(final), **summarize_policy_metrics(read_metrics(out))})
    return final
