"""`stepwiser train-judge`: the StepWiser judge (GRPO) and its baselines (docs/METHOD.md 2.3)."""
from __future__ import annotations

import click

from stepwiser.cli.common import engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.train.judge_config import JudgeTrainConfig


@click.command("train-judge")
@config_options(JudgeTrainConfig, section="train_judge")
@engine_options()
@overwrite_option
def command(cfg, engine_opts, overwrite):
    """Train a judge. GRPO on CPU, or on GPUs with accelerate + DeepSpeed and vLLM generation:

    \b
      stepwiser train-judge --data runs/jd --model smollm2-135m-instruct -o runs/judge --format-warmup-steps 60
      accelerate launch --config_file recipes/accelerate/zero2.yaml -m stepwiser train-judge \\
          --config recipes/judge-grpo-1.5b.yaml --use-vllm --vllm-mode colocate

    The result is OUT/final, a plain HF model directory (LoRA merged) with stepwiser_judge.json, usable by
    every engine and by `load_judge`. Rerunning resumes from the last checkpoint in OUT/checkpoints.
    --engine options: the sampler of --method rft, or the chunk policy of --warmup-analysis policy (on
    --warmup-policy).
    """
    from stepwiser.engines import build_engine
    from stepwiser.stages.train_judge import run_summary, train_judge

    if not cfg.data:
        raise click.UsageError("give --data (or `data` in the recipe's train_judge section)")
    engine = build_engine(cfg.model, engine_opts) if cfg.method == "rft" else None
    click.echo(f"train-judge: method {cfg.method}, model {cfg.model}, data {cfg.data}, lr {cfg.learning_rate:g}, "
               f"{'LoRA' if cfg.lora else 'full fine-tuning'}, out {cfg.out}", err=True)
    policy = (lambda: build_engine(cfg.warmup_policy, engine_opts)) if cfg.warmup_analysis == "policy" else None
    final = train_judge(cfg, engine=engine, overwrite=overwrite, warmup_engine=policy)
    summary = run_summary(cfg)
    if summary:
        click.echo("train-judge: " + ", ".join(f"{k} {v}" for k, v in summary.items()), err=True)
    click.echo(str(final))
