"""`stepwiser run` on the command line: exit codes and messages (the engine: tests/stages/test_run.py)."""
from __future__ import annotations

import yaml

from stepwiser.cli import main


def recipe(tmp_path, fail: bool = False):
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint('working')\nsys.exit(4 if '--fail' in sys.argv else 0)\n")
    steps = [{"name": "problems", "command": "data synth",
              "options": {"n": 5, "out": "{out}/p.jsonl"}, "estimate_s": 2},
             {"name": "check", "script": str(script), "options": {"fail": fail},
              "outputs": ["{out}/p.jsonl"]}]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"run": {"out": str(tmp_path / "out")}, "steps": steps}))
    return path


def test_run_twice_then_nothing(tmp_path, capsys):
    r = recipe(tmp_path)
    assert main(["run", str(r)]) == 0
    first = capsys.readouterr().out
    assert "working" in first and "2 step(s) ran" in first
    assert main(["run", str(r)]) == 0
    assert "nothing to run" in capsys.readouterr().out


def test_failure_exit_code_and_message(tmp_path, capsys):
    r = recipe(tmp_path, fail=True)
    assert main(["run", str(r), "--set", "problems.seed=3"]) == 1
    err = capsys.readouterr().err
    log = tmp_path / "out" / "logs" / "check.log"
    assert f"step check failed (exit 4); log: {log}; rerun alone: stepwiser run {r} --only check " \
           "--set problems.seed=3" in err
    fixed = ["--set", "problems.seed=3", "--set", "check.fail=false"]
    assert main(["run", str(r), "--only", "check", *fixed]) == 0


def test_usage_errors(tmp_path, capsys):
    r = recipe(tmp_path)
    assert main(["run", str(r), "--set", "problems.nope=1"]) == 2
    assert "data synth has no option(s) nope; allowed:" in capsys.readouterr().err
    assert main(["run", str(r), "--from", "zz"]) == 2
    assert "no step 'zz'" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert main(["run", "--help"]) == 0
    assert "--only" in capsys.readouterr().out


def test_dry_run(tmp_path, capsys):
    r = recipe(tmp_path)
    assert main(["run", str(r), "--dry-run", "--set", "problems.n=7"]) == 0
    out = capsys.readouterr().out
    assert "stepwiser data synth --n 7 --out" in out and "s.py --fail" not in out
    assert not (tmp_path / "out").exists()


def test_launcher_vars_on_the_command_line(tmp_path, capsys):
    steps = [{"name": "train", "command": "data synth", "options": {"n": 5, "out": "{out}/p.jsonl"},
              "launcher": "accelerate launch --num_processes {gpus} -m stepwiser"}]
    r = tmp_path / "r.yaml"
    r.write_text(yaml.safe_dump({"run": {"out": str(tmp_path / "out"), "vars": {"gpus": 8}}, "steps": steps}))
    assert main(["run", str(r), "--dry-run"]) == 0
    assert "accelerate launch --num_processes 8 -m stepwiser data synth --n 5" in capsys.readouterr().out
    assert main(["run", str(r), "--dry-run", "--set", "run.vars.gpus=4"]) == 0
    assert "accelerate launch --num_processes 4 -m stepwiser data synth" in capsys.readouterr().out
    steps[0]["launcher"] = "accelerate launch --num_processes {gpu} -m stepwiser"
    r.write_text(yaml.safe_dump({"run": {"out": str(tmp_path / "out"), "vars": {"gpus": 8}}, "steps": steps}))
    assert main(["run", str(r), "--dry-run"]) == 2
    assert "unknown variable {gpu}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
