"""What the judge's SFT methods share (format warm-up, RFT, discriminative SFT): their `SFTTrainConfig`,
built from the `JudgeTrainConfig` field by field, their derived training data, and their judge metadata.

Batches of the SFT methods count sequences: `global_batch` per optimiser step (gradient accumulation is
derived from it; the judge's `grad_accum` is GRPO's)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from stepwiser.io.records import file_hash, write_jsonl
from stepwiser.judges.base import write_judge_meta
from stepwiser.train.dist import barrier, is_main
from stepwiser.train.judge_config import JudgeTrainConfig
from stepwiser.train.sft import SFTTrainConfig, load_conversations, train_sft


def shared_fields() -> list[str]:
    """The SFTTrainConfig fields that a judge run copies from the JudgeTrainConfig field of the same name."""
    judge = {f.name for f in dataclasses.fields(JudgeTrainConfig)}
    return [f.name for f in dataclasses.fields(SFTTrainConfig) if f.name in judge]


def sft_config(cfg: JudgeTrainConfig, out: Path, data: Path, *, lr: float | None = None,
               max_steps: int | None = None) -> SFTTrainConfig:
    """The SFT run of a judge method: the shared fields as they are, then those a judge derives (its
    learning rate and schedule defaults, `lr_warmup_ratio`, the micro-batch capped at the global batch)."""
    values = {name: getattr(cfg, name) for name in shared_fields()}
    values.update(out=str(out), data=str(data), lr=lr or cfg.learning_rate, max_steps=max_steps or cfg.max_steps,
                  per_device_batch=min(cfg.per_device_batch, cfg.global_batch), grad_accum=None,
                  warmup_ratio=cfg.lr_warmup_ratio, scheduler=cfg.lr_scheduler)
    return SFTTrainConfig(**values)


def write_data(path: Path, rows: list[dict]) -> Path:
    """Write derived training data (hashed as the SFT run's input); untouched when the content is the same.
    Rank 0 writes; the other processes wait for the file."""
    if is_main():
        tmp = path.with_name(path.name + ".new")
        write_jsonl(tmp, rows)
        if path.exists() and file_hash(path) == file_hash(tmp):
            tmp.unlink()
        else:
            tmp.replace(path)
    barrier()
    return path


def run_judge_sft(cfg: SFTTrainConfig, stage: str, kind: str, **meta) -> Path:
    """SFT a judge: its metadata goes into the run folder first (for `export-judge` of any checkpoint), then
    into the final model."""
    if is_main():
        write_judge_meta(cfg.out, kind, **meta)
    final = train_sft(cfg, load_conversations(cfg.data), stage=stage)
    if is_main():
        write_judge_meta(final, kind, **meta)
    return final
