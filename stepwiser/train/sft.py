"""Supervised fine-tuning on TRL's SFTTrainer: the chunk policy, and later the judge baselines.

Training data are conversations in one of two forms (one dict per example):

- prompt-completion: ``{"prompt": [messages...], "completion": [{"role": "assistant", "content": ...}]}``.
  TRL tokenizes prompt and prompt+completion with the chat template and trains only on the completion
  tokens (the assistant text and the template's end-of-turn tokens); the prompt is masked from the loss.
  This is what the chunk policy uses (`sft_example_conversation`, `problem_sft_example`).
- multi-turn: ``{"messages": [...]}``: every assistant turn is trained, everything else is masked
  (the discriminative judge baseline: one step per user turn, "+"/"-" answers). Templates such as
  SmolLM2's ChatML have no ``{% generation %}`` markers, so the mask is computed here by rendering
  growing prefixes of the conversation (`tokenize_multiturn`) rather than by `assistant_only_loss`.

Output layout of `train_sft(cfg, examples)` under ``cfg.out``: ``checkpoints/`` (resumable Trainer
checkpoints), ``train_log.jsonl`` (one line per logging step: the learning curve), ``manifest.json``
(C7) and ``final/``: ALWAYS a plain HF model directory (LoRA merged with ``merge_and_unload``) with
the tokenizer and its chat template, usable by every engine.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from stepwiser.data.prompts import policy_messages
from stepwiser.errors import StepwiserError
from stepwiser.io.config import check_choices, option
from stepwiser.io.records import Problem, RunManifest, SFTExample, iter_jsonl, parse_record, write_jsonl
from stepwiser.train.dist import barrier, is_main, world_size

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr",
              "warmup_stable_decay", "inverse_sqrt", "polynomial")

# the one packing rule of every SFT run (the policy's, and the judge methods' through JudgeTrainConfig.packing)
PACKING_RULE = ("It pays with a padding-free attention kernel (flash attention on a GPU: the paper packs "
                "8192-token rows); on CPU the attention computes the whole block-masked row, so short examples "
                "train faster padded. Default: on for the policy, off for the judge methods (short single "
                "judgments, trained on CPU at micro scale).")


@dataclass(kw_only=True)
class ModelTrainOptions:
    """How the weights are trained, shared by `train-policy` and `train-judge` (one declaration)."""

    lora: bool = option(False, "Train a LoRA adapter (merged into final/).")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA alpha.")
    lora_dropout: float = option(0.05, "LoRA dropout.")
    lora_target_modules: list[str] | str = option("all-linear", "LoRA target modules (peft's target_modules).")
    bf16: bool = option(False, "bfloat16 autocast (GPU, or CPU with AMX/AVX512-BF16; on AVX2-only CPUs it is much "
                               "slower than float32). --no-bf16 overrides a recipe.")
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass (less memory).")


@dataclass
class SFTTrainConfig(ModelTrainOptions):
    """One SFT run (`stepwiser train-policy`, and the SFT part of the judge methods). `global_batch`
    sequences per optimiser step = per_device_batch x grad_accum x world size; grad_accum is derived from
    it unless given (then global_batch must be null or agree)."""

    model: str = option(help="Base policy: HF id, local dir, or smollm2-135m-instruct.")
    out: str = option(help="Run folder: checkpoints/, train_log.jsonl, manifest.json and final/ (the merged model).",
                      short="-o")
    data: str | None = option(None, "Training JSONL: SFT examples (prompt, response), problems with a chunk-tagged "
                                    "`solution` (`stepwiser data synth`), or conversations (prompt/completion or "
                                    "messages). Recorded in the manifest and hashed as the input.", path="file")
    lr: float = option(1e-5, "Peak learning rate (paper: 1e-5).")
    epochs: float = option(1.0, "Training epochs.")
    max_steps: int | None = option(None, "Optimiser steps (overrides --epochs).")
    per_device_batch: int = option(8, "Sequences per micro-batch.")
    grad_accum: int | None = option(None, "Micro-batches per optimiser step [default: derived from --global-batch].")
    global_batch: int | None = option(32, "Sequences per optimiser step over all devices (paper: 32); sets "
                                          "gradient accumulation.")
    packing: bool = option(True, "Pack whole examples into rows of --max-length tokens (padding-free). "
                                 + PACKING_RULE)
    max_length: int = option(8192, "Tokens per (packed) row.")
    seed: int = option(0, "Seed of the data order.")
    warmup_ratio: float = option(0.0, "Share of the steps with a linear learning-rate warm-up.")
    scheduler: str = option("cosine", "Learning-rate schedule.", choices=SCHEDULERS)
    weight_decay: float = option(0.0, "AdamW weight decay.")
    logging_steps: int = option(10, "Log every N optimiser steps.")
    save_steps: int = option(200, "Checkpoint every N optimiser steps.")
    save_total_limit: int = option(2, "Checkpoints kept.")
    resume: bool = option(True, "Continue from the last checkpoint in OUT/checkpoints.")
    num_threads: int | None = option(None, "torch CPU threads [default: torch's].")

    VOLATILE = ("logging_steps", "save_steps", "save_total_limit", "resume", "num_threads")

    def __post_init__(self):
        check_choices(self)
        if not self.model or not self.out:
            raise ValueError("model and out are required")
        positive = {"lr": self.lr, "epochs": self.epochs, "per_device_batch": self.per_device_batch,
                    "max_length": self.max_length, "lora_r": self.lora_r, "lora_alpha": self.lora_alpha,
                    "logging_steps": self.logging_steps, "save_steps": self.save_steps}
        for name in ("max_steps", "grad_accum", "global_batch", "num_threads"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        bad = [f"{k}={v!r}" for k, v in positive.items() if not isinstance(v, (int, float)) or v <= 0]
        if bad:
            raise ValueError(f"these settings must be positive numbers: {', '.join(bad)}")
        if self.grad_accum is None and self.global_batch is None:
            raise ValueError("give global_batch (grad_accum is derived from it) or grad_accum")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.max_length < 16:
            raise ValueError(f"max_length must be at least 16 tokens, got {self.max_length}")

    def grad_accum_for(self, world_size: int) -> int:
        return resolve_grad_accum(self.global_batch, self.per_device_batch, world_size, self.grad_accum)


def resolve_grad_accum(global_batch: int | None, per_device_batch: int, world_size: int,
                       grad_accum: int | None = None) -> int:
    """Gradient accumulation steps so that per_device_batch x grad_accum x world_size == global_batch."""
    if grad_accum is not None:
        if global_batch is not None and grad_accum * per_device_batch * world_size != global_batch:
            raise ValueError(f"grad_accum {grad_accum} x per_device_batch {per_device_batch} x world size "
                             f"{world_size} != global_batch {global_batch}; set only one of the two")
        return grad_accum
    per_step = per_device_batch * world_size
    if global_batch is None or global_batch % per_step:
        raise ValueError(f"global_batch {global_batch} is not a multiple of per_device_batch {per_device_batch} "
                         f"x world size {world_size}; change one of them")
    return global_batch // per_step


# --------------------------------------------------------------------------- data

def sft_example_conversation(ex: SFTExample) -> dict:
    """A C2 SFT example (prompt = problem text, response = target text) as a prompt-completion
    conversation with the policy prompt."""
    return {"prompt": policy_messages(ex.prompt),
            "completion": [{"role": "assistant", "content": ex.response}]}


def problem_sft_example(problem: Problem) -> SFTExample:
    """A problem with a chunk-tagged reference solution (micro domain) as an SFT example."""
    if not problem.solution:
        raise StepwiserError(f"problem {problem.id!r} has no `solution` to train on")
    return SFTExample(prompt=problem.problem, response=problem.solution, source="synth", problem_id=problem.id)


def record_conversation(obj: dict, where: str = "") -> dict:
    """Any supported training record as a conversation: prompt-completion or messages (passed through),
    a C2 SFT example (prompt + response) or a problem with a `solution`."""
    if "messages" in obj:
        return {"messages": obj["messages"]}
    if isinstance(obj.get("prompt"), list) and "completion" in obj:
        return {"prompt": obj["prompt"], "completion": obj["completion"]}
    if "prompt" in obj and "response" in obj:
        return sft_example_conversation(parse_record(SFTExample, obj, where))
    if "problem" in obj and "solution" in obj:
        return sft_example_conversation(problem_sft_example(parse_record(Problem, obj, where)))
    raise StepwiserError(f"{where}: not a training record; expected prompt+completion (messages), messages, "
                         f"prompt+response (SFT example) or problem+solution (problem); got keys "
                         f"{', '.join(sorted(obj)) or 'none'}")


def load_conversations(path: str | os.PathLike) -> list[dict]:
    """All training records of a JSONL file as conversations (see `record_conversation`)."""
    out = [record_conversation(obj, f"{path}:{lineno}") for lineno, obj in iter_jsonl(path)]
    if not out:
        raise StepwiserError(f"{path}: no training records")
    return out


def tokenize_multiturn(tokenizer, messages: list[dict]) -> dict:
    """`input_ids` and `labels` of a conversation where only assistant turns are trained.

    Each assistant turn's tokens are those between the rendering of the conversation before it (with
    the generation prompt) and the rendering up to and including it; this includes the template's
    end-of-turn tokens, so the model learns to stop. Requires a prefix-preserving template."""
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        upto = tokenizer.apply_chat_template(messages[:i + 1], tokenize=True, return_dict=True)["input_ids"]
        if upto[:len(ids)] != ids or before[:len(ids)] != ids or upto[:len(before)] != before:
            raise StepwiserError("the chat template does not render conversations prefix-consistently; "
                                 "multi-turn assistant-only masking is not possible with it")
        labels += [-100] * (len(before) - len(ids)) + upto[len(before):]
        ids = list(upto)
    if not ids:
        raise StepwiserError("a multi-turn training conversation has no assistant turn")
    return {"input_ids": ids, "labels": labels}


def build_dataset(examples: list[dict], tokenizer):
    """A datasets.Dataset for SFTTrainer: prompt-completion rows as they are (TRL masks the prompt),
    multi-turn rows pre-tokenized with their labels. Mixing the two forms is refused."""
    from datasets import Dataset

    kinds = {"messages" if "messages" in e else "prompt-completion" for e in examples}
    if len(kinds) != 1:
        raise StepwiserError("training data mixes multi-turn (messages) and prompt-completion records")
    if kinds == {"messages"}:
        return Dataset.from_list([tokenize_multiturn(tokenizer, e["messages"]) for e in examples])
    return Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])


# --------------------------------------------------------------------------- training

def sft_args(cfg: SFTTrainConfig, world_size: int = 1):
    """The TRL SFTConfig of a run."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(Path(cfg.out) / "checkpoints"), learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1, per_device_train_batch_size=cfg.per_device_batch,
        gradient_accumulation_steps=cfg.grad_accum_for(world_size), packing=cfg.packing,
        max_length=cfg.max_length, bf16=cfg.bf16, seed=cfg.seed, data_seed=cfg.seed,
        warmup_steps=cfg.warmup_ratio, lr_scheduler_type=cfg.scheduler, weight_decay=cfg.weight_decay,
        activation_checkpointing=cfg.gradient_checkpointing, logging_steps=cfg.logging_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        report_to="none", completion_only_loss=None, shuffle_dataset=True, dataloader_num_workers=0,
        use_cpu=not has_accelerator(),
    )


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def peft_config_of(cfg: SFTTrainConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")


MAX_UNCOVERED_SHARE = 0.01   # a micro model's training records with unknown pieces: skipped up to this share


def check_micro_coverage(tokenizer, examples: list[dict], model: str,
                         max_share: float = MAX_UNCOVERED_SHARE, what: str = "training") -> list[dict]:
    """The examples a micro model's vocabulary covers (all of them for other tokenizers). Records with
    pieces outside it (a word of the policy's own text at a line start, say) are skipped and counted on
    stderr up to `max_share` of the records; more is a CoverageError naming the pieces, never silent <unk>."""
    import sys

    from stepwiser.models.micro import CoverageError, check_coverage, is_micro, unknown_pieces

    if not is_micro(tokenizer):
        return examples
    found = [(i, m["content"]) for i, e in enumerate(examples) for key in ("messages", "prompt", "completion")
             if isinstance(e.get(key), list) for m in e[key] if isinstance(m.get("content"), str)]
    pieces, where = unknown_pieces(tokenizer, [t for _, t in found])
    bad = sorted({found[j][0] for j in where})
    if not bad:
        return examples
    if len(bad) > max_share * len(examples):
        check_coverage(tokenizer, [t for _, t in found], what=f"the {what} data of the micro model {model!r}",
                       names=[f"record {i}" for i, _ in found])
        raise CoverageError(f"{len(bad)} records of the {what} data of {model!r} hold unknown pieces")
    shown = ", ".join(repr(p) for p, _ in pieces.most_common(8))
    print(f"stepwiser: skipped {len(bad)} of {len(examples)} {what} records of the micro model {model!r} with "
          f"pieces outside its vocabulary ({shown})", file=sys.stderr)
    drop = set(bad)
    return [e for i, e in enumerate(examples) if i not in drop]


def make_trainer(cfg: SFTTrainConfig, examples: list[dict], callbacks=()):
    """The SFTTrainer of a run (model loaded in float32; bf16 runs use autocast)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from stepwiser.models.loading import resolve_model
    from stepwiser.train.cpu_loss import CPUSFTTrainer

    path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise StepwiserError(f"model {cfg.model!r} has no chat template; SFT needs a chat model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = check_micro_coverage(tokenizer, examples, cfg.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    trainer_cls = CPUSFTTrainer if not has_accelerator() else SFTTrainer
    return trainer_cls(model=model, args=sft_args(cfg, world_size()),
                       train_dataset=build_dataset(examples, tokenizer), processing_class=tokenizer,
                       peft_config=peft_config_of(cfg) if cfg.lora else None, callbacks=list(callbacks))


def log_callback(path: Path):
    """A Trainer callback appending each log entry (loss, lr, grad norm, step, epoch) to a JSONL file."""
    from transformers import TrainerCallback

    class LogToJsonl(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, "time": round(time.time(), 1), **logs}) + "\n")

    return LogToJsonl()


def save_final(trainer, cfg: SFTTrainConfig, final: Path) -> None:
    """Write the plain merged HF model (+ tokenizer, chat template) to `final` (atomically: tmp then rename)."""
    import torch
    from transformers import AutoModelForCausalLM

    from stepwiser.models.loading import resolve_model

    tmp = final.with_name(final.name + ".tmp")
    if is_main():
        shutil.rmtree(tmp, ignore_errors=True)  # left by a save that was killed
    trainer.accelerator.wait_for_everyone()
    if not cfg.lora:
        trainer.save_model(str(tmp))  # gathers sharded (ZeRO-3/FSDP) weights
    else:
        adapter = final.with_name("adapter")
        trainer.save_model(str(adapter))
        if is_main():
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(resolve_model(cfg.model), dtype=torch.float32)
            PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().save_pretrained(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if is_main():
        trainer.processing_class.save_pretrained(str(tmp))
        for stray in ("training_args.bin",):
            (tmp / stray).unlink(missing_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    trainer.accelerator.wait_for_everyone()


def _finished(out: Path, config: dict) -> bool:
    return RunManifest.completed(out, config, SFTTrainConfig.VOLATILE)


def train_sft(cfg: SFTTrainConfig, examples: list[dict], overwrite: bool = False, stage: str = "sft",
              callbacks=()) -> Path:
    """Fine-tune `cfg.model` on `examples` (conversations, see module docstring); return `out/final`.

    Resumes from the last checkpoint in `out/checkpoints` when `cfg.resume`; a finished run with the
    same config returns at once; a different config into the same `out` is refused (C7)."""
    from transformers.trainer_utils import get_last_checkpoint

    if not examples:
        raise StepwiserError("no training examples")
    if cfg.num_threads:
        import torch
        torch.set_num_threads(cfg.num_threads)
    out, final = Path(cfg.out), Path(cfg.out) / "final"
    config = dataclasses.asdict(cfg)
    inputs = [cfg.data] if cfg.data and Path(cfg.data).is_file() else []
    if not overwrite and _finished(out, config) and (final / "config.json").exists():
        return final
    manifest = None
    if is_main():  # one writer; under `accelerate launch` the other ranks follow rank 0's files
        manifest = RunManifest.open(out, stage, config, inputs=inputs, overwrite=overwrite,
                                    volatile=SFTTrainConfig.VOLATILE)
    if overwrite and is_main():
        for p in ("checkpoints", "final", "adapter"):
            shutil.rmtree(out / p, ignore_errors=True)
        (out / "train_log.jsonl").unlink(missing_ok=True)
    barrier()   # the other ranks look for checkpoints once rank 0 has opened (or cleared) the run
    ckdir = out / "checkpoints"
    last = get_last_checkpoint(str(ckdir)) if cfg.resume and ckdir.is_dir() else None
    if is_main():
        _truncate_log(out / "train_log.jsonl", _checkpoint_step(last))
    trainer = make_trainer(cfg, examples, callbacks=[log_callback(out / "train_log.jsonl"), *callbacks])
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    save_final(trainer, cfg, final)
    if manifest is not None:
        summary = {"examples": len(examples), "steps": trainer.state.global_step,
                   "train_loss": round(result.training_loss, 4), "seconds": round(time.time() - start, 1),
                   "resumed_from": last, "world_size": world_size(), "final": str(final)}
        manifest.finish(summary)
    return final


def _checkpoint_step(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after `step` (written by an interrupted run after its last checkpoint)."""
    if path.exists():
        keep = [o for _, o in iter_jsonl(path, on_error="skip") if o.get("step", 0) <= step]
        write_jsonl(path, keep)


def learning_curve(out: str | os.PathLike) -> list[dict]:
    """The loss entries logged by a run (`out/train_log.jsonl`), one per step (the last one logged)."""
    path = Path(out) / "train_log.jsonl"
    entries = {o["step"]: o for _, o in iter_jsonl(path) if "loss" in o} if path.exists() else {}
    return [entries[k] for k in sorted(entries)]


__all__ = [
    "SCHEDULERS",
    "SFTTrainConfig",
    "build_dataset",
    "learning_curve",
    "load_conversations",
    "make_trainer",
    "problem_sft_example",
    "record_conversation",
    "resolve_grad_accum",
    "save_final",
    "sft_args",
    "sft_example_conversation",
    "tokenize_multiturn",
    "train_sft",
]
