"""Stage `train-judge`: the StepWiser judge (GRPO) and its baselines (docs/METHOD.md 2.3), one method per run.

- grpo / grpo-nocot (`stepwiser.train.grpo`): the format warm-up first when `format_warmup_steps` > 0 (into
  OUT/warmup, `stepwiser.train.warmup`), then GRPO from its model;
- warmup: the format warm-up alone (the control); with `warmup_analysis` policy its analyses are the chunk
  policy's own steps (`stepwiser.train.warmup_policy`, engine `warmup_engine`);
- rft (`stepwiser.train.rft`): needs a generation engine on the model (the CLI builds it from --engine);
- disc-sft (`stepwiser.train.disc`): on `judge-data --format disc` records.

The result is OUT/final (a plain HF model with stepwiser_judge.json). `overwrite` clears OUT once, on rank 0,
while the other processes of an `accelerate launch` wait.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from stepwiser.data.judge_examples import load_judge_examples, shuffled_labels
from stepwiser.errors import StepwiserError
from stepwiser.train.disc import load_disc_records, shuffled_disc_labels, train_disc_sft
from stepwiser.train.dist import barrier, is_main
from stepwiser.train.grpo import stopped_reason, train_grpo
from stepwiser.train.judge_config import GRPO_METHODS, JudgeTrainConfig
from stepwiser.train.judge_metrics import read_metrics, summarize_metrics
from stepwiser.train.rft import train_rft
from stepwiser.train.warmup import train_warmup


def clear_output(out: Path) -> None:
    """Delete a previous run in `out` (rank 0 only), then wait until every process gets here."""
    if is_main() and out.exists():
        shutil.rmtree(out)
    barrier()


def train_judge(cfg: JudgeTrainConfig, engine=None, overwrite: bool = False, show: bool = True,
                warmup_engine=None) -> Path:
    """Run `cfg.method` on `cfg.data`; return the judge model folder (cfg.out/final). `warmup_engine`: the
    chunk policy of a policy-written warm-up (`warmup_analysis` policy; an Engine or a factory; default: hf
    on `warmup_policy`)."""
    if not cfg.data:
        raise StepwiserError("no training data: give --data (a judge-data folder or JSONL file)")
    out = Path(cfg.out)
    if overwrite:
        clear_output(out)
    if cfg.method == "disc-sft":
        records = load_disc_records(cfg.data)
        return train_disc_sft(cfg, shuffled_disc_labels(records, cfg.seed) if cfg.shuffle_labels else records)
    examples = load_judge_examples(cfg.data)
    if cfg.shuffle_labels and cfg.method != "warmup":
        examples = shuffled_labels(examples, cfg.seed)
    if cfg.method == "warmup":
        return train_warmup(cfg, examples, out, cfg.cot, warmup_engine)
    if cfg.method == "rft":
        if engine is None:
            raise StepwiserError("rft needs a generation engine to sample judgments")
        return train_rft(cfg, examples, engine, show)[0]
    if cfg.method not in GRPO_METHODS:
        raise StepwiserError(f"train-judge has no method {cfg.method!r}")
    init = None
    if cfg.format_warmup_steps:
        init = str(train_warmup(cfg, examples, out / "warmup", cfg.cot, warmup_engine))
    return train_grpo(cfg, examples, init_model=init, show=show)


def run_summary(cfg: JudgeTrainConfig) -> dict:
    """The last logged GRPO metrics of the run, and why it stopped early if it did (empty for the SFT
    methods)."""
    if cfg.method not in GRPO_METHODS:
        return {}
    stopped = stopped_reason(cfg.out)
    return {**summarize_metrics(read_metrics(cfg.out)), **({"stopped": stopped} if stopped else {})}
