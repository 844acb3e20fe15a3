"""Judge RL (STEPWISER.md 2.3) on TRL's GRPOTrainer, and the config shared by every `train-judge` method.

The StepWiser judge: prompts are `judge_messages(JudgeItem(problem, history, chunk))`, the reward is 1 when
the judge's last boxed verdict equals the Monte Carlo label, else 0 (unparsed = 0). The no-CoT ablation
(`grpo-nocot`) asks for the bare verdict and gives `format_penalty` (-1.0) to anything but a lone
``\\boxed{Positive}`` / ``\\boxed{Negative}``.

Defaults follow the paper where it is explicit (4 generations per prompt, lr 1e-6, clip-higher
epsilon 0.2 / epsilon_high 0.28, 4 optimiser steps per generation batch) and the project's conventions
where it is not (beta 0, TRL ``loss_type="dapo"``, group-normalised advantages, temperature 1.0).
Several optimiser steps per generation batch matter: clipping only acts off-policy, so with one step per
batch the importance ratio is exactly 1 and clip-higher does nothing (the first step of each batch always
logs clip fractions of 0; the later ones show whether clipping happens).

Run layout under ``cfg.out``: ``checkpoints/`` (resumable), ``metrics.jsonl`` (one line per logged step:
reward, accuracy, per-class recall, unparsed share, completion length, zero-variance groups, entropy,
low/high clip fractions, timings), ``manifest.json`` (C7) and ``final/``: a plain HF model directory (LoRA
merged) with its tokenizer and ``stepwiser_judge.json``, usable by every engine.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from stepwiser.errors import StepwiserError
from stepwiser.judges.base import JudgeItem, write_judge_meta
from stepwiser.judges.prompts import judge_messages
from stepwiser.core.verdict import parse_verdict
from stepwiser.data.judge_examples import data_file, label_type_of, load_judge_examples, shuffled_labels  # noqa: F401
from stepwiser.io.records import JudgeExample, RunManifest
from stepwiser.train.judge_metrics import metrics_callbacks, plot_metrics, read_metrics, summarize_metrics, trim_metrics

METHODS = ("grpo", "grpo-nocot", "rft", "disc-sft", "warmup")
GRPO_METHODS = ("grpo", "grpo-nocot")
LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")
SCALE_REWARDS = ("group", "batch", "none")
VLLM_MODES = ("colocate", "server")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")


@dataclass
class JudgeTrainConfig:
    """One `train-judge` run. Settings marked (GRPO) or (SFT) apply to those methods only.

    Batches: GRPO counts completions (`per_device_batch` completions per micro-batch, `grad_accum`
    micro-batches per optimiser step, `optimizer_steps_per_generation` optimiser steps per generation batch,
    so one generation batch holds per_device_batch x grad_accum x world x steps / num_generations prompts).
    The SFT methods (rft, disc-sft, warmup and the format warm-up before GRPO) count sequences:
    `global_batch` per optimiser step."""

    model: str
    out: str
    method: str = "grpo"
    cot: bool | None = None              # judge format; default: False for grpo-nocot, else True (warmup: either)
    data: str | None = None              # a judge-data folder (its train.jsonl) or a JSONL file
    lr: float | None = None              # default: 1e-6 for GRPO (paper), 1e-5 for the SFT methods (paper)
    epochs: float = 1.0
    max_steps: int | None = None         # optimiser steps; overrides epochs
    per_device_batch: int = 16
    grad_accum: int = 1                  # (GRPO)
    global_batch: int = 32               # (SFT)
    scheduler: str | None = None         # default: constant for GRPO, cosine for the SFT methods
    lr_warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    # GRPO
    num_generations: int = 4
    optimizer_steps_per_generation: int = 4
    epsilon: float = 0.2
    epsilon_high: float = 0.28
    beta: float = 0.0
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int | None = None   # default: 1024 with CoT, 32 for the bare verdict (paper: 3096)
    format_penalty: float = -1.0         # (grpo-nocot) reward of anything but a lone boxed verdict
    mask_truncated_completions: bool = False
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    vllm_max_model_length: int | None = None
    log_completions: bool = False
    # validation during GRPO: greedy judgments of the validation split every `eval_steps` (0: off)
    eval_steps: int = 0
    val_data: str | None = None          # default: val.jsonl beside the training data (a judge-data folder)
    eval_max_examples: int | None = 256  # the first N validation examples (None: all)
    # the control: labels permuted across training examples (seeded; class balance kept)
    shuffle_labels: bool = False
    # format warm-up (label-agnostic SFT before GRPO; the whole run for method "warmup")
    warmup_steps: int = 0
    warmup_lr: float = 1e-5
    # rejection-sampling fine-tuning
    rft_k: int = 4
    rft_max_tokens: int = 1024
    rft_temperature: float = 1.0
    rft_balance: bool = True
    # SFT
    max_length: int = 4096
    packing: bool = False
    # common
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int = 2
    resume: bool = True
    num_threads: int | None = None

    VOLATILE = ("logging_steps", "save_steps", "save_total_limit", "resume", "num_threads", "log_completions",
                "vllm_server_base_url", "vllm_gpu_memory_utilization", "eval_steps", "val_data",
                "eval_max_examples")

    def __post_init__(self):
        _choice("method", self.method, METHODS)
        _choice("loss_type", self.loss_type, LOSS_TYPES)
        _choice("scale_rewards", self.scale_rewards, SCALE_REWARDS)
        _choice("vllm_mode", self.vllm_mode, VLLM_MODES)
        if self.scheduler is not None:
            _choice("scheduler", self.scheduler, SCHEDULERS)
        if self.cot is None:
            self.cot = self.method != "grpo-nocot"
        if self.max_completion_length is None:
            self.max_completion_length = 1024 if self.cot else 32
        if self.cot != (self.method != "grpo-nocot") and self.method != "warmup":
            raise ValueError(f"method {self.method} is {'not ' if self.cot else ''}a chain-of-thought judge; "
                             "only the warmup method takes either format")
        if not self.model or not self.out:
            raise ValueError("model and out are required")
        positive = {k: getattr(self, k) for k in (
            "epochs", "per_device_batch", "grad_accum", "global_batch", "num_generations",
            "optimizer_steps_per_generation", "warmup_lr", "rft_k", "rft_max_tokens",
            "max_length", "lora_r", "lora_alpha", "logging_steps", "save_steps")}
        positive.update({k: getattr(self, k) for k in ("lr", "max_steps", "num_threads", "max_completion_length")
                         if getattr(self, k) is not None})
        bad = [f"{k}={v!r}" for k, v in positive.items() if not isinstance(v, (int, float)) or v <= 0]
        if bad:
            raise ValueError(f"these settings must be positive numbers: {', '.join(bad)}")
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2 (GRPO normalises rewards within a group)")
        if self.warmup_steps < 0 or self.eval_steps < 0:
            raise ValueError("warmup_steps and eval_steps must be >= 0")
        if self.eval_max_examples is not None and self.eval_max_examples < 1:
            raise ValueError(f"eval_max_examples must be positive or null, got {self.eval_max_examples}")
        if not (0 <= self.epsilon < 1 and self.epsilon_high >= 0 and self.beta >= 0):
            raise ValueError("need 0 <= epsilon < 1, epsilon_high >= 0 and beta >= 0")
        if not 0 < self.top_p <= 1 or self.temperature <= 0 or self.rft_temperature <= 0:
            raise ValueError("need 0 < top_p <= 1 and positive temperatures")
        if not 0 <= self.lr_warmup_ratio < 1 or not 0 <= self.lora_dropout < 1:
            raise ValueError("lr_warmup_ratio and lora_dropout must be in [0, 1)")
        if self.use_vllm and self.vllm_mode == "server" and not self.vllm_server_base_url:
            raise ValueError("vllm_mode server needs vllm_server_base_url (e.g. http://localhost:8000)")

    @property
    def lr_scheduler(self) -> str:
        return self.scheduler or ("constant" if self.method in GRPO_METHODS else "cosine")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-6 if self.method in GRPO_METHODS else 1e-5)

    @property
    def steps_per_generation(self) -> int:
        """TRL's steps_per_generation counts micro-batches: optimiser steps x gradient accumulation."""
        return self.optimizer_steps_per_generation * self.grad_accum


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


