"""Judge RL (docs/METHOD.md 2.3) on TRL's GRPOTrainer (`grpo` and `grpo-nocot`; the config of every
`train-judge` method is `stepwiser.train.judge_config.JudgeTrainConfig`).

The StepWiser judge: prompts are `judge_messages(JudgeItem(problem, history, chunk))`, the reward is 1 when
the judge's boxed verdict equals the Monte Carlo label, 0 when it does not, and `format_penalty` (-1.0, as
the paper's no-CoT ablation) for a badly formed judgment: anything but exactly one ``\\boxed{Positive}`` /
``\\boxed{Negative}`` at the very end of the completion, ended by EOS (analysis text may come before the
box with CoT; nothing may with `grpo-nocot`, which asks for the bare verdict; a completion cut at
`max_completion_length` is badly formed). `judge/format_failure` logs the share penalised.

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

import json
import re
import shutil
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

from stepwiser.core.verdict import parse_verdict
from stepwiser.data.judge_examples import data_file, label_type_of, load_judge_examples
from stepwiser.errors import StepwiserError
from stepwiser.io.records import JudgeExample, RunManifest
from stepwiser.judges.base import JudgeItem, write_judge_meta
from stepwiser.judges.prompts import judge_messages
from stepwiser.train.dist import barrier, is_main, world_size
from stepwiser.train.judge_config import GRPO_METHODS, JudgeTrainConfig, manifest_config
from stepwiser.train.judge_metrics import (
    collapse_callback,
    metrics_callbacks,
    plot_metrics,
    read_metrics,
    summarize_metrics,
    trim_metrics,
)

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


def grpo_rows(examples: list[JudgeExample], cot: bool = True, prompt: str = "full") -> list[dict]:
    """GRPOTrainer rows: a conversational prompt plus the `label` column the reward reads."""
    return [{"prompt": judge_messages(judge_item(e), cot, prompt), "label": int(e.label), "key": e.key} for e in examples]


# --------------------------------------------------------------------------- rewards

_LONE_BOXED = re.compile(r"\s*\\boxed\s*\{(?:[^{}]|\{[^{}]*\})*\}\s*")


def verdict_reward(text: str, label: int) -> float:
    """1 if the last boxed verdict of `text` equals `label`, else 0 (unparsed: 0)."""
    v = parse_verdict(text)
    return 1.0 if v is not None and v == label else 0.0


def is_bare_verdict(text: str) -> bool:
    """True for a lone boxed Positive/Negative (whitespace around it allowed), nothing else."""
    return bool(_LONE_BOXED.fullmatch(text)) and parse_verdict(text) is not None


def is_well_formed(text: str, cot: bool = True, truncated: bool = False) -> bool:
    """The judgment format: exactly one ``\\boxed`` in `text`, a Positive/Negative verdict at its very end
    (whitespace after it allowed, nothing else), and the completion ended by EOS (`truncated` False). With
    CoT analysis text may come before the box; without, nothing may."""
    if truncated or text.count("\\boxed") != 1:
        return False
    return is_bare_verdict(text if not cot else text[text.index("\\boxed"):])


def judge_reward(text: str, label: int, cot: bool = True, penalty: float = -1.0, truncated: bool = False) -> float:
    """The judge reward: `penalty` unless `text` is well formed (`is_well_formed`); then 1 if its verdict
    equals `label`, else 0."""
    return verdict_reward(text, label) if is_well_formed(text, cot, truncated) else penalty


def nocot_reward(text: str, label: int, penalty: float = -1.0) -> float:
    """The no-CoT reward: `penalty` unless `text` is a lone boxed verdict; then 1 if right, 0 if wrong."""
    return judge_reward(text, label, cot=False, penalty=penalty)


def completion_text(completion) -> str:
    """A TRL completion (a string, or a list of chat messages) as text."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion)


def truncated_flags(completion_ids, eos_token_ids, n: int) -> list[bool]:
    """Per completion, whether it stopped without EOS (cut at max_completion_length). TRL passes each
    completion's token ids up to and including its first EOS; without ids or EOS ids nothing is truncated."""
    if completion_ids is None or not eos_token_ids:
        return [False] * n
    eos = set(eos_token_ids)
    return [not ids or ids[-1] not in eos for ids in completion_ids]


