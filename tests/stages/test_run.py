"""`stepwiser run`'s engine (stepwiser.stages.run): order, skip on rerun, --set/--only/--from, failures,
kills and resume. Steps are tiny: `data synth --n 5` and a Python script written into tmp_path."""
from __future__ import annotations

import datetime
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from stepwiser.cli.run import resolve_command
from stepwiser.errors import StepwiserError
from stepwiser.stages.run import RunConfig, StepFailed, run_recipe
from stepwiser.stages.run_recipe import RecipeError, load_plan, mentions, parse_overrides, step_needs

SCRIPT = '''
import argparse, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--n", type=int, default=3)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--fail", type=int, default=0)
p.add_argument("--tag", default="")
p.add_argument("--wait-for", default="")
p.add_argument("--wait-s", type=float, default=0.0)
a = p.parse_args()
with open(a.out + ".starts", "a") as f:
    f.write(os.environ["STEPWISER_OVERWRITE"] + "\\n")
t_end = time.time() + a.wait_s       # a barrier: wait (at most wait_s) for another step to have started
while a.wait_for and not os.path.exists(a.wait_for) and time.time() < t_end:
    time.sleep(0.05)
if a.fail:
    print("boom: failing on purpose", flush=True)
    sys.exit(a.fail)
if os.environ["STEPWISER_OVERWRITE"] == "1" and os.path.exists(a.out):
    os.remove(a.out)
done = open(a.out).read().splitlines() if os.path.exists(a.out) else []
with open(a.out, "a") as f:
    for i in range(len(done), a.n):
        time.sleep(a.sleep)
        f.write(f"item {i} {a.tag}\\n")
        f.flush()
print("script done", len(done), "resumed", flush=True)
'''


def make_recipe(tmp_path: Path, script_opts: dict | None = None, extra: list | None = None) -> Path:
    script = tmp_path / "work.py"
    script.write_text(SCRIPT)
    steps = [
        {"name": "a", "command": "data synth", "options": {"n": 5, "seed": 1, "out": "{out}/a.jsonl"},
         "estimate_s": 1},
        {"name": "b", "command": "data synth",
         "options": {"n": 5, "seed": 2, "exclude": ["{out}/a.jsonl"], "out": "{out}/b.jsonl"}},
        {"name": "c", "script": str(script), "options": {"out": "{out}/c.txt", **(script_opts or {})}},
        *(extra or []),
    ]
    recipe = {"run": {"out": str(tmp_path / "out"), "description": "a test recipe", "machine": "a test box",
                      "results": ["{out}/c.txt"], "pages": {"problems": "{out}/a.jsonl"}},
              "steps": steps}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def go(recipe: Path, **kw) -> tuple[dict, str]:
    buf = io.StringIO()
    summary = run_recipe(RunConfig(recipe=str(recipe), **kw), resolve=resolve_command,
                         console=Console(file=buf, width=150))
    return summary, buf.getvalue()


def mtimes(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "a.jsonl", out / "b.jsonl", out / "c.txt")}


def starts(out: Path) -> list[str]:
    return (out / "c.txt.starts").read_text().split()


def test_runs_in_order_then_does_nothing(tmp_path):
    recipe = make_recipe(tmp_path)
    out = tmp_path / "out"
    summary, text = go(recipe)
    assert summary["ran"] == ["a", "b", "c"] and summary["skipped"] == []
    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "run" and m["complete"] and m["config_hash"]
    started = [m["steps"][n]["started"] for n in "abc"]
    assert started == sorted(started) and all(m["steps"][n]["complete"] for n in "abc")
    assert (out / "c.txt").read_text().count("item") == 3
    assert "a test box" in text and "item 2" in text          # overview; the results file printed
    assert (out / "logs" / "a.log").read_text().count("data synth") >= 1
    before, logs = mtimes(out), {p.name: p.read_text() for p in (out / "logs").iterdir()}
    summary, text = go(recipe)
    assert summary["ran"] == [] and summary["skipped"] == ["a", "b", "c"]
    assert mtimes(out) == before and starts(out) == ["0"]
    assert {p.name: p.read_text() for p in (out / "logs").iterdir()} == logs
    assert "nothing to run" in text


