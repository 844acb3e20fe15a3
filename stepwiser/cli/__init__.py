"""The `stepwiser` command (C1): one subcommand per stage, each in its own module of this package.

A subcommand is listed only when its module exists (stages not built yet are absent from --help).
Modules are imported lazily, so `stepwiser --help` and `stepwiser SUB --help` need no model, no
network and no heavy import.

Exit codes: 0 ok, 2 usage error, 1 runtime failure with a one-line message (traceback with --debug).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from stepwiser import __version__

# subcommand -> module under stepwiser.cli (each defines `command`, a click.Command)
SUBCOMMANDS = {
    "data": "data",
    "init-model": "init_model",
    "sample": "sample",
    "segment": "segment",
    "train-policy": "train_policy",
    "train-policy-grpo": "train_policy_grpo",
    "annotate": "annotate",
    "judge-data": "judge_data",
    "train-judge": "train_judge",
    "export-judge": "export_judge",
    "eval": "evaluate",
    "report": "report",
    "report-run": "report_run",
    "search": "search",
    "select": "select",
    "serve": "serve",
    "run": "run",
    "view": "view",
}


def _module_name(sub: str) -> str:
    return f"{__name__}.{SUBCOMMANDS[sub]}"


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [s for s in SUBCOMMANDS if importlib.util.find_spec(_module_name(s)) is not None]

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS or importlib.util.find_spec(_module_name(name)) is None:
            return None
        return importlib.import_module(_module_name(name)).command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stepwiser")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """StepWiser: stepwise generative judges for math reasoning.

    Pipeline: data -> sample -> annotate -> judge-data -> train-judge -> eval / search / select.
    Every stage reads and writes JSONL files and resumes where it stopped.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None) -> int:
    """Run the command line; the exit code: a command's `ctx.exit(n)` gives n, Ctrl-C 130 (click turns a
    KeyboardInterrupt inside a command into Abort), usage errors 2, other failures 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="stepwiser", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # usage errors and bad parameters
        e.show()
        return e.exit_code
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt):
            click.echo("Interrupted; outputs written so far are kept and the stage resumes on rerun.", err=True)
            return 130
        click.echo("Aborted.", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("Interrupted; outputs written so far are kept and the stage resumes on rerun.", err=True)
        return 130
    except Exception as e:
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"error: {msg}", err=True)
        click.echo("(rerun with --debug for the traceback)", err=True)
        return 1
    # with standalone_mode=False, click returns ctx.exit(n)'s code (or the command's return value)
    return rv if type(rv) is int else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