class JudgeReward:
    """The GRPO reward function (`judge_reward`, with or without CoT). Besides the rewards it logs, per
    completion, whether the verdict is right (`judge/accuracy`), unparsed (`judge/unparsed`), badly formed
    or truncated (`judge/format_failure`, the completions given `format_penalty`), and right among positive
    / negative labels (the per-class recalls); TRL averages each over all completions of all processes of
    the generation batch. `eos_token_ids` (set by `make_grpo_trainer` from the trainer) tell a completion
    that ended from one cut at the length limit."""

    def __init__(self, cot: bool = True, format_penalty: float = -1.0, eos_token_ids=None):
        self.cot, self.format_penalty = cot, format_penalty
        self.eos_token_ids = list(eos_token_ids) if eos_token_ids is not None else None
        self.__name__ = "judge"

    def __call__(self, prompts, completions, label, log_metric=None, completion_ids=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        cut = truncated_flags(completion_ids, self.eos_token_ids, len(texts))
        rewards = [judge_reward(t, y, self.cot, self.format_penalty, c) for t, y, c in zip(texts, label, cut)]
        if log_metric is not None:
            for t, y, c in zip(texts, label, cut):
                v = parse_verdict(t)
                right = float(v is not None and v == y)
                log_metric("judge/accuracy", right)
                log_metric("judge/unparsed", float(v is None))
                log_metric("judge/recall_positive" if y == 1 else "judge/recall_negative", right)
                log_metric("judge/format_failure", float(not is_well_formed(t, self.cot, c)))
        return rewards


# --------------------------------------------------------------------------- trainer

def trl_grpo_config(cfg, learning_rate: float, lr_scheduler: str, **extra):
    """TRL's GRPOConfig from the GRPO settings a judge run and a policy run share (same attribute names in
    JudgeTrainConfig and PolicyGRPOConfig); `extra` adds or overrides keys (vLLM, reward_weights)."""
    from trl import GRPOConfig

    from stepwiser.train.sft import has_accelerator

    args = dict(
        output_dir=str(Path(cfg.out) / "checkpoints"), learning_rate=learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1, per_device_train_batch_size=cfg.per_device_batch,
        gradient_accumulation_steps=cfg.grad_accum, steps_per_generation=cfg.trl_steps_per_generation,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, top_p=cfg.top_p, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high,
        beta=cfg.beta, loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions, lr_scheduler_type=lr_scheduler,
        warmup_steps=cfg.lr_warmup_ratio, weight_decay=cfg.weight_decay, bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to="none", log_completions=cfg.log_completions,
        num_completions_to_print=4, remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not has_accelerator())
    args.update(extra)
    return GRPOConfig(**args)


def grpo_args(cfg: JudgeTrainConfig):
    """The TRL GRPOConfig of a judge run."""
    vllm = {}
    if cfg.use_vllm:
        vllm = {"use_vllm": True, "vllm_mode": cfg.vllm_mode,
                "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
                "vllm_tensor_parallel_size": cfg.vllm_tensor_parallel_size,
                "vllm_max_model_length": cfg.vllm_max_model_length,
                "vllm_server_base_url": cfg.vllm_server_base_url}
    return trl_grpo_config(cfg, cfg.learning_rate, cfg.lr_scheduler, **vllm)


def make_grpo_trainer(cfg: JudgeTrainConfig, model_path: str, rows: list[dict], reward=None, callbacks=()):
    """The GRPOTrainer of a run; `reward` defaults to the judge reward of `cfg.method`. The trainer also logs
    `time/generation` (seconds spent generating and scoring each generation batch)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from stepwiser.train.grpo_shared_prompt import SharedPromptMixin
    from stepwiser.train.sft import check_micro_coverage, peft_config_of

    class TimedGRPOTrainer(SharedPromptMixin, GRPOTrainer):
        shared_prompt = cfg.shared_prompt

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            with self.accelerator.autocast():   # bf16: generate in bf16 too (about 2x faster on CPUs with AMX)
                out = super()._generate_and_score_completions(inputs)
            self._metrics["train" if self.model.training else "eval"]["time/generation"].append(
                time.perf_counter() - t0)
            return out

        def _get_train_sampler(self, dataset=None):
            if not cfg.balanced_batches:
                return super()._get_train_sampler(dataset)
            from stepwiser.train.grpo_sampler import BalancedRepeatSampler

            data = dataset if dataset is not None else self.train_dataset
            return BalancedRepeatSampler(list(data["label"]), self.num_generations,
                                         self.args.generation_batch_size // self.num_generations,
                                         self.num_iterations * self.args.steps_per_generation, self.args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if not tokenizer.chat_template:
        raise StepwiserError(f"model {cfg.model!r} has no chat template; the judge prompt is a chat")
    rows = check_micro_coverage(tokenizer, rows, cfg.model)
    args = grpo_args(cfg)  # before the model: under DeepSpeed ZeRO-3 it makes from_pretrained shard the weights
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    reward = reward or JudgeReward(cot=cfg.cot, format_penalty=cfg.format_penalty)
    trainer = TimedGRPOTrainer(model=model, reward_funcs=reward, args=args, processing_class=tokenizer,
                               train_dataset=Dataset.from_list(rows), callbacks=list(callbacks),
                               peft_config=peft_config_of(cfg) if cfg.lora else None)
    if isinstance(reward, JudgeReward) and reward.eos_token_ids is None:
        reward.eos_token_ids = list(trainer.eos_token_ids)   # what TRL stops generation at
    return trainer


def _finished(out: Path, config: dict) -> bool:
    return RunManifest.completed(out, config, JudgeTrainConfig.VOLATILE)


def sharded_by(trainer) -> str | None:
    """What shards the model's weights across processes (then no process holds a full copy to generate
    from alone): "FSDP", "DeepSpeed ZeRO-3", or None."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return "FSDP"
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = trainer.accelerator.state.deepspeed_plugin
        if plugin is not None and plugin.zero_stage == 3:
            return "DeepSpeed ZeRO-3"
    return None


