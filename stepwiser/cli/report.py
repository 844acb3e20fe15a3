"""`stepwiser report`: several ProcessBench summaries -> one Markdown table and a bar chart."""
from __future__ import annotations

import click

from stepwiser.cli.options import config_options
from stepwiser.stages.report import ReportConfig


@click.command("report")
@config_options(ReportConfig, section="report", arguments=("summaries",))
def command(cfg):
    """Compare judges: rows = judges, columns = subsets + average F1 with bootstrap 95% intervals.

    \b
      stepwiser report runs/eval-*/summary.json --names untrained,disc,stepwiser -o table.md --plot chart.png
    """
    from stepwiser.stages.report import load_rows, make_report, select_best

    rows = load_rows(cfg.summaries, cfg.names or None)
    click.echo(make_report(cfg.summaries, cfg.names or None, cfg.out, cfg.plot, rows=rows), nl=False)
    if cfg.select:
        i = select_best(rows)
        best = rows[i][1]
        click.echo(f"selected: {(best.get('meta') or {}).get('judge') or cfg.summaries[i]} "
                   f"(average F1 {best['average_f1']})")
    for label, path in (("table", cfg.out), ("plot", cfg.plot)):
        if path:
            click.echo(f"wrote {label}: {path}", err=True)
