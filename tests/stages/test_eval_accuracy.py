"""`eval accuracy`: greedy or Avg@k accuracy of a policy, per-problem records, mean and standard error."""
import json
import math

import pytest
from fakes import FakeEngine

from stepwiser.cli import main
from stepwiser.stages.eval_accuracy import AccuracyConfig, accuracy_stats, run_accuracy
from stepwiser.io.records import Problem, iter_jsonl, write_jsonl


def _problems(tmp_path, n=4):
    p = tmp_path / "problems.jsonl"
    write_jsonl(p, [Problem(id=f"p{i}", problem=f"What is {i} + {i}?", answer=str(2 * i), source="t") for i in range(n)])
    return p


def policy(text, rng, req):
    """p0: always right; p1: never answers; p2: always wrong; p3: right with probability 1/2."""
    i = int(text.split("What is ")[1].split(" ")[0])
    if i == 1:
        return "<chunk>I do not know.</chunk>"
    right = i == 0 or (i == 3 and rng.random() < 0.5)
    return f"<chunk>So \\boxed{{{2 * i if right else 2 * i + 1}}}</chunk>"


def test_accuracy_stats_exact():
    s = accuracy_stats([1.0, 0.0, 0.0, 0.5])
    assert s["mean_accuracy"] == pytest.approx(37.5)
    var = ((0.625 ** 2) + 2 * (0.375 ** 2) + 0.125 ** 2) / 3
    assert s["stderr"] == pytest.approx(100 * math.sqrt(var / 4))
    assert accuracy_stats([1.0]) == {"mean_accuracy": 100.0, "stderr": None}
    with pytest.raises(ValueError):
        accuracy_stats([])


def test_avg_at_k_records_and_summary(tmp_path):
    engine = FakeEngine(policy)
    cfg = AccuracyConfig(policy="fake", problems=str(_problems(tmp_path)), out=str(tmp_path / "acc"), k=8)
    assert cfg.temperature == 1.0 and AccuracyConfig("p", "x", "o").temperature == 0.0
    summary = run_accuracy(cfg, engine, progress=False)
    recs = {r["problem_id"]: r for _, r in iter_jsonl(tmp_path / "acc" / "problems.jsonl")}
    assert [recs[f"p{i}"]["correct"] for i in range(3)] == [8, 0, 0]
    assert recs["p1"]["unparsed"] == 8 and recs["p2"]["unparsed"] == 0 and all(r["k"] == 8 for r in recs.values())
    expected = accuracy_stats([r["accuracy"] for r in recs.values()])
    assert summary["mean_accuracy"] == round(expected["mean_accuracy"], 2)
    assert summary["stderr"] == round(expected["stderr"], 2)
    assert (summary["problems"], summary["samples"], summary["unparsed"]) == (4, 32, 8)
    assert summary["meta"]["metric"] == "Avg@8"
    assert json.loads((tmp_path / "acc" / "summary.json").read_text()) == summary
    calls = len(engine.calls)
    again = run_accuracy(cfg, engine, progress=False)                 # resumes: nothing left to sample
    assert len(engine.calls) == calls and again["mean_accuracy"] == summary["mean_accuracy"]


def test_cli_greedy_on_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "acc"
    assert main(["eval", "accuracy", "--policy", str(tiny_model_dir), "--problems", str(_problems(tmp_path, 2)),
                 "--max-tokens", "4", "-o", str(out), "--device", "cpu"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["k"] == 1 and s["meta"]["metric"] == "greedy" and s["meta"]["temperature"] == 0.0
    assert s["problems"] == 2 and s["unparsed"] + s["mean_accuracy"] * 2 / 100 <= 2
    assert "mean_accuracy" in capsys.readouterr().out


def test_empty_problems_and_changed_samples_are_clear_errors(tmp_path):
    from stepwiser.errors import EmptyResultError, StepwiserError

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(EmptyResultError, match="empty.jsonl: no problems, nothing to sample"):
        run_accuracy(AccuracyConfig(policy="fake", problems=str(empty), out=str(tmp_path / "e")), FakeEngine(policy),
                     progress=False)
    assert not (tmp_path / "e" / "summary.json").exists()
    cfg = AccuracyConfig(policy="fake", problems=str(_problems(tmp_path)), out=str(tmp_path / "acc"), k=2)
    run_accuracy(cfg, FakeEngine(policy), progress=False)
    samples = tmp_path / "acc" / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[:-1]))                        # a sample removed by hand
    from stepwiser.stages.eval_accuracy import problem_records
    with pytest.raises(StepwiserError, match=r"problem 'p3' has 1 samples, expected k = 2"):
        problem_records(samples, 2)