def _open_run(cfg: JudgeTrainConfig, config: dict, overwrite: bool):
    """Rank 0 opens the manifest (and clears the outputs with `overwrite`); the other ranks wait for it."""
    out, manifest = Path(cfg.out), None
    if is_main():
        manifest = RunManifest.open(out, "train-judge", config, inputs=[data_file(cfg.data)] if cfg.data else [],
                                    overwrite=overwrite, volatile=JudgeTrainConfig.VOLATILE)
        if overwrite:
            for p in ("checkpoints", "final", "adapter"):
                shutil.rmtree(out / p, ignore_errors=True)
    barrier()
    return manifest


def covered_validation(cfg: JudgeTrainConfig, val: list[JudgeExample]) -> list[JudgeExample]:
    """The validation examples a micro judge's vocabulary covers (skipped ones counted on stderr, up to 1%)."""
    if not val:
        return val
    from transformers import AutoTokenizer

    from stepwiser.models.loading import resolve_model
    from stepwiser.train.sft import check_micro_coverage

    path = resolve_model(cfg.model)
    if not Path(path).is_dir():   # micro models are local folders; a Hub model's vocabulary covers any text
        return val
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = [{"prompt": judge_messages(judge_item(e), cfg.cot, cfg.judge_prompt), "index": i} for i, e in enumerate(val)]
    return [val[r["index"]] for r in check_micro_coverage(tokenizer, rows, cfg.model, what="validation")]


def _validation_callbacks(cfg: JudgeTrainConfig, metrics: Path, show: bool):
    val = covered_validation(cfg, validation_examples(cfg))
    if val and world_size() > 1 and is_main():
        print(f"train-judge: validation on rank 0 of {world_size()} processes; the others wait for it", flush=True)
    return metrics_callbacks(metrics, show, val, cfg.eval_steps, cfg.cot, cfg.max_completion_length, cfg.seed,
                             prompt=cfg.judge_prompt)


def check_sharding(trainer, callbacks) -> None:
    """Validation generates on rank 0 alone, which needs the whole model there: off (with a warning) when the
    weights are sharded."""
    how = sharded_by(trainer) if world_size() > 1 else None
    if how and callbacks[0].val_examples:
        callbacks[0].val_examples = []
        if is_main():
            warnings.warn(f"train-judge: validation (--eval-steps) is OFF: under {how} the weights are sharded "
                          "and rank 0 cannot generate alone. Use DDP or ZeRO-2 to validate during training, or "
                          "judge the checkpoints afterwards (export-judge, then eval labels).", stacklevel=2)


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
    config = manifest_config(cfg, init_model=init_model)
    if not overwrite and _finished(out, config) and (final / "config.json").exists():
        return final
    manifest = _open_run(cfg, config, overwrite)
    ckdir, metrics = out / "checkpoints", out / "metrics.jsonl"
    last = get_last_checkpoint(str(ckdir)) if cfg.resume and ckdir.is_dir() else None
    meta = {"cot": cfg.cot, "method": cfg.method, "label_type": label_type_of(examples), "base_model": cfg.model,
            "warmup": init_model is not None, "shuffled_labels": cfg.shuffle_labels, "prompt": cfg.judge_prompt}
    if is_main():   # the run's judge metadata, for `export-judge` of its checkpoints
        trim_metrics(metrics, int(last.rsplit("-", 1)[1]) if last else 0)
        write_judge_meta(out, "generative", **meta)
    base = resolve_model(init_model or cfg.model)
    callbacks = _validation_callbacks(cfg, metrics, show)
    watch = collapse_callback(cfg.collapse_threshold, cfg.collapse_action)
    trainer = make_grpo_trainer(cfg, base, grpo_rows(examples, cfg.cot, cfg.judge_prompt), reward, [*callbacks, watch])
    check_sharding(trainer, callbacks)
    _drop_default_progress(trainer)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    save_final(trainer, SimpleNamespace(lora=cfg.lora, model=base), final)
    if is_main():
        write_judge_meta(final, "generative", **meta)
        rows = read_metrics(out)
        plot_metrics(rows, out / "metrics.png", f"{cfg.method} {cfg.model} lr {cfg.learning_rate:g}")
        manifest.finish({"examples": len(examples), "steps": trainer.state.global_step,
                         "train_loss": round(result.training_loss, 6), "seconds": round(time.time() - start, 1),
                         "resumed_from": last, "final": str(final), **summarize_metrics(rows),
                         **({"stopped": watch.stopped} if watch.stopped else {})})
    return final


def stopped_reason(out: str | Path) -> str | None:
    """Why a finished GRPO run in `out` stopped before its planned steps (the collapse watch), or None."""
    path = Path(out) / "manifest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("summary", {}).get("stopped")


def _drop_default_progress(trainer) -> None:
    """Replace the Trainer's progress bar (which prints every raw log dict) by the compact one."""
    from transformers.trainer_callback import ProgressCallback

    for cb in list(trainer.callback_handler.callbacks):
        if type(cb) is ProgressCallback:
            trainer.callback_handler.callbacks.remove(cb)
