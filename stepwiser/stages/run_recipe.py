"""Recipes of `stepwiser run` (docs/RUN.md): the YAML file, `--set` overrides, the resolved plan.

A recipe is a mapping with a `run:` block (out, description, machine, results, pages, vars) and
`steps:`, a list of steps run in order. A step runs a stepwiser subcommand (`command: "data synth"`) or
a Python script (`script: scripts/x.py`) with `options` (option names, `-` or `_`), optionally under a
`launcher` (what replaces `python -m stepwiser`, e.g. `accelerate launch ... -m stepwiser`). Variables
in any string: `{out}` (the run folder), `{repo}` (the repository root), `{python}` (this Python) and
the names of `run.vars`; an unknown `{name}` is an error, `{{` and `}}` are literal braces. Each step
gets a key: a hash of what it runs (command, launcher, options as written with `run.vars` filled in and
`{out}`, `{repo}`, `{python}` unexpanded, arguments, the script's text) chained with the keys of every
earlier step, so a change re-runs that step and every later one.

What a subcommand accepts is known to the command line only (layer rules: stages never import cli),
so `build_plan` takes a `resolve(tokens) -> CommandSpec` from the caller.
"""
from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stepwiser.errors import StepwiserError
from stepwiser.io.config import load_yaml, section_values
from stepwiser.io.records import content_hash, file_hash

REPO = Path(__file__).resolve().parents[2]
RUN_KEYS = ("out", "description", "machine", "results", "pages", "vars", "jobs")
STEP_KEYS = ("name", "command", "script", "launcher", "options", "args", "config", "outputs", "estimate_s",
             "description")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
BUILTINS = ("out", "repo", "python")      # variables every recipe has; kept unexpanded in the step keys
VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VAR_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    launcher: list[str] = field(default_factory=list)   # replaces `python -m stepwiser` (or `python`)
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
    vars: dict[str, Any] = field(default_factory=dict)   # run.vars as used (after --set)
    jobs: int = 1   # run.jobs: steps at once unless `--jobs` says otherwise

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def config(self) -> dict:
        """The resolved recipe (what the run's manifest records)."""
        return {"out": str(self.out), **({"vars": self.vars} if self.vars else {}),
                "steps": [{"name": s.name, "run": s.label, "options": s.options, "args": s.args,
                           **({"launcher": s.launcher} if s.launcher else {}), "key": s.key}
                          for s in self.steps]}


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
        if step == "run":   # run.KEY or run.KEY.SUB... (run.vars.gpus): only KEY is normalised
            head, dot, rest = key.partition(".")
            key = head.replace("-", "_") + dot + rest
        else:
            key = key.replace("-", "_")
        out.append((step, key, value))
    return out


def apply_overrides(recipe: dict, overrides) -> dict:
    """The recipe with `--set` values applied (steps by name; `run.KEY` in the run block)."""
    steps = {s.get("name"): s for s in recipe.get("steps") or [] if isinstance(s, dict)}
    for step, key, value in parse_overrides(overrides):
        if step == "run":
            path = key.split(".")
            if path[0] not in RUN_KEYS:
                raise RecipeError(f"--set run.{key}: unknown key; allowed: {', '.join(RUN_KEYS)}")
            if recipe.get("run") is None:
                recipe["run"] = {}
            node = recipe["run"]
            if not isinstance(node, dict):
                raise RecipeError("the run block must be a mapping")
            for i, part in enumerate(path[:-1]):   # run.vars.gpus: into the run.vars mapping
                if node.get(part) is None:
                    node[part] = {}
                if not isinstance(node[part], dict):
                    raise RecipeError(f"--set run.{key}: run.{'.'.join(path[:i + 1])} is not a mapping")
                node = node[part]
            node[path[-1]] = value
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

