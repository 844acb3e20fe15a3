"""Stage `run`: a recipe's steps in order, in one run folder, each step a subprocess (docs/RUN.md).

The run folder OUT holds the steps' outputs, OUT/manifest.json (C7: the resolved recipe, its hash, and
per step its key, completion, exit code, time and log), OUT/.run/STEP.yaml (the options a subcommand
step gets as `--config`) and OUT/logs/STEP.log (everything the step printed, every attempt).

A step is skipped when the manifest records it complete under the same key (its command, options and
every earlier step's key) and its outputs exist, with their own manifests (C7) complete. A step whose
key changed runs again with --overwrite (its stage would refuse a changed config otherwise), and so
does every later step, whose key chains it. A step that was stopped (Ctrl-C, a kill, a crash) keeps its
key and is not complete: the rerun resumes it without --overwrite, so the stage resumes from its
partial output. A failing step stops the run (StepFailed: the step, the exit code, the log, the
command that reruns it alone). With `jobs` > 1, steps whose inputs are ready run at once (threads, each
waiting on its subprocess); after a failure no new step starts and the running ones finish.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from stepwiser.errors import StepwiserError
from stepwiser.io.config import option
from stepwiser.io.records import content_hash, manifest_path, write_json
from stepwiser.stages.run_recipe import Plan, Step, load_plan, script_flags, select_steps, step_needs


@dataclass
class RunConfig:
    recipe: str = option(help="The recipe (YAML: a run block and a list of steps; docs/RUN.md).", path="file")
    only: list[str] = option([], "Run only these steps (repeat or comma-separate); done ones are still "
                                 "skipped.")
    from_step: str | None = option(None, "Run this step and every later one.", flag="--from")
    overrides: list[str] = option([], "Override a recipe value: STEP.OPTION=VALUE, run.KEY=VALUE or "
                                      "run.vars.NAME=VALUE (the value is read as YAML; repeat for several). "
                                      "A changed step reruns with every later one.", flag="--set")
    dry_run: bool = option(False, "Print the plan and each step's command; run nothing.")
    force: bool = option(False, "Rerun the selected steps from scratch even when done (their outputs are "
                                "replaced: --overwrite).")
    jobs: int | None = option(None, "Steps run at once: a step starts when every earlier step whose outputs "
                                    "it names is done (recipe order otherwise); its output lines are prefixed "
                                    "with its name. [default: the recipe's run.jobs, else 1]")

    def __post_init__(self):
        if self.jobs is not None and (not isinstance(self.jobs, int) or self.jobs < 1):
            raise ValueError(f"jobs must be a whole number >= 1, got {self.jobs!r}")


class StepFailed(StepwiserError):
    """A step that exited non-zero (or exited 0 without writing its outputs): the run stops."""

    def __init__(self, step: Step, code: int, log: Path, rerun: str, reason: str = ""):
        self.step, self.code, self.log, self.rerun = step, code, log, rerun
        why = reason or f"exit {code}"
        super().__init__(f"step {step.name} failed ({why}); log: {log}; rerun alone: {rerun}")


# --------------------------------------------------------------------------- state (OUT/manifest.json)

def output_problem(path: str) -> str | None:
    """Why output `path` is not a finished output (None: it is): missing, or its manifest incomplete."""
    p = Path(path)
    if not p.exists():
        return "missing"
    m = manifest_path(p)
    if m.is_file():
        try:
            if not json.loads(m.read_text(encoding="utf-8")).get("complete", True):
                return "manifest incomplete"
        except (OSError, ValueError):
            return "manifest unreadable"
    return None


class RunState:
    """The run's manifest: the resolved recipe and one record per step."""

    def __init__(self, plan: Plan):
        self.plan, self.path = plan, plan.out / "manifest.json"
        data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.steps: dict[str, dict] = data.get("steps", {}) if data.get("stage") == "run" else {}
        self.lock = threading.Lock()

    def status(self, step: Step) -> str:
        """done | new | resume | changed | outputs missing."""
        rec = self.steps.get(step.name)
        if rec is None:
            return "new"
        if rec.get("key") != step.key:
            return "changed"
        if not rec.get("complete"):
            return "resume"
        if any(output_problem(o) for o in step.outputs):
            return "outputs missing"
        return "done"

    def last_seconds(self, step: Step) -> float | None:
        return (self.steps.get(step.name) or {}).get("seconds")

    def save(self) -> None:
        from stepwiser import __version__

        config = self.plan.config()
        with self.lock:   # steps run in threads with --jobs: one writer at a time, no record changing meanwhile
            done = all(self.status(s) == "done" for s in self.plan.steps)
            write_json(self.path, {"stage": "run", "version": __version__, "recipe": self.plan.recipe,
                                   "config": config, "config_hash": content_hash(config), "complete": done,
                                   "steps": self.steps})


