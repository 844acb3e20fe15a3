"""What `stepwiser run` prints: the plan at the start, a header per step, the times and results at the end."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stepwiser.stages.run_recipe import Plan, Step, script_flags

STATUS = {"done": "done (skip)", "new": "to run", "resume": "resume", "changed": "changed: rerun",
          "outputs missing": "outputs missing: rerun"}


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 10 and s != int(s):
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def short_path(path: str, out: Path) -> str:
    """`path` relative to the run folder when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return path


def display_command(step: Step) -> str:
    """The step as one shell command with flags (what its --config file amounts to)."""
    if step.script:
        words = [*(step.launcher or ["python"]), step.script, *step.args, *script_flags(step.options)]
        return " ".join(shlex.quote(a) for a in words)
    keys = step.spec.keys if step.spec else {}
    words = [*(step.launcher or ["stepwiser"]), *step.command, *step.args]
    for k, v in step.options.items():
        flag = keys.get(k, "--" + k.replace("_", "-"))
        values = v if isinstance(v, list) else [v]
        if flag is None:   # a positional argument
            words += [str(x) for x in values]
        elif isinstance(v, bool):
            words.append(flag if v else f"--no-{flag[2:]}")
        elif v is not None:
            for x in values:
                words += [flag, str(x)]
    return " ".join(shlex.quote(w) for w in words)


def estimate(step: Step, state) -> tuple[float | None, bool]:
    """(seconds, measured here): the step's last time in this run folder, else the recipe's estimate."""
    here = state.last_seconds(step)
    return (here, True) if here is not None else (step.estimate_s, False)


def print_plan(plan: Plan, selected: list[Step], state, console: Console, dry_run: bool = False,
               force: bool = False) -> None:
    chosen = {s.name for s in selected}
    t = Table(title=f"stepwiser run {plan.recipe} -> {plan.out}", title_justify="left")
    for col in ("#", "step", "runs", "estimate", "status"):
        t.add_column(col, no_wrap=col != "status")
    t.add_column("outputs", overflow="fold")
    todo, unknown = 0.0, 0
    for i, s in enumerate(plan.steps, 1):
        status = state.status(s)
        secs, here = estimate(s, state)
        label = STATUS.get(status, status)
        if s.name not in chosen:
            label = f"not selected ({label})"
        elif force:
            label = "forced: rerun"
        if s.name in chosen and (force or status != "done"):
            todo += secs or 0.0
            unknown += secs is None
        t.add_row(str(i), s.name, s.label, fmt_seconds(secs) + (" (here)" if here else ""), label,
                  "\n".join(short_path(o, plan.out) for o in s.outputs))
    if plan.description:
        console.print(plan.description.strip())
    console.print(t)
    where = f"estimates measured on {plan.machine}; " if plan.machine else ""
    if unknown:
        known = f"~{fmt_seconds(todo)} + " if todo else ""
        what = f"{known}{unknown} step(s) without an estimate"
    else:
        what = f"~{fmt_seconds(todo)}"
    at_once = f" Up to {plan.jobs} steps at once (--jobs): less wall time than that." if plan.jobs > 1 else ""
    console.print(f"{where}(here) = last time in this run folder. To run: {what}.{at_once} Logs: {plan.out / 'logs'}")
    first = min((i for i, s in enumerate(plan.steps) if s.name in chosen), default=0)
    behind = [s.name for s in plan.steps[:first] if s.name not in chosen and state.status(s) != "done"]
    if behind:
        console.print(f"[yellow]note[/]: earlier steps not done: {', '.join(behind)} (the selected steps may "
                      "need their outputs)")
    if dry_run:
        for s in plan.steps:
            if s.name in chosen:
                console.print(f"[bold]{s.name}[/]: {display_command(s)}", highlight=False, soft_wrap=True)


def announce_step(plan: Plan, step: Step, how: str, console: Console) -> None:
    log = plan.out / "logs" / f"{step.name}.log"
    console.rule(f"[bold]{step.name}[/] ({STATUS.get(how, how)}): {step.label}", align="left")
    console.print(f"{display_command(step)}\nlog: {log}", markup=False, highlight=False, soft_wrap=True)


def print_end(plan: Plan, results, state, total: float, console: Console) -> None:
    t = Table(title=f"stepwiser run {plan.recipe}: done", title_justify="left")
    for col in ("step", "what", "time", "estimate"):
        t.add_column(col)
    for step, how, seconds in results:
        t.add_row(step.name, how, fmt_seconds(seconds) if seconds is not None else "-",
                  fmt_seconds(step.estimate_s) if step.estimate_s is not None else "-")
    console.print(t)
    ran = [s for s, how, _ in results if how == "ran"]
    console.print(f"{len(ran)} step(s) ran in {fmt_seconds(total)}" if ran else
                  "nothing to run: every selected step is done with the same options (--force reruns)")
    print_results(plan, console)
    for label, path in plan.pages.items():
        console.print(f"{label}: {path}" + ("" if Path(path).exists() else "  (not written)"),
                      markup=False, highlight=False)
    console.print(f"run folder: {plan.out} (manifest {plan.out / 'manifest.json'}, logs {plan.out / 'logs'})",
                  markup=False, highlight=False)


def print_results(plan: Plan, console: Console) -> None:
    """The recipe's result files: Markdown or text as written, a JSON object as a table."""
    from stepwiser.io.summary import print_summary

    for path in plan.results:
        p = Path(path)
        if not p.is_file():
            console.print(f"{path}: (not written)", markup=False, highlight=False)
            continue
        if p.suffix == ".json":
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except ValueError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("summary"), dict) and "config_hash" in data:
                title = f"{data.get('stage', 'stage')} ({short_path(path, plan.out)})"   # a C7 manifest
                print_summary(title, data["summary"], console)
                continue
            if isinstance(data, dict):
                print_summary(str(p), data, console)
                continue
        console.print(f"[bold]{path}[/]")
        console.print(p.read_text(encoding="utf-8").rstrip(), markup=False, highlight=False, soft_wrap=True)