class Vars:
    """The recipe's variables: `{out}`, `{repo}`, `{python}` and `run.vars`. `final` gives the values a
    step gets; `key` the text its key hashes (`run.vars` filled in, the built-ins left as written, so a
    moved run folder or repository keeps its keys while `--set run.vars.gpus=4` changes them)."""

    def __init__(self, run: dict, path: str):
        raw = run.get("vars") or {}
        if not isinstance(raw, dict):
            raise RecipeError(f"{path}: run.vars is a mapping of variable names to values")
        for name, value in raw.items():
            if not isinstance(name, str) or not VAR_NAME_RE.match(name):
                raise RecipeError(f"{path}: run.vars: {name!r} is not a variable name (letters, digits, _)")
            if name in BUILTINS:
                raise RecipeError(f"{path}: run.vars: {name} is built in ({', '.join(BUILTINS)}); pick another "
                                  "name")
            if isinstance(value, (dict, list)):
                raise RecipeError(f"{path}: run.vars.{name}: a variable is a string, number, boolean or null")
        self.raw = dict(raw)
        base = {"repo": str(REPO), "python": sys.executable}
        early = {k: substitute(v, base, f"{path}: run.vars.{k}", keep={"out"}, known=BUILTINS)
                 for k, v in raw.items()}
        out_raw = run.get("out")
        out = str(substitute(str(out_raw), {**base, **{k: v for k, v in early.items() if not has_var(v, "out")}},
                             f"{path}: run.out", known=("repo", "python", *raw))) if out_raw \
            else f"runs/{Path(path).stem}"
        self.out = out
        self.values = {**base, "out": out}
        self.values.update({k: substitute(v, self.values, f"{path}: run.vars.{k}") for k, v in early.items()})
        self.path = path

    def final(self, value: Any, where: str, strict: bool = True) -> Any:
        """Every variable filled in (`strict=False`: unknown names and `{{`/`}}` left as written)."""
        return walk(value, lambda t: substitute(t, self.values, where, strict=strict, escapes=strict))

    def key(self, value: Any, where: str, strict: bool = True) -> Any:
        """`run.vars` filled in, built-ins and escapes as written: what a step's key sees."""
        return walk(value, lambda t: substitute(t, self.raw, where, keep=set(BUILTINS), strict=strict,
                                                escapes=False, known=(*BUILTINS, *self.raw)))


def has_var(value: Any, name: str) -> bool:
    return isinstance(value, str) and any(m.group(1) == name for m in VAR_RE.finditer(value))


