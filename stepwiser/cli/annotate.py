"""`stepwiser annotate`: Monte Carlo Q-values and labels for every chunk (also: --relabel, --merge)."""
from __future__ import annotations

import dataclasses

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.annotate import AnnotateConfig


@click.command("annotate")
@config_options(AnnotateConfig, section="annotate")
@engine_options()
@overwrite_option
def command(cfg, engine_opts, overwrite):
    """Estimate Q for every chunk by rollouts and label chunks (Abs-Q, Rel-Ratio, Rel-Effective).

    Also: --relabel FILE (new gamma/alpha from stored counts) and --merge SHARD... (join shards).
    """
    from stepwiser.io.summary import print_summary

    if cfg.task == "relabel":
        from stepwiser.stages.relabel import relabel
        print_summary("relabel", relabel(cfg.relabel, cfg.out, cfg.labels, cfg.gamma, cfg.alpha, cfg.n))
        return
    if cfg.task == "merge":
        from stepwiser.stages.merge import merge
        print_summary("merge", merge(cfg.merge, cfg.out, cfg.samples))
        return
    from stepwiser.stages.annotate import run_annotate

    cfg = dataclasses.replace(cfg, engine=engine_opts.engine)
    with LazyEngine(cfg.policy, engine_opts) as factory:
        print_summary("annotate", run_annotate(cfg, factory, overwrite=overwrite))