# --------------------------------------------------------------------------- data

def validation_examples(cfg: JudgeTrainConfig) -> list[JudgeExample]:
    """The validation examples of a run (none without `eval_steps`): `val_data`, else val.jsonl of the
    judge-data folder given as `data`, cut to the first `eval_max_examples` (file order)."""
    if not cfg.eval_steps:
        return []
    if cfg.val_data:
        path = data_file(cfg.val_data, "val")
    elif cfg.data and Path(cfg.data).is_dir() and (Path(cfg.data) / "val.jsonl").is_file():
        path = Path(cfg.data) / "val.jsonl"
    else:
        raise StepwiserError("eval_steps is set but there is no validation data: give val_data (or a judge-data "
                             "folder with val.jsonl as data)")
    return load_judge_examples(path)[:cfg.eval_max_examples]


def judge_item(ex: JudgeExample) -> JudgeItem:
    return JudgeItem(problem=ex.problem, history=list(ex.history), chunk=ex.chunk)


def grpo_rows(examples: list[JudgeExample], cot: bool = True) -> list[dict]:
    """GRPOTrainer rows: a conversational prompt plus the `label` column the reward reads."""
    return [{"prompt": judge_messages(judge_item(e), cot), "label": int(e.label), "key": e.key} for e in examples]


