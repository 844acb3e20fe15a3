"""`stepwiser select`: stepwise rejection-sampling data selection (SFT data for the policy)."""
from __future__ import annotations

import contextlib
import dataclasses

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.cli.search import LazyJudge
from stepwiser.stages.select import SelectConfig


@click.command("select")
@config_options(SelectConfig, section="select")
@engine_options("policy")
@engine_options("judge")
@overwrite_option
def command(cfg, policy_engine_opts, judge_engine_opts, overwrite):
    """Select fine-tuning data: k responses per prompt, keep the correct one the judge scores best
    (--strategy judge) or a random correct one (--strategy outcome, the baseline).

    \b
      stepwiser select --policy runs/policy --judge runs/judge --problems train.jsonl --k 8 -o runs/select
      stepwiser train-policy --data runs/select/train.jsonl ...

    Writes OUT/samples.jsonl, OUT/scores.jsonl (judge scores of the correct responses), OUT/train.jsonl
    (SFT examples: prompt, response, source "select", problem_id) and OUT/summary.json. Rerunning resumes.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.select import SUMMARY_NOTES, run_select

    cfg = dataclasses.replace(cfg, policy_engine=policy_engine_opts.engine, judge_engine=judge_engine_opts.engine)
    judge_cm = (LazyJudge(cfg.judge, judge_engine_opts, cfg.judge_kind, cfg.cot, cfg.judge_max_tokens, cfg.seed,
                          cfg.threshold) if cfg.judge else contextlib.nullcontext())
    with LazyEngine(cfg.policy, policy_engine_opts) as policy, judge_cm as judge:
        summary = run_select(cfg, policy, judge, overwrite=overwrite)
    print_summary("select", summary)
    click.echo(SUMMARY_NOTES)
