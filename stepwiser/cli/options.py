"""Command-line options generated from a stage's config dataclass: one source for every option.

Each field of the config (declared with `stepwiser.io.config.option`) becomes `--field-name` (or its
declared `flag`), typed from the annotation (`bool` fields become `--x/--no-x`, lists are given once per
value or comma-separated), with the field's help text and its default shown from the dataclass. Values
come, later ones winning, from: the dataclass defaults, `--config FILE.yaml` (keys equal to option
names, with `-` or `_`; a section named after the stage is used when the file has one), the flags given.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any

import click

from stepwiser.io.config import build_config, field_default, resolve_aliases, section_values, warn_deprecated

_TYPES = {int: int, float: float, str: str}


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def option_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _base_type(cls, f: dataclasses.Field):
    """(element type, is_list) from the field's annotation (`X | None` -> X)."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0] if len(args) == 1 else str
    if typing.get_origin(hint) in (list, tuple):
        inner = typing.get_args(hint)
        return (inner[0] if inner else str), True
    return hint, False


def _show(default: Any) -> str | None:
    if default is dataclasses.MISSING or default is None:
        return None
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, (list, tuple)):
        return ",".join(map(str, default)) if default else None
    return str(default)


def _split(values):
    """Comma-separated and repeated values of a list option, in order."""
    return [v for item in values for v in str(item).split(",") if v != ""]


def _param_type(md: dict, typ):
    if md.get("choices"):
        return click.Choice([str(c) for c in md["choices"]])
    if md.get("path"):
        kind = md["path"]
        return click.Path(exists=True, dir_okay=kind != "file", file_okay=kind != "dir")
    return _TYPES.get(typ, str)


def click_option(cls, f: dataclasses.Field, prefix: str = ""):
    """The click option of field `f` of config class `cls` (its default stays None: unset). With a
    `prefix` ("policy"), the option is `--policy-<name>` and its parameter `policy_<field>` (no short alias)."""
    md = f.metadata
    typ, is_list = _base_type(cls, f)
    default = field_default(f)
    long = option_name(f)
    if prefix:
        long = f"--{prefix}-{long[2:]}"
    pname = f"{prefix}_{f.name}" if prefix else f.name
    names = [n for n in (None if prefix else md.get("short"), long) if n]
    help_ = md.get("help", "")
    shown = _show(default)
    if default is dataclasses.MISSING:
        help_ += "  [required]"
    elif shown is not None:
        help_ += f"  [default: {shown}]"
    if typ is bool and not is_list:
        return click.option(f"{long}/--no-{long[2:]}", pname, default=None, help=help_)
    if is_list:   # comma-separated values are split later (`split_list`), then each is checked
        if md.get("choices"):
            help_ += f"  [one or more of: {', '.join(map(str, md['choices']))}]"
        ptype = _param_type({**md, "choices": None, "path": None}, typ)
    else:
        ptype = _param_type(md, typ)
    return click.option(*names, pname, type=ptype, default=None, multiple=is_list, help=help_,
                        metavar="V[,V...]" if is_list else None)


def click_argument(cls, f: dataclasses.Field):
    """Field `f` as a positional argument (a list field takes any number of values); required-ness is
    checked with the config, so that `--config FILE` may give it instead."""
    typ, is_list = _base_type(cls, f)
    return click.argument(f.name, nargs=-1 if is_list else 1, required=False, type=_param_type(f.metadata, typ))


def alias_option(cls, f: dataclasses.Field, alias: str):
    """The hidden option of a deprecated name of field `f` (`option(aliases=...)`): `--old-name`, whose
    parameter is the old name itself."""
    typ, is_list = _base_type(cls, f)
    long = "--" + alias.replace("_", "-")
    if typ is bool and not is_list:
        return click.option(f"{long}/--no-{long[2:]}", alias, default=None, hidden=True)
    return click.option(long, alias, type=_param_type(f.metadata, typ), default=None, multiple=is_list,
                        hidden=True)


def take_deprecated(ctx, fields, kwargs: dict, given: dict) -> None:
    """Move the values of deprecated option names from `kwargs` into `given` under their field's name
    (warning once); the old and the new name together is a usage error."""
    for f in fields:
        for alias in f.metadata.get("aliases", ()):
            v = kwargs.pop(alias)
            src = ctx.get_parameter_source(alias)
            if src is None or src == click.core.ParameterSource.DEFAULT:
                continue
            old = "--" + alias.replace("_", "-")
            if f.name in given:
                raise click.UsageError(f"give {option_name(f)} or its deprecated name {old}, not both")
            warn_deprecated(old, option_name(f))
            given[f.name] = split_list(f, v) if isinstance(v, tuple) else v


def given_values(ctx, fields, values: dict, arguments=()) -> dict:
    """The values of `fields` set on the command line (list options: comma-separated and repeated)."""
    given = {}
    for f in fields:
        src = ctx.get_parameter_source(f.name)
        v = values[f.name]
        if f.name in arguments:
            if v not in (None, ()):
                given[f.name] = list(v) if isinstance(v, tuple) else v
        elif src is not None and src != click.core.ParameterSource.DEFAULT:
            given[f.name] = split_list(f, v) if isinstance(v, tuple) else v
    return given


