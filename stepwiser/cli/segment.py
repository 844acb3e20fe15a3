"""`stepwiser segment`: teacher segmentation of correct responses into <chunk>s."""
from __future__ import annotations

import dataclasses

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.segment import SegmentConfig


@click.command("segment")
@config_options(SegmentConfig, section="segment")
@engine_options()
@overwrite_option
def command(cfg, engine_opts, overwrite):
    """Ask a teacher to insert <chunk> tags into correct responses; keep exact reconstructions.

    Output: SFT examples (prompt = problem, response = chunk-tagged text) for `stepwiser train-policy`.
    Responses that fail all attempts go to OUT.failed.jsonl with the reasons.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.segment import run_segment

    cfg = dataclasses.replace(cfg, engine=engine_opts.engine)
    with LazyEngine(cfg.teacher, engine_opts) as factory:
        print_summary("segment", run_segment(cfg, factory, overwrite=overwrite))
