"""`stepwiser data` subcommands: synth, synth-bench, load."""
from __future__ import annotations

import importlib.util
import json

import pytest

from stepwiser.cli import main
from stepwiser.io.records import Problem, read_records
from stepwiser.data.synth import generate_problems


def test_help(capsys):
    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert "synth" in out and "synth-bench" in out and "load" in out
    for sub in ("synth", "synth-bench", "load"):
        assert main(["data", sub, "--help"]) == 0


def test_synth_writes_problems_and_guards_output(tmp_path, capsys):
    out = tmp_path / "problems.jsonl"
    assert main(["data", "synth", "--n", "30", "--seed", "4", "-o", str(out)]) == 0
    got = read_records(out, Problem)
    assert [p.to_dict() for p in got] == [p.to_dict() for p in generate_problems(30, 4)]
    summary = capsys.readouterr().out
    assert "30" in summary and "steps" in summary
    before = out.read_text()
    # same config: nothing to do; another config: refused; --overwrite: remade
    assert main(["data", "synth", "--n", "30", "--seed", "4", "-o", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["data", "synth", "--n", "31", "--seed", "4", "-o", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == before
    assert main(["data", "synth", "--n", "31", "--seed", "4", "-o", str(out), "--overwrite"]) == 0
    assert len(read_records(out, Problem)) == 31


def test_synth_refuses_foreign_file_and_bad_knobs(tmp_path, capsys):
    out = tmp_path / "mine.jsonl"
    out.write_text("keep me\n")
    assert main(["data", "synth", "--n", "5", "-o", str(out)]) == 1
    assert out.read_text() == "keep me\n"
    assert main(["data", "synth", "--n", "5", "-o", str(tmp_path / "x.jsonl"), "--min-steps", "5",
                 "--max-steps", "3"]) == 2
    assert main(["data", "synth", "--n", "5", "-o", str(tmp_path / "x.jsonl"), "--max-steps", "9"]) == 2
    assert not (tmp_path / "x.jsonl").exists()


def test_synth_knobs_and_exclude(tmp_path):
    first = tmp_path / "a.jsonl"
    second = tmp_path / "b.jsonl"
    assert main(["data", "synth", "--n", "40", "--seed", "1", "--min-steps", "4", "--max-steps", "4",
                 "--max-operand", "9", "-o", str(first)]) == 0
    probs = read_records(first, Problem)
    assert {p.extra["n_steps"] for p in probs} == {4}
    assert main(["data", "synth", "--n", "40", "--seed", "1", "--min-steps", "4", "--max-steps", "4",
                 "--max-operand", "9", "--exclude", str(first), "-o", str(second)]) == 0
    assert {p.problem for p in probs}.isdisjoint({p.problem for p in read_records(second, Problem)})


def test_synth_bench(tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    bench = tmp_path / "bench"
    assert main(["data", "synth", "--n", "200", "--seed", "0", "-o", str(train)]) == 0
    capsys.readouterr()
    assert main(["data", "synth-bench", "--n", "40", "--seed", "0", "-o", str(bench),
                 "--exclude", str(train)]) == 0
    out = capsys.readouterr().out
    assert "position-prior F1" in out and "-1: 20" in out
    test = json.loads((bench / "test.json").read_text())
    dev = json.loads((bench / "dev.json").read_text())
    assert len(test) == 40 and len(dev) == 10
    assert sorted(f.name for f in bench.iterdir()) == ["dev.json", "test.json"]
    texts = {p.problem for p in read_records(train, Problem)}
    assert texts.isdisjoint(it["problem"] for it in test + dev)
    assert {it["problem"] for it in test}.isdisjoint(it["problem"] for it in dev)
    fields = {"id", "generator", "problem", "steps", "final_answer_correct", "label"}
    assert all(fields <= set(it) for it in test)
    # the bench folder can itself be excluded when making training problems
    assert main(["data", "synth", "--n", "50", "--seed", "9", "--exclude", str(bench),
                 "-o", str(tmp_path / "more.jsonl")]) == 0
    more = {p.problem for p in read_records(tmp_path / "more.jsonl", Problem)}
    assert more.isdisjoint(it["problem"] for it in test + dev)
    # an existing bench is not replaced without --overwrite
    before = (bench / "test.json").read_text()
    assert main(["data", "synth-bench", "--n", "8", "--seed", "1", "-o", str(bench)]) == 1
    assert (bench / "test.json").read_text() == before
    assert main(["data", "synth-bench", "--n", "8", "--seed", "1", "-o", str(bench), "--overwrite"]) == 0
    assert len(json.loads((bench / "test.json").read_text())) == 8


def test_exclude_needs_problem_texts(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "no problem field"}\n')
    assert main(["data", "synth", "--n", "5", "--exclude", str(bad), "-o", str(tmp_path / "p.jsonl")]) == 1
    assert "problem" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("stepwiser.data.datasets") is None,
                    reason="stepwiser.data.datasets is not there yet")
def test_load_jsonl(tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [{"question": "What is 2 + 3?", "final": "5"}, {"question": "What is 4 * 6?", "final": "24"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "problems.jsonl"
    assert main(["data", "load", "--format", "jsonl", "--input", str(src), "--problem-field", "question",
                 "--answer-field", "final", "-o", str(out)]) == 0
    got = read_records(out, Problem)
    assert [(p.problem, p.answer) for p in got] == [("What is 2 + 3?", "5"), ("What is 4 * 6?", "24")]
    assert len({p.id for p in got}) == 2
    assert main(["data", "load", "--format", "jsonl", "--input", str(src), "--problem-field", "question",
                 "--answer-field", "final", "--limit", "1", "-o", str(tmp_path / "one.jsonl")]) == 0
    assert len(read_records(tmp_path / "one.jsonl", Problem)) == 1
    assert main(["data", "load", "--format", "nope", "--input", str(src), "-o", str(out)]) == 2
