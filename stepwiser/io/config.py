"""Typed stage configs: dataclasses loadable from a YAML recipe section, overridden by CLI flags."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"recipe {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
    return data



def section_values(path: str | Path, section: str | None) -> dict:
    """The mapping of a `--config` file: its `section` (spelled with `-` or `_`) if present, else the top."""
    data = load_yaml(path)
    for name in ((section, section.replace("_", "-"), section.replace("-", "_")) if section else ()):
        if isinstance(data.get(name), dict):
            return data[name]
    return data

def build_config(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """`cls(**values)` with a clear ValueError for unknown or missing keys (deprecated key spellings are
    renamed first, see `resolve_aliases`)."""
    values = resolve_aliases(cls, values, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {', '.join(missing)}")
    return cls(**values)


# --------------------------------------------------------------------------- declaring options

def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,
           flag: str | None = None, short: str | None = None, cli: bool = True, path: str | None = None,
           aliases: tuple[str, ...] = ()):
    """A config field that carries its command-line option: `help` text, allowed `choices`, an option
    name other than `--field-name` (`flag`), a one-letter alias (`short`, e.g. "-o"), `path` ("file",
    "dir" or "any": the value must exist), `cli=False` for fields set by code only, and `aliases`: old
    names of the field (e.g. "warmup_steps"), still accepted as file keys and as `--warmup-steps` with a
    deprecation warning (see `resolve_aliases`). Mutable defaults (lists, dicts) are copied per instance."""
    meta = {"help": help, "choices": choices, "flag": flag, "short": short, "cli": cli, "path": path,
            "aliases": tuple(aliases)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_default(f: dataclasses.Field) -> Any:
    """The default of a dataclass field (MISSING when it is required)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def check_choice(name: str, value: Any, allowed) -> None:
    """A clean error naming the allowed values (for config fields with `choices`)."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def check_choices(cfg) -> None:
    """Check every field declared with `choices` (call from a config's __post_init__)."""
    for f in dataclasses.fields(cfg):
        allowed = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if allowed and value is not None:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                check_choice(f.name, v, allowed)


# --------------------------------------------------------------------------- deprecated names

_WARNED: set[tuple[str, str]] = set()


def field_aliases(cls) -> dict[str, str]:
    """Deprecated name -> field name, for the fields of `cls` declared with `option(aliases=...)`."""
    return {a: f.name for f in dataclasses.fields(cls) for a in f.metadata.get("aliases", ())}


def warn_deprecated(old: str, new: str) -> None:
    """A FutureWarning that `old` is now `new`, once per process and pair."""
    if (old, new) not in _WARNED:
        _WARNED.add((old, new))
        warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                      FutureWarning, stacklevel=3)


def resolve_aliases(cls, values: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """`values` with deprecated key spellings renamed to their field (a warning once per spelling);
    giving both the old and the new name is a ValueError."""
    aliases = field_aliases(cls)
    out = dict(values)
    for old, new in aliases.items():
        if old in out:
            if new in out:
                raise ValueError(f"{where}: give {new} or its deprecated name {old}, not both")
            warn_deprecated(old, new)
            out[new] = out.pop(old)
    return out