def walk(value: Any, fn: Callable[[str], Any]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [walk(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: walk(v, fn) for k, v in value.items()}
    return value


def substitute(text: Any, values: dict, where: str, keep=frozenset(), strict: bool = True, escapes: bool = True,
               known=None) -> Any:
    """`{name}` in `text` -> values[name] (a string that is exactly one non-string variable, `"{gpus}"`,
    becomes its value: 8, not "8"); names in `keep` stay as written. `{{`/`}}` -> `{`/`}` when `escapes`.
    An unknown name is a RecipeError listing the known ones (`strict=False`: left as written)."""
    if not isinstance(text, str):
        return text
    whole = VAR_RE.fullmatch(text)
    if whole and whole.group(1) in values and whole.group(1) not in keep and not isinstance(values[whole.group(1)], str):
        return values[whole.group(1)]

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name is None:
            return m.group(0)[0] if escapes else m.group(0)
        if name in keep:
            return m.group(0)
        if name in values:
            v = values[name]
            return "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        if not strict:
            return m.group(0)
        names = sorted(set(known if known is not None else values) | set(keep))
        raise RecipeError(f"{where}: unknown variable {{{name}}} in {text!r}; known: "
                          f"{', '.join('{' + n + '}' for n in names)} (add it under run.vars, or write "
                          "{{ and }} for literal braces)")

    return VAR_RE.sub(one, text)


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
    variables = Vars(run, str(path))
    out = variables.out
    steps_raw = recipe.get("steps") or []
    if not isinstance(steps_raw, list) or not steps_raw:
        raise RecipeError(f"{path}: steps must be a non-empty list")
    steps, seen, chain = [], set(), ""
    for i, raw in enumerate(steps_raw):
        step = build_step(raw, i, path, variables, resolve)
        if step.name in seen:
            raise RecipeError(f"{path}: step name {step.name!r} is used twice")
        seen.add(step.name)
        step.key = chain = content_hash([chain, step_identity(step)])
        steps.append(step)
    check_outputs(steps, Path(out), path)
    pages = variables.final(run.get("pages") or {}, f"{path}: run.pages")
    if not isinstance(pages, dict):
        raise RecipeError(f"{path}: run.pages is a mapping of labels to paths")
    results = variables.final(run.get("results") or [], f"{path}: run.results")
    jobs = run.get("jobs", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise RecipeError(f"{path}: run.jobs is a whole number >= 1 (steps at once), got {jobs!r}")
    return Plan(recipe=str(path), out=Path(out), steps=steps, description=str(run.get("description") or ""),
                machine=str(run.get("machine") or ""), results=[str(r) for r in results],
                pages={str(k): str(v) for k, v in pages.items()}, overrides=list(overrides),
                vars=dict(variables.raw), jobs=jobs)


def build_step(raw: Any, i: int, path: str, variables: Vars, resolve) -> Step:
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
    final = variables.final
    args_raw = [str(a) for a in raw.get("args") or []]
    launcher_raw = launcher_words(raw.get("launcher"), where)
    step = Step(name=name, command=str(raw.get("command") or "").split(),
                description=str(raw.get("description") or ""),
                script=script_path(str(final(str(raw["script"]), f"{where}: script"))) if raw.get("script") else None,
                args=[str(a) for a in final(args_raw, f"{where}: args")],
                launcher=[str(w) for w in final(launcher_raw, f"{where}: launcher")],
                estimate_s=float(raw["estimate_s"]) if raw.get("estimate_s") is not None else None)
    if step.command:
        step.spec = resolve(step.command) if resolve else CommandSpec(keys={})
    options = normalize_options(raw.get("options"), where)
    expanded = final(options, f"{where}: options")
    template = variables.key(options, f"{where}: options")
    if raw.get("config"):
        section = step.spec.section if step.spec else None
        cfg_where = f"{where} (config {raw['config']})"
        base = normalize_options(section_values(str(final(str(raw["config"]), f"{where}: config")), section),
                                 cfg_where)
        # a config file is also read by plain `--config`, which has no variables: its braces are lenient
        expanded = {**final(base, cfg_where, strict=False), **expanded}
        template = {**variables.key(base, cfg_where, strict=False), **template}
    step.options = expanded
    step.template = {"options": template, "args": [str(a) for a in variables.key(args_raw, f"{where}: args")],
                     "script": str(variables.key(str(raw["script"]), f"{where}: script")) if raw.get("script")
                     else None}
    if launcher_raw:   # only when given: recipes without a launcher keep the keys they had
        step.template["launcher"] = [str(w) for w in variables.key(launcher_raw, f"{where}: launcher")]
    check_options(step, where)
    declared = raw.get("outputs")
    step.outputs = [str(p) for p in final(declared, f"{where}: outputs")] if declared else (
        [str(step.options["out"])] if isinstance(step.options.get("out"), str) else [])
    return step


def launcher_words(launcher: Any, where: str) -> list[str]:
    """A step's `launcher`: a string (split as a shell would, before variables are filled in, so a path
    with spaces in `{out}` stays one word) or a list of words."""
    if launcher is None:
        return []
    if isinstance(launcher, str):
        try:
            words = shlex.split(launcher)
        except ValueError as e:
            raise RecipeError(f"{where}: launcher {launcher!r}: {e}") from None
    elif isinstance(launcher, list) and all(isinstance(w, (str, int, float)) for w in launcher):
        words = [str(w) for w in launcher]
    else:
        raise RecipeError(f"{where}: launcher is a string or a list of words (what replaces `python -m "
                          "stepwiser`)")
    if not words:
        raise RecipeError(f"{where}: launcher is empty")
    return words


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


def mentions(text: str, path: str) -> bool:
    """Does `text` name `path` or a path inside it (as a word, or after `=` as in `label=PATH`)?"""
    return re.search(r"(?:^|[=\s])" + re.escape(path.rstrip("/")) + r"(?:$|[/\s])", text) is not None


def step_needs(steps: list[Step]) -> dict[str, set[str]]:
    """step name -> the earlier steps it must wait for: those whose outputs its options or arguments name,
    and every earlier step that declares no outputs (what it writes is unknown). Used by `--jobs`."""
    needs: dict[str, set[str]] = {}
    for i, step in enumerate(steps):
        texts: list[str] = [*step.args]
        walk(step.options, texts.append)
        needs[step.name] = {a.name for a in steps[:i]
                            if not a.outputs or any(mentions(t, o) for t in texts for o in a.outputs)}
    return needs


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
