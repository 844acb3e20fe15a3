"""Recipes of `stepwiser run` (docs/RUN.md): the YAML file, `--set` overrides, the resolved plan.

A recipe is a mapping with a `run:` block (out, description, machine, results, pages) and `steps:`, a
list of steps run in order. A step runs a stepwiser subcommand (`command: "data synth"`) or a Python
script (`script: scripts/x.py`) with `options` (option names, `-` or `_`). The strings `{out}` and
`{repo}` in any value become the run folder and the repository root. Each step gets a key: a hash of
what it runs (command, options as written, `{out}` unexpanded, arguments, the script's text) chained
with the keys of every earlier step, so a change re-runs that step and every later one.

What a subcommand accepts is known to the command line only (layer rules: stages never import cli),
so `build_plan` takes a `resolve(tokens) -> CommandSpec` from the caller.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stepwiser.errors import StepwiserError
from stepwiser.io.config import load_yaml
from stepwiser.io.records import content_hash, file_hash

REPO = Path(__file__).resolve().parents[2]
RUN_KEYS = ("out", "description", "machine", "results", "pages")
STEP_KEYS = ("name", "command", "script", "options", "args", "config", "outputs", "estimate_s", "description")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class RecipeError(StepwiserError):
    """A recipe that cannot run as written (unknown step, option or key); nothing was run."""


@dataclass
class CommandSpec:
    """What a subcommand accepts: option key (with `_`) -> its flag for display ("--n", "-o"; None for a
    positional argument), whether it takes --overwrite, and its --config section name."""
    keys: dict[str, str | None]
    overwrite: bool = False
    section: str | None = None


@dataclass
class Step:
    name: str
    command: list[str] = field(default_factory=list)   # ["data", "synth"]; empty for a script
    script: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    estimate_s: float | None = None
    description: str = ""
    spec: CommandSpec | None = None
    key: str = ""
    template: dict[str, Any] = field(default_factory=dict)   # options, args, script before {out} expansion

    @property
    def label(self) -> str:
        return " ".join(self.command) if self.command else f"script {self.script}"

    @property
    def takes_overwrite(self) -> bool:
        return self.spec.overwrite if self.spec else False


@dataclass
class Plan:
    recipe: str
    out: Path
    steps: list[Step]
    description: str = ""
    machine: str = ""
    results: list[str] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def config(self) -> dict:
        """The resolved recipe (what the run's manifest records)."""
        return {"out": str(self.out), "steps": [{"name": s.name, "run": s.label, "options": s.options,
                                                  "args": s.args, "key": s.key} for s in self.steps]}


# --------------------------------------------------------------------------- overrides

def parse_overrides(items) -> list[tuple[str, str, Any]]:
    """`--set` values -> (step or "run", key, value parsed as YAML). Pieces of a comma-split value
    (`a.b=[x,y]` arrives as `a.b=[x` and `y]`) are joined back onto the assignment before them."""
    joined: list[str] = []
    for item in items:
        if "=" not in item.split(".", 1)[-1] and joined:
            joined[-1] += "," + item
        else:
            joined.append(item)
    out = []
    for item in joined:
        target, eq, raw = item.partition("=")
        step, dot, key = target.strip().partition(".")
        if not eq or not dot or not step or not key:
            raise RecipeError(f"--set {item!r}: expected STEP.OPTION=VALUE or run.KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((step, key.replace("-", "_"), value))
    return out


def apply_overrides(recipe: dict, overrides) -> dict:
    """The recipe with `--set` values applied (steps by name; `run.KEY` in the run block)."""
    steps = {s.get("name"): s for s in recipe.get("steps") or [] if isinstance(s, dict)}
    for step, key, value in parse_overrides(overrides):
        if step == "run":
            if key not in RUN_KEYS:
                raise RecipeError(f"--set run.{key}: unknown key; allowed: {', '.join(RUN_KEYS)}")
            recipe.setdefault("run", {})[key] = value
        elif step not in steps:
            raise RecipeError(f"--set {step}.{key}: no step {step!r}; steps: {', '.join(map(str, steps))}")
        else:
            opts = steps[step].get("options") or {}
            if not isinstance(opts, dict):
                raise RecipeError(f"step {step}: options must be a mapping of option names to values")
            same = [k for k in opts if str(k).lstrip("-").replace("-", "_") == key]
            steps[step]["options"] = {(key if k in same else k): (value if k in same else v)
                                      for k, v in opts.items()} if same else {**opts, key: value}
    return recipe


# --------------------------------------------------------------------------- expansion

def expand(value: Any, out: str) -> Any:
    """`{out}` and `{repo}` inside every string of `value` (other braces are left alone)."""
    if isinstance(value, str):
        return value.replace("{out}", out).replace("{repo}", str(REPO))
    if isinstance(value, list):
        return [expand(v, out) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, out) for k, v in value.items()}
    return value


def normalize_options(options: Any, where: str) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise RecipeError(f"{where}: options must be a mapping of option names to values")
    out = {}
    for k, v in options.items():
        key = str(k).lstrip("-").replace("-", "_")
        if key in out:
            raise RecipeError(f"{where}: option {key} is given twice (spelled with - and _)")
        out[key] = v
    return out


def section_values(path: str, section: str | None) -> dict:
    """A step's `config:` file: its section (as `--config` reads it: `-` or `_`), else its top level."""
    data = load_yaml(path)
    for name in ((section, section.replace("_", "-"), section.replace("-", "_")) if section else ()):
        if isinstance(data.get(name), dict):
            return data[name]
    return data


# --------------------------------------------------------------------------- the plan

def load_plan(path: str, overrides=(), resolve: Callable[[list[str]], CommandSpec] | None = None) -> Plan:
    """The resolved plan of recipe `path` with `--set` overrides, every step checked (no step runs if
    any is wrong)."""
    try:
        recipe = load_yaml(path)
    except ValueError as e:
        raise RecipeError(str(e)) from None
    unknown = sorted(set(recipe) - {"run", "steps"})
    if unknown:
        raise RecipeError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed: run, steps")
    recipe = apply_overrides(recipe, overrides)
    run = recipe.get("run") or {}
    if not isinstance(run, dict) or sorted(set(run) - set(RUN_KEYS)):
        raise RecipeError(f"{path}: the run block is a mapping of {', '.join(RUN_KEYS)}")
    out = str(run.get("out") or f"runs/{Path(path).stem}")
    steps_raw = recipe.get("steps") or []
    if not isinstance(steps_raw, list) or not steps_raw:
        raise RecipeError(f"{path}: steps must be a non-empty list")
    steps, seen, chain = [], set(), ""
    for i, raw in enumerate(steps_raw):
        step = build_step(raw, i, path, out, resolve)
        if step.name in seen:
            raise RecipeError(f"{path}: step name {step.name!r} is used twice")
        seen.add(step.name)
        step.key = chain = content_hash([chain, step_identity(step)])
        steps.append(step)
    check_outputs(steps, Path(out), path)
    pages = expand(run.get("pages") or {}, out)
    if not isinstance(pages, dict):
        raise RecipeError(f"{path}: run.pages is a mapping of labels to paths")
    return Plan(recipe=str(path), out=Path(out), steps=steps, description=str(run.get("description") or ""),
                machine=str(run.get("machine") or ""), results=list(expand(run.get("results") or [], out)),
                pages={str(k): str(v) for k, v in pages.items()}, overrides=list(overrides))


def build_step(raw: Any, i: int, path: str, out: str, resolve) -> Step:
    if not isinstance(raw, dict) or not raw.get("name"):
        raise RecipeError(f"{path}: step {i + 1} needs a name (a mapping with name, command or script, "
                          "options)")
    name = str(raw["name"])
    where = f"{path}: step {name}"
    if not NAME_RE.match(name):
        raise RecipeError(f"{where}: a step name is letters, digits, - and _ only")
    unknown = sorted(set(raw) - set(STEP_KEYS))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(STEP_KEYS)}")
    if bool(raw.get("command")) == bool(raw.get("script")):
        raise RecipeError(f"{where}: give either command (a stepwiser subcommand) or script (a Python file)")
    step = Step(name=name, command=str(raw.get("command") or "").split(),
                description=str(raw.get("description") or ""),
                script=script_path(expand(str(raw["script"]), out)) if raw.get("script") else None,
                args=[str(a) for a in expand(raw.get("args") or [], out)],
                estimate_s=float(raw["estimate_s"]) if raw.get("estimate_s") is not None else None)
    if step.command:
        step.spec = resolve(step.command) if resolve else CommandSpec(keys={})
    options = normalize_options(raw.get("options"), where)
    if raw.get("config"):
        section = step.spec.section if step.spec else None
        base = normalize_options(section_values(expand(str(raw["config"]), out), section),
                                 f"{where} (config {raw['config']})")
        options = {**base, **options}
    step.options = expand(options, out)
    step.template = {"options": options, "args": [str(a) for a in raw.get("args") or []],
                     "script": str(raw["script"]) if raw.get("script") else None}
    check_options(step, where)
    declared = raw.get("outputs")
    step.outputs = [str(p) for p in expand(declared, out)] if declared else (
        [str(step.options["out"])] if isinstance(step.options.get("out"), str) else [])
    return step


