"""`stepwiser export-judge`: training checkpoints as judge folders (for checkpoint selection on a dev split)."""
from __future__ import annotations

import click

from stepwiser.cli.common import overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.export_judge import ExportJudgeConfig


@click.command("export-judge")
@config_options(ExportJudgeConfig, section="export_judge", arguments=("sources",))
@overwrite_option
def command(cfg, overwrite):
    """Make judge folders of `train-judge` checkpoints (a run folder = all of its checkpoints).

    Each OUT/checkpoint-N is a plain HF model with its tokenizer and stepwiser_judge.json (the run's, plus
    `checkpoint` and `step`), usable like RUN/final by `stepwiser eval` and every engine. Select on dev, then
    evaluate the chosen one once on test:

    \b
      stepwiser export-judge runs/judge -o runs/judge-ckpts
      for c in runs/judge-ckpts/checkpoint-*; do
        stepwiser eval processbench --judge $c --data runs/bench --subsets dev -o runs/dev-$(basename $c); done
    """
    from pathlib import Path

    from stepwiser.stages.export_judge import checkpoints_of, export_checkpoint

    checkpoints = [c for s in cfg.sources for c in checkpoints_of(s)]
    names = [c.name for c in checkpoints]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise click.UsageError(f"two sources have {', '.join(clash)}: export them to different --out folders")
    for c in checkpoints:
        click.echo(str(export_checkpoint(c, Path(cfg.out) / c.name, overwrite=overwrite)))
