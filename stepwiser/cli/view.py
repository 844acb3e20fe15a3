"""`stepwiser view`: annotate, eval and search outputs -> one self-contained HTML page."""
from __future__ import annotations

import click

from stepwiser.cli.options import config_options
from stepwiser.stages.view import ViewConfig


@click.command("view")
@config_options(ViewConfig, section="view", arguments=("inputs",))
def command(cfg):
    """Browse solutions chunk by chunk: labels, Q-values, rollouts, judge verdicts and analyses, resets.

    \b
      stepwiser view runs/micro/annotations.jsonl -o runs/micro/view.html
      stepwiser view runs/eval-gsm8k runs/search -o page.html

    Inputs: annotate JSONL files, eval processbench / eval labels output folders, search output folders
    (the kind is read from the content). Writes one HTML file that needs no network: chunks coloured by
    label or judge verdict, filters, search, summary plots.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.view import run_view

    summary = run_view(cfg)
    print_summary("view", summary)
    click.echo(f"wrote page: {summary['page']}", err=True)
