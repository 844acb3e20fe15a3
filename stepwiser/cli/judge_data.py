"""`stepwiser judge-data`: judge training examples from annotations (split by problem, balanced)."""
from __future__ import annotations

import click

from stepwiser.cli.common import overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.judge_data import JudgeDataConfig


@click.command("judge-data")
@config_options(JudgeDataConfig, section="judge_data")
@overwrite_option
def command(cfg, overwrite):
    """Turn annotations into judge training data: DIR/train.jsonl and DIR/val.jsonl.

    One example per chunk (problem, previous chunks, chunk, label), split by problem, prompts outside
    the token window dropped, the train split balanced 50/50 by down-sampling the majority class.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.judge_data import print_balance, run_judge_data

    summary = run_judge_data(cfg, overwrite=overwrite)
    if summary.get("nothing_to_do"):
        click.echo(f"{cfg.out} is complete with the same config; nothing to do (--overwrite to remake it)")
    print_balance(summary)
    print_summary("judge-data", {k: v for k, v in summary.items() if k not in ("balance", "nothing_to_do")})
