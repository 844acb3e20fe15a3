"""`stepwiser run RECIPE.yaml`: a recipe's steps in order, in one run folder, resumable (docs/RUN.md)."""
from __future__ import annotations

import click

from stepwiser.cli.options import config_options
from stepwiser.stages.run import RunConfig

NOT_OPTIONS = {"config_file", "overwrite", "help"}
NOT_STEPS = {"run": "a recipe cannot run recipes", "serve": "serve does not end; start it on its own"}


@click.command("run")
@config_options(RunConfig, arguments=("recipe",))
def command(cfg):
    """Run a recipe: its steps in order, every output in one run folder.

    \b
      stepwiser run recipes/quickstart.yaml
      stepwiser run recipes/quickstart.yaml --set run.out=/tmp/qs --set sample.n=4
      stepwiser run recipes/quickstart.yaml --from annotate
      stepwiser run recipes/quickstart.yaml --only sample --dry-run

    A step done with the same options (and the same earlier steps) is skipped, so running the same
    command again does nothing; after a crash or Ctrl-C it resumes the stopped step. A changed option
    reruns that step (with --overwrite) and every later one. A failing step stops the run with its log
    and the command that reruns it alone.
    """
    from stepwiser.stages.run import StepFailed, run_recipe
    from stepwiser.stages.run_recipe import RecipeError

    ctx = click.get_current_context()
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    try:
        run_recipe(cfg, resolve=resolve_command, debug=debug)
    except RecipeError as e:
        raise click.UsageError(str(e)) from None
    except StepFailed as e:
        raise StepFailedError(str(e)) from None
    except KeyboardInterrupt:   # the runner has said what stopped and how to resume
        raise InterruptedRun("") from None


class InterruptedRun(click.ClickException):
    """Ctrl-C or SIGTERM during a run: exit code 130, nothing more to print."""
    exit_code = 130

    def show(self, file=None) -> None:
        pass


class StepFailedError(click.ClickException):
    """A failed step: its message as is (no "Error:"), exit code 1."""
    exit_code = 1

    def show(self, file=None) -> None:
        click.secho(self.format_message(), fg="red", err=True)


def resolve_command(tokens: list[str]):
    """The `CommandSpec` of a stepwiser subcommand ("data synth" -> its options); RecipeError if unknown."""
    from stepwiser.cli import cli
    from stepwiser.stages.run_recipe import CommandSpec, RecipeError

    ctx = click.Context(cli)
    name = " ".join(tokens)
    if tokens[0] in NOT_STEPS:
        raise RecipeError(f"command {name}: {NOT_STEPS[tokens[0]]}")
    cmd = cli.get_command(ctx, tokens[0])
    allowed = [c for c in cli.list_commands(ctx) if c not in NOT_STEPS]
    if cmd is None:
        raise RecipeError(f"unknown command {name!r}; commands: {', '.join(allowed)}")
    rest = tokens[1:]
    if isinstance(cmd, click.Group):
        subs = sorted(cmd.commands)
        sub = cmd.get_command(ctx, rest[0]) if rest else None
        if sub is None:
            raise RecipeError(f"command {name!r}: {tokens[0]} needs one of: {', '.join(subs)}")
        cmd, rest = sub, rest[1:]
    if rest:
        raise RecipeError(f"command {name!r}: unexpected {' '.join(rest)} (option values go under options:)")
    spec = getattr(cmd.callback, "stepwiser_config", None)
    return CommandSpec(keys=command_keys(cmd), overwrite=any(p.name == "overwrite" for p in cmd.params),
                       section=spec[1] if spec else None)


def command_keys(cmd: click.Command) -> dict[str, str | None]:
    """Option key (with `_`) -> displayed flag for every option and argument a `--config` file may set:
    parameter names and long flag names (`problems` for `--problems`), engine options included."""
    keys: dict[str, str | None] = {}
    for p in cmd.params:
        if p.name in NOT_OPTIONS:
            continue
        if isinstance(p, click.Argument):
            keys[p.name] = None
            continue
        longs = [o for o in p.opts if o.startswith("--")]
        flag = longs[0] if longs else p.opts[0]
        keys.setdefault(p.name, flag)
        for o in longs:
            keys.setdefault(o[2:].replace("-", "_"), flag)
    return keys
