"""`stepwiser sample`: N responses per problem, chunked and verified."""
from __future__ import annotations

import dataclasses

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.sample import SampleConfig


@click.command("sample")
@config_options(SampleConfig, section="sample")
@engine_options()
@overwrite_option
def command(cfg, engine_opts, overwrite):
    """Sample N responses per problem from a policy; parse chunks; verify final answers.

    Writes one sample record per line (problem_id, sample_id, response, chunks, correct, sampling).
    Rerunning the same command resumes; a different config into the same output is refused.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.sample import run_sample

    cfg = dataclasses.replace(cfg, engine=engine_opts.engine)
    with LazyEngine(cfg.policy, engine_opts) as factory:
        summary = run_sample(cfg, factory, overwrite=overwrite)
    print_summary("sample", summary)