def script_path(script: str) -> str:
    """A script path as given (relative to the working folder), else relative to the repository root."""
    p = Path(script)
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        return str(REPO / p)
    return script


def check_options(step: Step, where: str) -> None:
    if step.spec is None or not step.spec.keys:
        return
    bad = sorted(k for k in step.options if k not in step.spec.keys)
    if bad:
        allowed = sorted(step.spec.keys)
        raise RecipeError(f"{where}: {step.label} has no option(s) {', '.join(bad)}; "
                          f"allowed: {', '.join(allowed)}")


def check_outputs(steps: list[Step], out: Path, path: str) -> None:
    for s in steps:
        for o in s.outputs:
            if Path(o).resolve() == out.resolve():
                raise RecipeError(f"{path}: step {s.name} writes into the run folder {out} itself; give it a "
                                  "subfolder ({out}/NAME): the run folder holds the run's own manifest.json")


def step_identity(step: Step) -> dict:
    """What decides a step's results: the command or the script (and its text), options, arguments, with
    paths in the run folder as `{out}` (a moved run folder keeps its keys)."""
    ident: dict[str, Any] = {"command": step.command, **step.template}
    if step.script:
        p = Path(step.script)
        ident["script_hash"] = file_hash(p) if p.is_file() else None
    return ident


def script_flags(options: dict) -> list[str]:
    """A script's options as flags: `--key value`, a true boolean as `--key` (false: left out), a list as
    `--key v1 v2 ...`, None left out."""
    out: list[str] = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        if v is None or v is False:
            continue
        if v is True:
            out.append(flag)
        elif isinstance(v, (list, tuple)):
            out += [flag, *map(str, v)]
        else:
            out += [flag, str(v)]
    return out


def select_steps(plan: Plan, only=(), from_step: str | None = None) -> list[Step]:
    """The steps `--only` (any number) and `--from` (that step and every later one) pick, in recipe order."""
    names = plan.names()
    for n in [*only, *([from_step] if from_step else [])]:
        if n not in names:
            raise RecipeError(f"no step {n!r} in {plan.recipe}; steps: {', '.join(names)}")
    if only and from_step:
        raise RecipeError("give --only or --from, not both")
    if only:
        return [s for s in plan.steps if s.name in set(only)]
    if from_step:
        return plan.steps[names.index(from_step):]
    return list(plan.steps)