# --------------------------------------------------------------------------- one step

def step_argv(step: Step, config_path: Path, overwrite: bool, debug: bool = False) -> list[str]:
    """The step's command line: its `launcher` (default `python -m stepwiser`; for a script, `python`),
    then the subcommand and `--config OUT/.run/STEP.yaml` (a script: its arguments and flags)."""
    if step.script:
        return [*(step.launcher or [sys.executable]), step.script, *step.args, *script_flags(step.options)]
    prefix = step.launcher or [sys.executable, "-m", "stepwiser"]
    return [*prefix, *(["--debug"] if debug else []), *step.command, *step.args,
            "--config", str(config_path), *(["--overwrite"] if overwrite and step.takes_overwrite else [])]


def child_env(plan: Plan, overwrite: bool) -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("STEPWISER_PROGRESS_EVERY", "20")
    with contextlib.suppress(OSError):
        env.setdefault("COLUMNS", str(os.get_terminal_size().columns))
    env["STEPWISER_RUN_OUT"] = str(plan.out)
    env["STEPWISER_OVERWRITE"] = "1" if overwrite else "0"
    return env


def die_with_parent() -> None:  # pragma: no cover (runs in the child)
    """In the child (Linux): get SIGTERM when the runner dies, so a killed run leaves no stage running."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_child(proc: subprocess.Popen) -> None:
    """Ctrl-C, then SIGTERM, then SIGKILL, until the step's process is gone."""
    for send, wait in ((lambda: proc.send_signal(signal.SIGINT), 15), (proc.terminate, 10), (proc.kill, 10)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            send()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


LIVE: set[subprocess.Popen] = set()   # the steps' processes now running (stopped on an interrupt)
LIVE_LOCK = threading.Lock()


def run_process(argv: list[str], log: Path, env: dict, sink) -> int:
    """Run `argv` with its stdout and stderr appended to `log` and passed to `sink(bytes)`; the exit code.
    An interrupt (Ctrl-C, SIGTERM of the runner) stops the process and is raised again."""
    log.parent.mkdir(parents=True, exist_ok=True)
    linux = sys.platform.startswith("linux")
    with open(log, "ab") as fh:
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        fh.write(f"\n===== {stamp}: {' '.join(argv)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent if linux else None)  # noqa: PLW1509
        with LIVE_LOCK:
            LIVE.add(proc)
        try:
            fd = proc.stdout.fileno()
            while chunk := os.read(fd, 1 << 16):
                fh.write(chunk)
                fh.flush()
                sink(chunk)
            code = proc.wait()
        except BaseException:
            stop_child(proc)
            fh.write(b"\n===== interrupted: the step was stopped\n")
            raise
        finally:
            proc.stdout.close()
            with LIVE_LOCK:
                LIVE.discard(proc)
        fh.write(f"===== exit {code}\n".encode())
    return code


def console_sink(data: bytes) -> None:
    out = getattr(sys.stdout, "buffer", None)
    if out is not None:
        sys.stdout.flush()
        out.write(data)
        out.flush()
    else:
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()


# --------------------------------------------------------------------------- the run

class Interrupted(KeyboardInterrupt):
    """SIGTERM of the runner, handled like Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def run_lock(out: Path):
    """One `stepwiser run` per run folder at a time (an OS lock: released if the runner dies)."""
    import fcntl

    path = out / ".run" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StepwiserError(f"another `stepwiser run` is using {out} (lock {path}); wait for it or "
                                 "stop it") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def rerun_command(plan: Plan, step: Step) -> str:
    import shlex

    sets = "".join(f" --set {shlex.quote(s)}" for s in plan.overrides)
    return f"stepwiser run {shlex.quote(plan.recipe)} --only {step.name}{sets}"


def run_step(plan: Plan, state: RunState, step: Step, overwrite: bool, debug: bool, sink) -> float:
    """Run one step, recording it in the state before and after; its seconds. StepFailed on failure."""
    cfg_path = plan.out / ".run" / f"{step.name}.yaml"
    log = plan.out / "logs" / f"{step.name}.log"
    if step.command:
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(step.options, sort_keys=False, allow_unicode=True)
        cfg_path.write_text(text, encoding="utf-8")
    old = state.steps.get(step.name) or {}
    rec = {"key": step.key, "complete": False, "run": step.label, "log": str(log),
           "started": datetime.datetime.now().isoformat(timespec="seconds"),
           "attempts": old.get("attempts", 0) + 1 if old.get("key") == step.key else 1}
    if old.get("seconds") is not None:
        rec["seconds"] = old["seconds"]   # the last measured time: the next estimate on this machine
    with state.lock:
        state.steps[step.name] = rec
    state.save()
    t0 = time.time()
    code = run_process(step_argv(step, cfg_path, overwrite, debug), log, child_env(plan, overwrite), sink)
    seconds = round(time.time() - t0, 1)
    with state.lock:
        rec.update(exit=code, finished=datetime.datetime.now().isoformat(timespec="seconds"))
    missing = [o for o in step.outputs if output_problem(o) == "missing"] if code == 0 else []
    if code != 0 or missing:
        state.save()
        reason = f"exit 0 but {missing[0]} was not written" if missing else ""
        raise StepFailed(step, code, log, rerun_command(plan, step), reason)
    with state.lock:
        rec.update(complete=True, seconds=seconds)
    state.save()
    return seconds


def to_run(plan: Plan, selected: list[Step], state: RunState, force: bool):
    """(step, status) of the selected steps that need running, and the results of the others."""
    chosen = {s.name for s in selected}
    todo, results = [], {}
    for step in plan.steps:
        status = state.status(step)
        if step.name not in chosen:
            results[step.name] = "not selected"
        elif status == "done" and not force:
            results[step.name] = "skipped (done)"
        else:
            todo.append((step, status))
    return todo, results


def execute(plan: Plan, selected: list[Step], state: RunState, force: bool = False, debug: bool = False,
            sink=console_sink, announce=print, jobs: int = 1) -> list[tuple[Step, str, float | None]]:
    """Run the selected steps (in order; `jobs` > 1: `run_parallel`): (step, what happened, seconds) for
    each step of the plan. `announce(step, how)` is called before a step starts."""
    todo, how = to_run(plan, selected, state, force)
    seconds: dict[str, float] = {}
    with sigterm_as_interrupt():
        if jobs > 1:
            run_parallel(plan, todo, state, jobs, force, debug, sink, announce, seconds)
        else:
            for step, status in todo:
                overwrite = force or status == "changed"
                announce(step, "rerun from scratch" if overwrite else status)
                try:
                    seconds[step.name] = run_step(plan, state, step, overwrite, debug, sink)
                except KeyboardInterrupt:
                    state.save()
                    raise
    return [(s, how.get(s.name, "ran"), seconds.get(s.name)) for s in plan.steps]


class PrefixSink:
    """A step's output for a shared console: whole lines, each prefixed with the step's name; of a line
    rewritten with carriage returns (a progress bar) only its last state."""

    def __init__(self, name: str, sink):
        self.name, self.sink, self.buf = name, sink, b""

    def _lines(self, lines: list[bytes]) -> None:
        shown = [ln.rsplit(b"\r", 1)[-1] for ln in lines]
        text = b"".join(f"[{self.name}] ".encode() + ln + b"\n" for ln in shown if ln.strip())
        if text:
            self.sink(text)

    def __call__(self, data: bytes) -> None:
        *lines, self.buf = (self.buf + data).split(b"\n")
        self._lines(lines)

    def flush(self) -> None:
        """The last line, if the step ended without a newline."""
        self._lines([self.buf])
        self.buf = b""


def run_parallel(plan: Plan, todo, state: RunState, jobs: int, force: bool, debug: bool, sink, announce,
                 seconds: dict) -> None:
    """Up to `jobs` steps at once, each as soon as the steps it needs (`step_needs`) have run; recipe order
    breaks ties. After a failure no step starts and the running ones finish; the first failure is raised.
    An interrupt stops every running step (they resume on the next run)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    needs = step_needs(plan.steps)
    waiting, running, failed, sinks = list(todo), {}, [], {}
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="step")
    try:
        while waiting or running:
            busy = {s.name for s, _ in waiting} | {s.name for s in running.values()}
            for step, status in list(waiting) if not failed else []:
                if len(running) < jobs and not needs[step.name] & busy:
                    waiting.remove((step, status))
                    overwrite = force or status == "changed"
                    announce(step, "rerun from scratch" if overwrite else status)
                    out = sinks[step.name] = PrefixSink(step.name, sink)
                    running[pool.submit(run_step, plan, state, step, overwrite, debug, out)] = step
            if failed:
                waiting.clear()
            done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                step = running.pop(fut)
                sinks[step.name].flush()
                try:
                    seconds[step.name] = fut.result()
                except StepFailed as e:
                    failed.append(e)
    except KeyboardInterrupt:
        with LIVE_LOCK:
            procs = list(LIVE)
        for proc in procs:
            stop_child(proc)
        wait(list(running))
        state.save()
        raise
    finally:
        pool.shutdown(wait=True)
    if failed:
        raise failed[0]


def run_recipe(cfg: RunConfig, resolve=None, debug: bool = False, console=None) -> dict:
    """`stepwiser run`: plan, overview, the steps, the closing overview. Returns a summary dict."""
    from rich.console import Console

    from stepwiser.stages.run_overview import announce_step, print_end, print_plan

    console = console or Console()
    plan = load_plan(cfg.recipe, cfg.overrides, resolve)
    plan.jobs = cfg.jobs or plan.jobs
    selected = select_steps(plan, cfg.only, cfg.from_step)
    state = RunState(plan)
    print_plan(plan, selected, state, console, dry_run=cfg.dry_run, force=cfg.force)
    if cfg.dry_run:
        return {"dry_run": True, "steps": [s.name for s in selected]}
    t0 = time.time()
    plan.out.mkdir(parents=True, exist_ok=True)
    with run_lock(plan.out):
        try:
            results = execute(plan, selected, state, cfg.force, debug,
                              announce=lambda s, how: announce_step(plan, s, how, console),
                              jobs=plan.jobs)
        except KeyboardInterrupt:
            running = [n for n, r in state.steps.items() if not r.get("complete")]
            console.print(f"[bold yellow]interrupted[/] during {', '.join(running) or 'the run'}; partial "
                          f"outputs are kept; rerun the same command to resume (logs in {plan.out / 'logs'})")
            raise
        state.save()
    total = time.time() - t0
    print_end(plan, results, state, total, console)
    return {"out": str(plan.out), "seconds": round(total, 1),
            "ran": [s.name for s, how, _ in results if how == "ran"],
            "skipped": [s.name for s, how, _ in results if how.startswith("skipped")]}
