"""Options shared by the stage commands: engines (C5), outputs (C7), logging."""
from __future__ import annotations

import functools

import click

from stepwiser.cli.options import ENGINE_FILE_KEY, cli_fields, click_option
from stepwiser.engines import ENGINES, EngineOptions, LazyEngine, build_engine, engine_kwargs  # noqa: F401 (re-exported)


def engine_options(role: str = ""):
    """Add the options of `EngineOptions` (--[role-]engine, --[role-]base-url, --[role-]tp, ...).

    With role="policy" the options are --policy-engine, --policy-base-url, ... (stages with two models).
    The decorated function receives an `EngineOptions` in the argument `<role>_engine_opts` (or `engine_opts`).
    """
    fields = cli_fields(EngineOptions)
    key = f"{role}_engine_opts" if role else "engine_opts"

    def pname(f):
        return f"{role}_{f.name}" if role else f.name

    def deco(fn):
        @functools.wraps(fn)
        @click.pass_context
        def wrapper(ctx, *args, **kwargs):
            given = dict(ctx.meta.get(ENGINE_FILE_KEY, {}).get(role, {}))   # --config FILE < flags
            for f in fields:
                v = kwargs.pop(pname(f))
                src = ctx.get_parameter_source(pname(f))
                if src is not None and src != click.core.ParameterSource.DEFAULT:
                    given[f.name] = v
            try:
                kwargs[key] = EngineOptions(**given)
            except (ValueError, TypeError) as e:
                raise click.UsageError(str(e)) from None
            return fn(*args, **kwargs)

        for f in reversed(fields):
            wrapper = click_option(EngineOptions, f, prefix=role)(wrapper)
        wrapper.stepwiser_engines = (*getattr(fn, "stepwiser_engines", ()), role)
        return wrapper
    return deco


def overwrite_option(f):
    return click.option("--overwrite", is_flag=True,
                        help="Delete an existing output made with a different config and start over.")(f)
