"""`stepwiser train-policy-grpo`: GRPO of the chunk policy, outcome reward or outcome + the judge's process
reward (docs/PROCESS_REWARD.md)."""
from __future__ import annotations

import click

from stepwiser.cli.common import engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.train.policy_grpo import PolicyGRPOConfig


@click.command("train-policy-grpo")
@config_options(PolicyGRPOConfig, section="train_policy_grpo")
@engine_options("judge")
@overwrite_option
def command(cfg, judge_engine_opts, overwrite):
    """GRPO of the chunk policy on problems (id, problem, answer), prompted as `sample` prompts it.

    \b
      stepwiser train-policy-grpo --model runs/micro/policy/final --problems rl.jsonl -o runs/pg-outcome
      stepwiser train-policy-grpo --model runs/micro/policy/final --problems rl.jsonl -o runs/pg-process \\
          --reward outcome+process --judge runs/judge --aggregate mean

    --reward outcome: 1 for a right final answer, else 0; outcome+process: plus --process-weight x the
    judge's process reward (its chunk verdicts aggregated), the judge running in this process (--judge-engine
    options). Writes OUT/metrics.jsonl, OUT/manifest.json and OUT/final, a plain HF model directory usable
    by every engine (evaluate it with `stepwiser sample`). Rerunning resumes from OUT/checkpoints.
    """
    from stepwiser.stages.train_policy_grpo import run_train_policy_grpo

    final = run_train_policy_grpo(cfg, judge_engine_opts, overwrite=overwrite,
                                  log=lambda line: click.echo(line, err=True))
    click.echo(str(final))
