"""`stepwiser report`: several ProcessBench summaries -> one Markdown table and a bar chart."""
from __future__ import annotations

import click


@click.command("report")
@click.argument("summaries", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--names", default=None, help="Comma-separated row names, one per summary (default: the judge names).")
@click.option("-o", "--out", "table_out", type=click.Path(dir_okay=False), default=None,
              help="Write the Markdown table here (it is printed either way).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG bar chart with the intervals.")
@click.option("--select", "select", is_flag=True,
              help="Checkpoint selection (on a dev split): also print the judge to keep, on stdout after the table "
                   "as `selected: JUDGE`: highest average F1; ties by mean error/correct accuracy, then later step.")
def command(summaries, names, table_out, plot, select):
    """Compare judges: rows = judges, columns = subsets + average F1 with bootstrap 95% intervals.

    \b
      stepwiser report runs/eval-*/summary.json --names untrained,disc,stepwiser -o table.md --plot chart.png
    """
    from stepwiser.stages.report import load_rows, make_report, select_best

    name_list = [n.strip() for n in names.split(",")] if names else None
    rows = load_rows(list(summaries), name_list)
    click.echo(make_report(list(summaries), name_list, table_out, plot, rows=rows), nl=False)
    if select:
        i = select_best(rows)
        best = rows[i][1]
        click.echo(f"selected: {(best.get('meta') or {}).get('judge') or summaries[i]} "
                   f"(average F1 {best['average_f1']})")
    for label, path in (("table", table_out), ("plot", plot)):
        if path:
            click.echo(f"wrote {label}: {path}", err=True)
