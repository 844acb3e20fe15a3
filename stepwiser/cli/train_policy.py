"""`stepwiser train-policy`: SFT of the chunk policy (docs/METHOD.md 2.1) on TRL's SFTTrainer."""
from __future__ import annotations

import click

from stepwiser.cli.common import overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.train.sft import SFTTrainConfig


@click.command("train-policy")
@config_options(SFTTrainConfig, section="train_policy")
@overwrite_option
def command(cfg, overwrite):
    """Fine-tune a policy to write its reasoning in <chunk> tags with a boxed answer.

    Full fine-tuning or LoRA; the result is always a plain HF model directory OUT/final (LoRA merged),
    usable by every engine. Rerunning resumes from the last checkpoint in OUT/checkpoints.
    Several GPUs: accelerate launch --config_file recipes/accelerate/zero2.yaml -m stepwiser train-policy ...
    """
    from stepwiser.stages.train_policy import run_train_policy

    if not cfg.data:
        raise click.UsageError("give --data (or `data` in the recipe's train_policy section)")
    final = run_train_policy(cfg, overwrite=overwrite, log=lambda line: click.echo(line, err=True))
    click.echo(str(final))
