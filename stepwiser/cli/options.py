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
from typing import Any

import click

from stepwiser.io.config import build_config, field_default, load_yaml

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


def click_option(cls, f: dataclasses.Field):
    """The click option of field `f` of config class `cls` (its default stays None: unset)."""
    md = f.metadata
    typ, is_list = _base_type(cls, f)
    default = field_default(f)
    names = [n for n in (md.get("short"), option_name(f)) if n]
    help_ = md.get("help", "")
    shown = _show(default)
    if default is dataclasses.MISSING:
        help_ += "  [required]"
    elif shown is not None:
        help_ += f"  [default: {shown}]"
    if typ is bool and not is_list:
        long = option_name(f)
        return click.option(f"{long}/--no-{long[2:]}", f.name, default=None, help=help_)
    ptype: Any = _TYPES.get(typ, str)
    if md.get("choices"):
        ptype = click.Choice([str(c) for c in md["choices"]])
    elif md.get("path"):
        kind = md["path"]
        ptype = click.Path(exists=True, dir_okay=kind != "file", file_okay=kind != "dir")
    return click.option(*names, f.name, type=ptype, default=None, multiple=is_list, help=help_,
                        metavar="V[,V...]" if is_list else None)


def config_options(cls, section: str | None = None):
    """Decorator: adds every CLI field of `cls` as an option and `--config FILE.yaml`; the command then
    receives the finished config as its argument `cfg` (dataclass defaults < file < flags)."""
    fields = cli_fields(cls)

    def deco(fn):
        @functools.wraps(fn)
        @click.pass_context
        def wrapper(ctx, *args, **kwargs):
            values = {f.name: kwargs.pop(f.name) for f in fields}
            recipe = kwargs.pop("config_file")
            given = {}
            for f in fields:
                src = ctx.get_parameter_source(f.name)
                if src is not None and src != click.core.ParameterSource.DEFAULT:
                    v = values[f.name]
                    given[f.name] = _split(v) if isinstance(v, tuple) else v
            kwargs["cfg"] = make_config(cls, recipe, section, given)
            return fn(*args, **kwargs)

        for f in reversed(fields):
            wrapper = click_option(cls, f)(wrapper)
        wrapper.stepwiser_config = (cls, section)
        wrapper = click.option("--config", "config_file", default=None,
                               type=click.Path(exists=True, dir_okay=False),
                               help="YAML file of option values (keys = option names); flags override it.")(wrapper)
        return wrapper
    return deco


def file_values(cls, path: str, section: str | None) -> dict:
    """The values of a `--config` file for `cls`: its `section` mapping if present, else the top level;
    keys may be written with `-` or `_`, or as the option's declared flag name."""
    data = load_yaml(path)
    if section and isinstance(data.get(section), dict):
        data = data[section]
    by_flag = {option_name(f)[2:]: f.name for f in dataclasses.fields(cls)}
    out = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        out[by_flag.get(str(k).replace("_", "-"), key)] = v
    return out


def make_config(cls, path: str | None, section: str | None, given: dict):
    values = file_values(cls, path, section) if path else {}
    values.update(given)
    try:
        return build_config(cls, values, f"{path or 'command line'}{f' [{section}]' if section and path else ''}")
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e)) from None
