"""Data selection (stepwiser.stages.select) with a fake policy and a fake scoring judge."""
import json

import pytest
from fakes import FakeEngine

from stepwiser.errors import EmptyResultError
from stepwiser.io.records import Problem, write_jsonl
from stepwiser.judges.base import Judgment
from stepwiser.stages.select import SelectConfig, run_select
from stepwiser.train.sft import load_conversations


def _problems(tmp_path, k=5):
    p = tmp_path / "problems.jsonl"
    write_jsonl(p, [Problem(id=f"p{i}", problem=f"What is {i} + {i}?", answer=str(2 * i), source="t")
                    for i in range(k)])
    return p


def policy(text, rng, req):
    """Correct with probability 0.7; the middle chunk is "sloppy" (a low judge score) half the time."""
    i = int(text.split("What is ")[1].split(" ")[0])
    ans = 2 * i if rng.random() < 0.7 else 2 * i + 1
    mid = "sloppy guess" if rng.random() < 0.5 else f"{i} + {i} = {ans}"
    return f"<chunk>Add {i} and {i}.</chunk>\n<chunk>{mid}</chunk>\n<chunk>So \\boxed{{{ans}}}</chunk>"


class ScoreJudge:
    """P(Positive) 0.2 for chunks with "sloppy", 0.9 otherwise (as a discriminative judge reports it)."""

    def __init__(self):
        self.items = []

    def judge(self, items, k=1):
        self.items += items
        out = []
        for it in items:
            p = 0.2 if "sloppy" in it.chunk else 0.9
            out.append(Judgment(verdicts=[int(p >= 0.5)] * k, scores=[p] * k))
        return out


def _samples(out):
    return [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]


def _train(out):
    return [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]


def test_judge_strategy_keeps_the_best_scored_correct_response(tmp_path):
    probs = _problems(tmp_path)
    out = tmp_path / "sel"
    judge = ScoreJudge()
    s = run_select(SelectConfig(policy="fake", judge="fake", problems=str(probs), out=str(out), k=8),
                   FakeEngine(policy), judge, progress=False)
    samples = _samples(out)
    correct = [x for x in samples if x["correct"]]
    assert len(judge.items) == 3 * len(correct)     # every chunk of every correct response, nothing else
    assert all(it.history == [] or it.history[0].startswith("Add") for it in judge.items)
    train = _train(out)
    assert len(train) == s["prompts_with_correct"] == len({x["problem_id"] for x in correct})
    for ex in train:
        mine = [x for x in correct if x["problem_id"] == ex["problem_id"]]
        best = min(("sloppy" in x["response"], x["sample_id"]) for x in mine)
        assert ex["sample_id"] == best[1] and ex["source"] == "select"
        assert ex["prompt"].startswith("What is") and ex["response"].startswith("<chunk>")
    assert s["mean_judge_score_kept"] >= s["mean_judge_score_all_correct"]
    convs = load_conversations(out / "train.jsonl")
    assert len(convs) == len(train) and convs[0]["completion"][0]["content"] == train[0]["response"]


def test_outcome_strategy_keeps_a_seeded_random_correct_response(tmp_path):
    probs = _problems(tmp_path)
    cfg = {"policy": "fake", "problems": str(probs), "k": 8, "strategy": "outcome"}
    a = run_select(SelectConfig(out=str(tmp_path / "a"), **cfg), FakeEngine(policy), progress=False)
    run_select(SelectConfig(out=str(tmp_path / "b"), **cfg), FakeEngine(policy), progress=False)
    assert _train(tmp_path / "a") == _train(tmp_path / "b")
    correct = {(x["problem_id"], x["sample_id"]) for x in _samples(tmp_path / "a") if x["correct"]}
    picks = [(ex["problem_id"], ex["sample_id"]) for ex in _train(tmp_path / "a")]
    assert all(p in correct for p in picks)
    assert a["mean_judge_score_kept"] is None and not (tmp_path / "a" / "scores.jsonl").exists()
    # with a judge, outcome still scores the candidates (for the summary) but does not use the scores
    c = run_select(SelectConfig(out=str(tmp_path / "c"), judge="fake", **cfg), FakeEngine(policy), ScoreJudge(),
                   progress=False)
    assert _train(tmp_path / "c") == [dict(ex, score=ex2["score"]) for ex, ex2 in
                                      zip(_train(tmp_path / "a"), _train(tmp_path / "c"))]
    assert c["mean_judge_score_kept"] is not None


def test_select_resumes_scoring_and_checks_its_inputs(tmp_path):
    probs = _problems(tmp_path)
    cfg = SelectConfig(policy="fake", judge="fake", problems=str(probs), out=str(tmp_path / "s"), k=4)
    run_select(cfg, FakeEngine(policy), ScoreJudge(), progress=False)
    lines = (tmp_path / "s" / "scores.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "s" / "scores.jsonl").write_text("".join(lines[:2]) + lines[2][:7])   # killed mid-record
    judge = ScoreJudge()
    run_select(cfg, FakeEngine(policy), judge, progress=False)
    assert len(judge.items) == 3 * (len(lines) - 2)
    assert len((tmp_path / "s" / "scores.jsonl").read_text().splitlines()) == len(lines)
    with pytest.raises(ValueError, match="needs --judge"):
        SelectConfig(policy="fake", problems=str(probs), out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="strategy must be one of judge, outcome"):
        SelectConfig(policy="fake", problems=str(probs), out=str(tmp_path / "x"), strategy="best")
    wrong = FakeEngine(lambda text, rng, req: "<chunk>\\boxed{-1}</chunk>")
    with pytest.raises(EmptyResultError, match="no prompt"):
        run_select(SelectConfig(policy="fake", problems=str(probs), out=str(tmp_path / "w"), k=2,
                                strategy="outcome"), wrong, progress=False)


def test_cli_select_on_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    """End to end on the hf engine; a random tiny model is never right, so the run has nothing to keep."""
    from stepwiser.cli import main

    probs = _problems(tmp_path, 2)
    m = str(tiny_model_dir)
    code = main(["select", "--policy", m, "--judge", m, "--problems", str(probs), "-o", str(tmp_path / "cli"),
                 "--k", "2", "--max-tokens", "4", "--policy-device", "cpu", "--judge-device", "cpu"])
    assert code == 1 and "no prompt" in capsys.readouterr().err
    assert len(_samples(tmp_path / "cli")) == 4