def test_set_reruns_the_changed_step_and_later_ones_only(tmp_path):
    recipe = make_recipe(tmp_path)
    out = tmp_path / "out"
    go(recipe)
    before = mtimes(out)
    summary, _ = go(recipe, overrides=["b.seed=5"])
    assert summary["ran"] == ["b", "c"] and summary["skipped"] == ["a"]
    after = mtimes(out)
    assert after["a.jsonl"] == before["a.jsonl"] and after["b.jsonl"] != before["b.jsonl"]
    assert starts(out) == ["0", "1"]                           # c reran from scratch (--overwrite)
    assert json.loads((out / "b.jsonl.manifest.json").read_text())["config"]["seed"] == 5
    summary, _ = go(recipe, overrides=["b.seed=5", "c.tag=x"])   # only the last step changed
    assert summary["ran"] == ["c"] and "item 2 x" in (out / "c.txt").read_text()
    summary, _ = go(recipe)                                    # back to the recipe as written
    assert summary["ran"] == ["b", "c"]
    assert json.loads((out / "b.jsonl.manifest.json").read_text())["config"]["seed"] == 2


def test_only_and_from(tmp_path):
    recipe = make_recipe(tmp_path)
    summary, text = go(recipe, only=["a"])
    assert summary["ran"] == ["a"] and "not selected" in text
    summary, text = go(recipe, only=["c"])
    assert summary["ran"] == ["c"] and "not done: b" in text   # a warning, c does not need b
    summary, _ = go(recipe, from_step="b")
    assert summary["ran"] == ["b"] and summary["skipped"] == ["c"]
    summary, _ = go(recipe, only=["a", "c"])
    assert summary["ran"] == [] and summary["skipped"] == ["a", "c"]
    summary, _ = go(recipe, only=["c"], force=True)
    assert summary["ran"] == ["c"] and starts(tmp_path / "out") == ["0", "1"]
    with pytest.raises(RecipeError, match="no step 'zz'.*steps: a, b, c"):
        go(recipe, only=["zz"])
    with pytest.raises(RecipeError, match="not both"):
        go(recipe, only=["a"], from_step="b")


def test_failing_step_stops_the_run(tmp_path):
    recipe = make_recipe(tmp_path, {"fail": 3}, extra=[
        {"name": "d", "command": "data synth", "options": {"n": 5, "seed": 4, "out": "{out}/d.jsonl"}}])
    out = tmp_path / "out"
    with pytest.raises(StepFailed) as e:
        go(recipe, overrides=["a.seed=1"])
    msg = str(e.value)
    assert e.value.code == 3 and "step c failed (exit 3)" in msg
    assert f"log: {out / 'logs' / 'c.log'}" in msg
    assert "rerun alone: stepwiser run" in msg and "--only c --set a.seed=1" in msg
    assert "boom: failing on purpose" in (out / "logs" / "c.log").read_text()
    assert not (out / "d.jsonl").exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"]["c"]["exit"] == 3 and not m["steps"]["c"]["complete"] and not m["complete"]
    summary, _ = go(recipe, overrides=["c.fail=0"])          # fixed: only c and d run
    assert summary["ran"] == ["c", "d"]


def test_a_step_that_writes_nothing_fails(tmp_path):
    recipe = make_recipe(tmp_path, extra=[{"name": "e", "script": str(tmp_path / "work.py"),
                                           "options": {"out": "{out}/e.txt", "n": 0},
                                           "outputs": ["{out}/never.txt"]}])
    with pytest.raises(StepFailed, match="exit 0 but .*never.txt was not written"):
        go(recipe)


def test_missing_output_reruns_the_step(tmp_path):
    recipe = make_recipe(tmp_path)
    go(recipe)
    (tmp_path / "out" / "c.txt").unlink()
    summary, text = go(recipe)
    assert summary["ran"] == ["c"] and "outputs missing" in text