def split_list(f: dataclasses.Field, values) -> list:
    """A list option's values, comma-separated and repeated, in order; paths must exist (`path` fields)."""
    out = _split(values)
    kind = f.metadata.get("path")
    for v in out if kind else ():
        p = Path(v)
        if not p.exists() or (kind == "file" and not p.is_file()) or (kind == "dir" and not p.is_dir()):
            what = {"file": "file", "dir": "folder"}.get(kind, "path")
            raise click.BadParameter(f"{what} {v!r} does not exist", param_hint=option_name(f))
    return out


def config_options(cls, section: str | None = None, arguments: tuple[str, ...] = ()):
    """Decorator: adds every CLI field of `cls` as an option (the fields named in `arguments` as positional
    arguments, in that order) and `--config FILE.yaml`; the command then receives the finished config as
    its argument `cfg` (dataclass defaults < file < flags)."""
    fields = cli_fields(cls)
    by_name = {f.name: f for f in fields}
    unknown = [a for a in arguments if a not in by_name]
    if unknown:
        raise TypeError(f"{cls.__name__} has no CLI field(s) {', '.join(unknown)}")

    def deco(fn):
        @functools.wraps(fn)
        @click.pass_context
        def wrapper(ctx, *args, **kwargs):
            values = {f.name: kwargs.pop(f.name) for f in fields}
            recipe = kwargs.pop("config_file")
            given = given_values(ctx, fields, values, arguments)
            take_deprecated(ctx, fields, kwargs, given)
            roles = getattr(fn, "stepwiser_engines", ())
            kwargs["cfg"] = make_config(cls, recipe, section, given, arguments, engine_roles=roles)
            if recipe and roles:   # for engine_options: the file's engine keys
                ctx.meta[ENGINE_FILE_KEY] = engine_file_values(cls, recipe, section, roles)
            return fn(*args, **kwargs)

        for f in reversed(fields):
            if f.name not in arguments:
                wrapper = click_option(cls, f)(wrapper)
                for alias in f.metadata.get("aliases", ()):
                    wrapper = alias_option(cls, f, alias)(wrapper)
        wrapper.stepwiser_config = (cls, section)
        wrapper = click.option("--config", "config_file", default=None,
                               type=click.Path(exists=True, dir_okay=False),
                               help="YAML file of option values (keys = option names); flags override it.")(wrapper)
        for name in reversed(arguments):
            wrapper = click_argument(cls, by_name[name])(wrapper)
        return wrapper
    return deco


def file_values(cls, path: str, section: str | None) -> dict:
    """The values of a `--config` file for `cls`: its `section` mapping if present (the section name, like
    keys, may be written with `-` or `_`), else the top level; keys may also be the option's declared flag."""
    data = section_values(path, section)
    by_flag = {option_name(f)[2:]: f.name for f in dataclasses.fields(cls)}
    out = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        out[by_flag.get(str(k).replace("_", "-"), key)] = v
    return out


ENGINE_FILE_KEY = "stepwiser.engine_file_values"


def engine_keys(cls, roles) -> dict[str, tuple[str, str]]:
    """File key (with `_`) -> (role, EngineOptions field) of the engine options of `roles`; keys that
    are fields of the stage config `cls` itself stay the config's (except `engine`, set by the flags)."""
    from stepwiser.engines import EngineOptions

    own = {f.name for f in dataclasses.fields(cls) if f.name != "engine"}
    out = {}
    for role in roles:
        pre = f"{role}_" if role else ""
        for f in cli_fields(EngineOptions):
            for name in (f.name, option_name(f)[2:].replace("-", "_")):
                if pre + name not in own:
                    out[pre + name] = (role, f.name)
    return out


def engine_file_values(cls, path: str, section: str | None, roles) -> dict[str, dict]:
    """{role: {EngineOptions field: value}} from a `--config` file (keys as for `file_values`)."""
    keys = engine_keys(cls, roles)
    out: dict[str, dict] = {role: {} for role in roles}
    for k, v in section_values(path, section).items():
        key = str(k).replace("-", "_")
        if key in keys:
            role, name = keys[key]
            out[role][name] = v
    return out


def make_config(cls, path: str | None, section: str | None, given: dict, arguments: tuple[str, ...] = (),
                engine_roles: tuple[str, ...] = ()):
    try:
        values = file_values(cls, path, section) if path else {}
        for key in engine_keys(cls, engine_roles):   # engine options: read by engine_options
            values.pop(key, None)
        values = resolve_aliases(cls, values, path) if path else {}
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    values.update(given)
    missing = [f for f in cli_fields(cls) if f.name not in values and field_default(f) is dataclasses.MISSING]
    if missing:
        args = [f"{f.name.upper()}..." for f in missing if f.name in arguments]
        opts = [option_name(f) for f in missing if f.name not in arguments]
        parts = ([f"argument {' '.join(args)}"] if args else []) + ([f"option(s) {', '.join(opts)}"] if opts else [])
        raise click.UsageError(f"Missing {' and '.join(parts)} (on the command line or in --config FILE)")
    try:
        return build_config(cls, values, f"{path or 'command line'}{f' [{section}]' if section and path else ''}")
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e)) from None
