"""Stage `train-policy`: SFT of the chunk policy (docs/METHOD.md 2.1) on TRL's SFTTrainer
(`stepwiser.train.sft`; its `SFTTrainConfig` is the stage config and declares the options)."""
from __future__ import annotations

from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.train.sft import SFTTrainConfig, load_conversations, train_sft


def run_train_policy(cfg: SFTTrainConfig, overwrite: bool = False, log=None) -> Path:
    """Fine-tune `cfg.model` on `cfg.data`; return OUT/final. `log(str)` hears one line before training."""
    if not cfg.data:
        raise StepwiserError("no training data: give --data (or `data` in the recipe's train_policy section)")
    examples = load_conversations(cfg.data)
    if log is not None:
        log(f"train-policy: {len(examples)} examples from {cfg.data}, model {cfg.model} "
            f"({'LoRA' if cfg.lora else 'full fine-tuning'}), out {cfg.out}")
    return train_sft(cfg, examples, overwrite=overwrite, stage="train-policy")