def _runner(recipe: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stepwiser", "run", str(recipe), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                            # a terminal's Ctrl-C default, whatever an earlier test left in this process
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_lines(path: Path, n: int, timeout: float = 20) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and path.read_text().count("item") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines")


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_interrupted_step_resumes_with_the_same_results(tmp_path, how):
    (tmp_path / "ref").mkdir()
    ref = make_recipe(tmp_path / "ref", {"n": 8})
    go(ref)
    recipe = make_recipe(tmp_path, {"n": 8, "sleep": 0.5})
    out = tmp_path / "out"
    proc = _runner(recipe)
    _wait_lines(out / "c.txt", 2)
    if how == "ctrl-c":            # the terminal sends SIGINT to the whole foreground group
        os.killpg(proc.pid, signal.SIGINT)
    else:                          # the runner dies at once; its step must not run on
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == (130 if how == "ctrl-c" else -signal.SIGKILL)
    time.sleep(1.0)
    partial = (out / "c.txt").read_text()
    time.sleep(1.0)
    assert (out / "c.txt").read_text() == partial and partial.count("item") < 8   # the step is stopped
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"]["a"]["complete"] and not m["steps"]["c"]["complete"] and not m["complete"]
    summary, text = go(recipe)
    assert summary["ran"] == ["c"] and "resume" in text
    assert starts(out) == ["0", "0"]                          # resumed, not restarted
    for name in ("a.jsonl", "b.jsonl", "c.txt"):
        assert (out / name).read_text() == (tmp_path / "ref" / "out" / name).read_text()
    assert json.loads((out / "manifest.json").read_text())["complete"]


def test_unknown_names_are_clean_errors(tmp_path):
    recipe = make_recipe(tmp_path)
    with pytest.raises(RecipeError, match=r"--set zz\.n: no step 'zz'; steps: a, b, c"):
        go(recipe, overrides=["zz.n=3"])
    with pytest.raises(RecipeError, match="data synth has no option.*bogus; allowed: .*max_steps.*seed"):
        go(recipe, overrides=["a.bogus=3"])
    with pytest.raises(RecipeError, match="unknown key"):
        go(recipe, overrides=["run.nope=1"])
    with pytest.raises(RecipeError, match="STEP.OPTION=VALUE"):
        go(recipe, overrides=["novalue"])
    assert not (tmp_path / "out").exists()                    # nothing ran


@pytest.mark.parametrize("step, match", [
    ({"name": "x", "command": "nonsense"}, "unknown command 'nonsense'; commands: .*sample"),
    ({"name": "x", "command": "data"}, "data needs one of: load, synth, synth-bench"),
    ({"name": "x", "command": "data synth", "script": "x.py"}, "either command"),
    ({"name": "x", "command": "serve"}, "serve does not end"),
    ({"name": "x.y", "command": "sample"}, "letters, digits"),
    ({"name": "x", "command": "sample", "optoins": {}}, "unknown key.*optoins"),
    ({"name": "a", "command": "sample"}, "used twice"),
    ({"name": "x", "command": "data synth", "options": {"out": "{out}"}}, "run folder"),
    ({"name": "x", "command": "data synth", "options": {"n": 1, "-n": 2}}, "given twice"),
])
def test_bad_recipes(tmp_path, step, match):
    recipe = make_recipe(tmp_path, extra=[step])
    with pytest.raises(RecipeError, match=match):
        load_plan(str(recipe), resolve=resolve_command)


def test_base_config_file_flag_names_and_expansion(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("data_synth:\n  n: 7\n  max-steps: 4\n  seed: 9\n")
    recipe = make_recipe(tmp_path, extra=[{"name": "q", "command": "eval accuracy",
                                           "options": {"policy": "p", "problems": "x.jsonl", "tp": 4,
                                                       "out": "{out}/qs"}},
                                          {"name": "s", "command": "data synth", "config": str(base),
                                           "options": {"seed": 3, "out": "{out}/s.jsonl"}}])
    plan = load_plan(str(recipe), ["s.min_steps=2"], resolve=resolve_command)
    s = plan.steps[-1]
    assert s.options == {"n": 7, "max_steps": 4, "seed": 3, "out": f"{tmp_path}/out/s.jsonl", "min_steps": 2}
    assert s.outputs == [f"{tmp_path}/out/s.jsonl"] and s.takes_overwrite
    assert plan.steps[-2].options["tp"] == 4                  # a flag name (--tp) is a key
    keys = [st.key for st in plan.steps]
    moved = load_plan(str(recipe), ["s.min_steps=2", f"run.out={tmp_path}/elsewhere"], resolve=resolve_command)
    assert [st.key for st in moved.steps] == keys and moved.steps[-1].options["out"].startswith(f"{tmp_path}/else")
    plan2 = load_plan(str(recipe), ["b.seed=3"], resolve=resolve_command)
    assert [st.key for st in plan2.steps][:1] == keys[:1] and all(
        x != y for x, y in zip(keys[1:], [st.key for st in plan2.steps][1:]))


def test_parse_overrides():
    assert parse_overrides(["a.n=3", "b.x=[p", "q]", "run.out=/tmp/x", "c.flag=true", "c.s=hello world"]) == [
        ("a", "n", 3), ("b", "x", ["p", "q"]), ("run", "out", "/tmp/x"), ("c", "flag", True),
        ("c", "s", "hello world")]


def test_dry_run_writes_nothing(tmp_path):
    recipe = make_recipe(tmp_path)
    summary, text = go(recipe, dry_run=True)
    assert summary == {"dry_run": True, "steps": ["a", "b", "c"]}
    assert "stepwiser data synth --n 5 --seed 2 --exclude" in text and "work.py --out" in text
    assert not (tmp_path / "out").exists()


def test_one_run_per_folder(tmp_path):
    recipe = make_recipe(tmp_path)
    lock = tmp_path / "out" / ".run" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(StepwiserError, match="another `stepwiser run` is using"):
            go(recipe)


WRAPPER = '''
import os, sys
with open(os.path.join(os.environ["STEPWISER_RUN_OUT"], "launched.txt"), "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
'''


def launcher_recipe(tmp_path: Path, launcher: str = "{python} {wrapper} -m stepwiser", **vars_) -> Path:
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    (tmp_path / "work.py").write_text(SCRIPT)
    recipe = {"run": {"out": str(tmp_path / "out"), "vars": {"wrapper": str(tmp_path / "wrapper.py"), "seed": 4,
                                                             **vars_}},
              "steps": [{"name": "a", "command": "data synth", "launcher": launcher,
                         "options": {"n": 3, "seed": "{seed}", "out": "{out}/a.jsonl"}},
                        {"name": "c", "script": str(tmp_path / "work.py"), "launcher": ["{python}", "{wrapper}"],
                         "options": {"out": "{out}/c.txt", "tag": "{{seed}}"}}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_launcher_and_vars(tmp_path):
    recipe = launcher_recipe(tmp_path)
    out = tmp_path / "out"
    _, text = go(recipe, dry_run=True)
    assert f"{sys.executable} {tmp_path}/wrapper.py -m stepwiser data synth --n 3 --seed 4" in text
    summary, _ = go(recipe)
    assert summary["ran"] == ["a", "c"]
    launched = (out / "launched.txt").read_text().splitlines()
    assert launched[0].startswith("-m stepwiser data synth --config ") and "work.py --out" in launched[1]
    assert json.loads((out / "a.jsonl.manifest.json").read_text())["config"]["seed"] == 4   # typed: 4, not "4"
    assert "item 2 {seed}" in (out / "c.txt").read_text()                     # {{ }}: literal braces
    assert go(recipe)[0]["ran"] == []
    summary, _ = go(recipe, overrides=["run.vars.seed=5"])                    # a var is part of the key
    assert summary["ran"] == ["a", "c"]
    assert json.loads((out / "a.jsonl.manifest.json").read_text())["config"]["seed"] == 5
    assert go(recipe, overrides=["run.vars.seed=5"])[0]["ran"] == []
    recipe = launcher_recipe(tmp_path, launcher="{python} -u {wrapper} -m stepwiser")   # so is the launcher
    summary, _ = go(recipe, overrides=["run.vars.seed=5"])
    assert summary["ran"] == ["a", "c"] and len((out / "launched.txt").read_text().splitlines()) == 6


def test_unknown_variables_and_bad_vars(tmp_path):
    recipe = launcher_recipe(tmp_path, launcher="{pyhton} -m stepwiser")
    with pytest.raises(RecipeError, match=r"step a: launcher: unknown variable \{pyhton\}.*known: \{out\}, "
                                          r"\{python\}, \{repo\}, \{seed\}, \{wrapper\}"):
        load_plan(str(recipe), resolve=resolve_command)
    recipe = launcher_recipe(tmp_path)
    with pytest.raises(RecipeError, match=r"unknown variable \{seed\}.*known: .*\{wrapper\}"):
        load_plan(str(recipe), ["run.vars={wrapper: x}"], resolve=resolve_command)   # seed: gone
    with pytest.raises(RecipeError, match="out is built in"):
        load_plan(str(recipe), ["run.vars.out=x"], resolve=resolve_command)
    with pytest.raises(RecipeError, match="unknown key"):
        load_plan(str(recipe), ["run.varz.x=1"], resolve=resolve_command)
    assert parse_overrides(["run.vars.gpus=4", "run.vars.my-name=a"]) == [("run", "vars.gpus", 4),
                                                                          ("run", "vars.my-name", "a")]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- --jobs

def test_step_needs_follows_the_paths_steps_name(tmp_path):
    recipe = make_recipe(tmp_path, extra=[
        {"name": "d", "script": str(tmp_path / "work.py"), "options": {"out": "{out}/d.txt", "tag": "x={out}/c.txt"}},
        {"name": "e", "script": str(tmp_path / "work.py"), "options": {"out": "{out}/c.txt.e"}},
        {"name": "f", "script": str(tmp_path / "work.py"), "args": ["{out}/a.jsonl"], "options": {"out": "{out}/f"}},
    ])
    plan = load_plan(str(recipe), resolve=resolve_command)
    # b reads a (exclude); c names nothing; d names c after `=`; e's path only starts like c's; f's args name a
    assert step_needs(plan.steps) == {"a": set(), "b": {"a"}, "c": set(), "d": {"c"}, "e": set(), "f": {"a"}}
    assert mentions("label={out}/x/final", "{out}/x") and mentions("{out}/x", "{out}/x/")
    assert not mentions("{out}/x-2", "{out}/x") and not mentions("{out}/xy/z", "{out}/x")


def _timed_recipe(tmp_path: Path, fail_b: int = 0, barrier_s: float = 0.0) -> Path:
    """a, b, c, then s1 and s2 (independent) and join (needs both). With `barrier_s`, s1 finishes only
    after s2 has started (or after barrier_s seconds): run at once, s2 always starts before s1 ends,
    however slow the machine; run in order, s1 ends first."""
    work = str(tmp_path / "work.py")
    barrier = {"wait_for": "{out}/s2.txt.starts", "wait_s": barrier_s} if barrier_s else {}
    return make_recipe(tmp_path, {"n": 2, "sleep": 0.4}, extra=[
        {"name": "s1", "script": work, "options": {"out": "{out}/s1.txt", "n": 2, "sleep": 0.4, **barrier}},
        {"name": "s2", "script": work, "options": {"out": "{out}/s2.txt", "n": 2, "sleep": 0.4, "fail": fail_b}},
        {"name": "join", "script": work, "options": {"out": "{out}/join.txt", "n": 1, "tag": "{out}/s1.txt {out}/s2.txt"}},
    ])


def test_jobs_run_independent_steps_at_once_and_wait_for_inputs(tmp_path, capfd):
    recipe = _timed_recipe(tmp_path, barrier_s=60)
    out = tmp_path / "out"
    t0 = time.time()
    summary, _ = go(recipe, jobs=3)
    assert sorted(summary["ran"]) == ["a", "b", "c", "join", "s1", "s2"]
    items = {n: (out / f"{n}.txt").stat() for n in ("c", "s1", "s2", "join")}
    # c, s1 and s2 (0.8 s of work each) overlapped: join, which needs s1 and s2, was written after both
    assert items["join"].st_mtime_ns >= max(items["s1"].st_mtime_ns, items["s2"].st_mtime_ns)
    assert time.time() - t0 < 60                 # s1 did not wait out its barrier: s2 ran beside it
    printed = capfd.readouterr().out            # the steps' own output, each line prefixed with its step
    assert "[s1] script done 0 resumed" in printed and "[s2] script done 0 resumed" in printed
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and all(m["steps"][n]["complete"] for n in ("a", "b", "c", "s1", "s2", "join"))
    starts_at = {n: datetime.datetime.fromisoformat(m["steps"][n]["started"]) for n in ("s1", "s2", "join")}
    assert starts_at["join"] >= max(starts_at["s1"], starts_at["s2"])
    s1_end = (out / "s1.txt").stat().st_mtime
    s2_started = (out / "s2.txt.starts").stat().st_mtime
    assert s2_started < s1_end                      # s2 started before s1 had finished: they ran at once
    summary, _ = go(recipe, jobs=3)
    assert summary["ran"] == []


def test_jobs_one_runs_in_order(tmp_path):
    recipe = _timed_recipe(tmp_path)
    out = tmp_path / "out"
    go(recipe)
    assert (out / "s2.txt.starts").stat().st_mtime >= (out / "s1.txt").stat().st_mtime


def test_jobs_failure_lets_running_steps_finish_and_starts_nothing_new(tmp_path):
    recipe = _timed_recipe(tmp_path, fail_b=5)
    out = tmp_path / "out"
    with pytest.raises(StepFailed, match="step s2 failed"):
        go(recipe, jobs=3)
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"]["s1"]["complete"] and (out / "s1.txt").read_text().count("item") == 2
    assert not m["steps"]["s2"]["complete"] and "join" not in m["steps"]
    summary, _ = go(recipe, jobs=3, overrides=["s2.fail=0"])
    assert sorted(summary["ran"]) == ["join", "s2"]


def test_jobs_must_be_positive():
    with pytest.raises(ValueError, match="jobs must be a whole number >= 1"):
        RunConfig(recipe="r.yaml", jobs=0)


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_jobs_interrupt_stops_every_running_step_and_resumes(tmp_path, how):
    work = str(tmp_path / "work.py")
    recipe = make_recipe(tmp_path, {"n": 8, "sleep": 0.4}, extra=[
        {"name": "s1", "script": work, "options": {"out": "{out}/s1.txt", "n": 8, "sleep": 0.4}}])
    out = tmp_path / "out"
    proc = _runner(recipe, "--jobs", "2")
    _wait_lines(out / "c.txt", 2)
    _wait_lines(out / "s1.txt", 2)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == (130 if how == "ctrl-c" else -signal.SIGKILL)
    time.sleep(1.0)
    partial = {n: (out / n).read_text() for n in ("c.txt", "s1.txt")}
    time.sleep(1.0)
    assert {n: (out / n).read_text() for n in partial} == partial       # both steps are stopped
    assert all(t.count("item") < 8 for t in partial.values())
    summary, _ = go(recipe, jobs=2)
    assert sorted(summary["ran"]) == ["c", "s1"]
    assert starts(out) == ["0", "0"]                                   # resumed, not restarted
    assert (out / "c.txt").read_text().count("item") == 8 == (out / "s1.txt").read_text().count("item")


def test_prefix_sink_prints_whole_lines_and_a_bars_last_state():
    from stepwiser.stages.run import PrefixSink

    got: list[bytes] = []
    sink = PrefixSink("s1", got.append)
    sink(b"hello\nwor")
    sink(b"ld\n 10%\r 50%\r100%\n\n")
    sink(b"tail without newline")
    assert b"".join(got) == b"[s1] hello\n[s1] world\n[s1] 100%\n"
    sink.flush()
    assert got[-1] == b"[s1] tail without newline\n"
    n = len(got)
    sink.flush()                                 # nothing left: prints nothing
    assert len(got) == n


def test_recipe_jobs_is_the_default_and_the_flag_wins(tmp_path):
    recipe = _timed_recipe(tmp_path, barrier_s=60)
    data = yaml.safe_load(recipe.read_text())
    data["run"]["jobs"] = 3
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    _, text = go(recipe)
    assert "Up to 3 steps at once" in " ".join(text.split())
    assert (out / "s2.txt.starts").stat().st_mtime < (out / "s1.txt").stat().st_mtime      # ran at once
    _, text = go(recipe, jobs=1, force=True, overrides=["s1.wait_s=0"])
    assert "steps at once" not in text
    assert (out / "s2.txt.starts").stat().st_mtime >= (out / "s1.txt").stat().st_mtime     # in order
    data["run"]["jobs"] = 0
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(RecipeError, match="run.jobs is a whole number >= 1"):
        go(recipe)