# --------------------------------------------------------------------------- rewards

_LONE_BOXED = re.compile(r"\s*\\boxed\s*\{(?:[^{}]|\{[^{}]*\})*\}\s*")


def verdict_reward(text: str, label: int) -> float:
    """1 if the last boxed verdict of `text` equals `label`, else 0 (unparsed: 0)."""
    v = parse_verdict(text)
    return 1.0 if v is not None and v == label else 0.0


def is_bare_verdict(text: str) -> bool:
    """True for a lone boxed Positive/Negative (whitespace around it allowed), nothing else."""
    return bool(_LONE_BOXED.fullmatch(text)) and parse_verdict(text) is not None


def nocot_reward(text: str, label: int, penalty: float = -1.0) -> float:
    """The no-CoT reward: `penalty` unless `text` is a lone boxed verdict; then 1 if right, 0 if wrong."""
    return verdict_reward(text, label) if is_bare_verdict(text) else penalty


def completion_text(completion) -> str:
    """A TRL completion (a string, or a list of chat messages) as text."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion)


class JudgeReward:
    """The GRPO reward function. Besides the rewards it logs, per completion, whether the verdict is right
    (`judge/accuracy`), unparsed (`judge/unparsed`), and right among positive / negative labels (the
    per-class recalls); TRL averages each over all completions of all processes of the generation batch."""

    def __init__(self, cot: bool = True, format_penalty: float = -1.0):
        self.cot, self.format_penalty = cot, format_penalty
        self.__name__ = "judge"

    def __call__(self, prompts, completions, label, log_metric=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        if self.cot:
            rewards = [verdict_reward(t, y) for t, y in zip(texts, label)]
        else:
            rewards = [nocot_reward(t, y, self.format_penalty) for t, y in zip(texts, label)]
        if log_metric is not None:
            for t, y in zip(texts, label):
                v = parse_verdict(t)
                right = float(v is not None and v == y)
                log_metric("judge/accuracy", right)
                log_metric("judge/unparsed", float(v is None))
                log_metric("judge/recall_positive" if y == 1 else "judge/recall_negative", right)
                if not self.cot:
                    log_metric("judge/format_error", float(not is_bare_verdict(t)))
        return rewards


# --------------------------------------------------------------------------- trainer

def grpo_args(cfg: JudgeTrainConfig):
    """The TRL GRPOConfig of a run."""
    from trl import GRPOConfig

    from stepwiser.train.sft import has_accelerator

    vllm = {}
    if cfg.use_vllm:
        vllm = {"use_vllm": True, "vllm_mode": cfg.vllm_mode,
                "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
                "vllm_tensor_parallel_size": cfg.vllm_tensor_parallel_size,
                "vllm_max_model_length": cfg.vllm_max_model_length,
                "vllm_server_base_url": cfg.vllm_server_base_url}
    return GRPOConfig(
        output_dir=str(Path(cfg.out) / "checkpoints"), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1, per_device_train_batch_size=cfg.per_device_batch,
        gradient_accumulation_steps=cfg.grad_accum, steps_per_generation=cfg.steps_per_generation,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, top_p=cfg.top_p, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high,
        beta=cfg.beta, loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.lr_warmup_ratio, weight_decay=cfg.weight_decay, bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to="none", log_completions=cfg.log_completions,
        num_completions_to_print=4, remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not has_accelerator(), **vllm)


def make_grpo_trainer(cfg: JudgeTrainConfig, model_path: str, rows: list[dict], reward=None, callbacks=()):
    """The GRPOTrainer of a run; `reward` defaults to the judge reward of `cfg.method`. The trainer also logs
    `time/generation` (seconds spent generating and scoring each generation batch)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from stepwiser.train.sft import peft_config_of

    class TimedGRPOTrainer(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            with self.accelerator.autocast():   # bf16: generate in bf16 too (about 2x faster on CPUs with AMX)
                out = super()._generate_and_score_completions(inputs)
            self._metrics["train" if self.model.training else "eval"]["time/generation"].append(
                time.perf_counter() - t0)
            return out

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if not tokenizer.chat_template:
        raise StepwiserError(f"model {cfg.model!r} has no chat template; the judge prompt is a chat")
    args = grpo_args(cfg)  # before the model: under DeepSpeed ZeRO-3 it makes from_pretrained shard the weights
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    reward = reward or JudgeReward(cot=cfg.cot, format_penalty=cfg.format_penalty)
    return TimedGRPOTrainer(model=model, reward_funcs=reward, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list(rows), callbacks=list(callbacks),
                            peft_config=peft_config_of(cfg) if cfg.lora else None)


def _finished(out: Path, config: dict) -> bool:
    return RunManifest.completed(out, config, JudgeTrainConfig.VOLATILE)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_grpo(cfg: JudgeTrainConfig, examples: list[JudgeExample], init_model: str | None = None,
               overwrite: bool = False, reward=None, show: bool = True) -> Path:
    """GRPO-train a judge on `examples`; return `out/final` (a merged model with stepwiser_judge.json).

    `init_model`: the starting point (the format warm-up's output) instead of `cfg.model`. Resumes from the
    last checkpoint in out/checkpoints; a finished run with the same config returns at once (C7)."""
    from transformers.trainer_utils import get_last_checkpoint

    from stepwiser.models.loading import resolve_model
    from stepwiser.train.sft import save_final

    if cfg.method not in GRPO_METHODS:
        raise ValueError(f"train_grpo runs methods {', '.join(GRPO_METHODS)}, not {cfg.method!r}")
    if not examples:
        raise StepwiserError("no training examples")
    if cfg.num_threads:
        import torch
        torch.set_num_threads(cfg.num_threads)
    out, final = Path(cfg.out), Path(cfg.out) / "final"
    config = {**dataclasses.asdict(cfg), "init_model": init_model}
    inputs = [data_file(cfg.data)] if cfg.data else []
    if not overwrite and _finished(out, config) and (final / "config.json").exists():
        return final
    manifest = None
    if _is_main():
        manifest = RunManifest.open(out, "train-judge", config, inputs=inputs, overwrite=overwrite,
                                    volatile=JudgeTrainConfig.VOLATILE)
        if overwrite:
            for p in ("checkpoints", "final", "adapter"):
                shutil.rmtree(out / p, ignore_errors=True)
    ckdir, metrics = out / "checkpoints", out / "metrics.jsonl"
    last = get_last_checkpoint(str(ckdir)) if cfg.resume and ckdir.is_dir() else None
    if _is_main():
        trim_metrics(metrics, int(last.rsplit("-", 1)[1]) if last else 0)
    meta = {"cot": cfg.cot, "method": cfg.method, "label_type": label_type_of(examples), "base_model": cfg.model,
            "warmup": init_model is not None, "shuffled_labels": cfg.shuffle_labels}
    if _is_main():   # the run's judge metadata, for `export-judge` of its checkpoints
        write_judge_meta(out, "generative", **meta)
    base = resolve_model(init_model or cfg.model)
    val = validation_examples(cfg) if _world_size() == 1 else []
    callbacks = metrics_callbacks(metrics, show, val, cfg.eval_steps, cfg.cot, cfg.max_completion_length, cfg.seed)
    trainer = make_grpo_trainer(cfg, base, grpo_rows(examples, cfg.cot), reward, callbacks)
    _drop_default_progress(trainer)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    save_final(trainer, SimpleNamespace(lora=cfg.lora, model=base), final)
    if _is_main():
        write_judge_meta(final, "generative", **meta)
        rows = read_metrics(out)
        plot_metrics(rows, out / "metrics.png", f"{cfg.method} {cfg.model} lr {cfg.learning_rate:g}")
        manifest.finish({"examples": len(examples), "steps": trainer.state.global_step,
                         "train_loss": round(result.training_loss, 6), "seconds": round(time.time() - start, 1),
                         "resumed_from": last, "final": str(final), **summarize_metrics(rows)})
    return final


def _drop_default_progress(trainer) -> None:
    """Replace the Trainer's progress bar (which prints every raw log dict) by the compact one."""
    from transformers.trainer_callback import ProgressCallback

    for cb in list(trainer.callback_handler.callbacks):
        if type(cb) is ProgressCallback:
            trainer.callback_handler.callbacks.remove(cb)
