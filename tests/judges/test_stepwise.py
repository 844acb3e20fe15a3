"""`eval processbench --judge`: the stepwise protocol (C4), batching across items, outputs, resume."""
import json

import pytest
from eval_data import ITEMS, new_chunk, records, verdict_policy, write_bench
from fakes import FakeEngine

from stepwiser.errors import ConfigMismatchError
from stepwiser.data.bench import BenchItem
from stepwiser.stages.eval_processbench import ProcessBenchConfig, run_processbench
from stepwiser.judges.stepwise import run_stepwise, stepwise_prediction
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.base import Judgment


def judged_chunks(engine) -> list[str]:
    return [new_chunk(p) for p in engine.prompts]


def _run(tmp_path, out="out", engine=None, overwrite=False, **kw):
    data = write_bench(tmp_path / "bench", {"s": ITEMS})
    engine = engine or FakeEngine(verdict_policy)
    cfg = ProcessBenchConfig(mode="judge", model="fake", data=str(data), out=str(tmp_path / out), bootstrap=50, **kw)
    return run_processbench(cfg, GenerativeJudge(engine), overwrite=overwrite, progress=False), engine


def test_stepwise_prediction_rule():
    assert stepwise_prediction([1, 1, 1]) == -1
    assert stepwise_prediction([1, 0, None]) == 1
    assert stepwise_prediction([1, None, 0]) is None
    assert stepwise_prediction([]) == -1
    with pytest.raises(ValueError):
        stepwise_prediction([2])


def test_protocol_stops_at_first_negative_and_batches_each_round(tmp_path):
    summary, engine = _run(tmp_path)
    # round 1: all four items' first steps in one call; c stops (Negative at 0); round 2: a, b, d; round 3: a
    assert engine.calls == [4, 3, 1]
    judged = judged_chunks(engine)
    assert sorted(judged) == sorted(["a0 ok", "a1 ok", "a2 ok", "b0 ok", "b1 BAD", "c0 BAD", "d0 ok", "d1 ???"])
    assert not {"b2 ok", "b3 ok", "c1 ok", "d2 ok"} & set(judged)    # never judged after the deciding step
    recs = records(tmp_path / "out" / "s.jsonl")
    assert {k: r["prediction"] for k, r in recs.items()} == {"a": -1, "b": 1, "c": 0, "d": None}
    assert recs["b"]["step_verdicts"] == [1, 0] and recs["b"]["verdicts"] == [[1], [0]]
    assert recs["b"]["analyses"][1] == ["The sum is wrong. \\boxed{Negative}"]
    assert recs["b"]["scores"] == [1.0, 0.0] and recs["d"]["scores"] == [1.0, None]
    assert recs["d"]["unparsed"] and not recs["b"]["unparsed"]
    assert [recs[k]["steps_judged"] for k in "abcd"] == [3, 2, 1, 2]
    s = summary["subsets"]["s"]
    # error items b, c, d: b and c exact, d null -> 66.67; correct item a -> 100
    assert (s["n"], s["unparsed"], s["error_acc"], s["correct_acc"], s["f1"]) == (4, 1, 66.67, 100.0, 80.0)
    assert summary["average_f1"] == 80.0 and summary["meta"]["steps_judged"] == 8
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary


def test_all_steps_judges_everything_with_the_same_predictions(tmp_path):
    summary, engine = _run(tmp_path, all_steps=True)
    assert engine.calls == [4, 4, 3, 1]
    assert len(engine.prompts) == sum(len(it["steps"]) for it in ITEMS)
    recs = records(tmp_path / "out" / "s.jsonl")
    assert {k: r["prediction"] for k, r in recs.items()} == {"a": -1, "b": 1, "c": 0, "d": None}
    assert recs["b"]["step_verdicts"] == [1, 0, 1, 1] and recs["d"]["step_verdicts"] == [1, None, 1]
    assert summary["subsets"]["s"]["f1"] == 80.0


def test_window_refills_as_items_finish(tmp_path):
    _, engine = _run(tmp_path, batch_items=2)
    # [a0 b0] [a1 b1] -> b done, c joins: [a2 c0] -> both done: [d0] [d1]
    assert engine.calls == [2, 2, 2, 1, 1]


class ScriptedJudge:
    """A StepJudge whose K verdicts per chunk are given in advance."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def judge(self, items, k=1):
        self.calls.append([it.chunk for it in items])
        return [Judgment(verdicts=self.script[it.chunk][:k]) for it in items]


def test_maj_ties_are_negative_and_all_unparsed_is_null():
    items = [BenchItem("s", "x", "P", ("x0", "x1"), 1), BenchItem("s", "y", "P", ("y0", "y1"), -1),
             BenchItem("s", "z", "P", ("z0", "z1"), 0)]
    script = {"x0": [1, 1, None], "x1": [1, 0, None, None],    # x1: one each -> tie -> Negative
              "y0": [None, 1, None, None], "y1": [1, 0, 1, None],   # y: majorities of parsed verdicts
              "z0": [None, None, None, None], "z1": [1, 1, 1, 1]}   # z0: all unparsed
    judge = ScriptedJudge(script)
    out = {it.id: f for it, f in run_stepwise(judge, items, k=4)}
    assert out["x"]["prediction"] == 1 and out["y"]["prediction"] == -1
    assert out["z"]["prediction"] is None and out["z"]["unparsed"] and out["z"]["steps_judged"] == 1
    assert out["x"]["verdicts"] == [[1, 1, None], [1, 0, None, None]]
    assert judge.calls == [["x0", "y0", "z0"], ["x1", "y1"]]


def test_resume_after_interruption_continues_without_rejudging(tmp_path):
    full, _ = _run(tmp_path, out="full")

    class Dies(FakeEngine):
        def generate(self, requests, params):
            if len(self.calls) == 1:
                raise KeyboardInterrupt
            return super().generate(requests, params)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, out="part", engine=Dies(verdict_policy))
    part = tmp_path / "part"
    assert [json.loads(x)["id"] for x in (part / "s.jsonl").read_text().splitlines()] == ["c"]
    assert not (part / "summary.json").exists()                 # nothing half-written presented as a result
    assert not json.loads((part / "manifest.json").read_text())["complete"]
    summary, engine = _run(tmp_path, out="part")
    assert "c0 BAD" not in judged_chunks(engine) and engine.calls == [3, 3, 1]
    strip = lambda s: {k: v for k, v in s.items() if k != "meta"}
    assert strip(summary) == strip(full)
    assert json.loads((part / "manifest.json").read_text())["complete"]


def test_other_config_into_the_same_folder_is_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(ConfigMismatchError, match="maj"):
        _run(tmp_path, maj=3)
    _, engine = _run(tmp_path, batch_items=1)          # volatile: resumes, nothing left to judge
    assert engine.calls == []
    summary, engine = _run(tmp_path, maj=3, overwrite=True)
    assert engine.calls == [4, 3, 1] and summary["meta"]["maj"] == 3


def test_limit_and_subsets(tmp_path):
    data = write_bench(tmp_path / "bench", {"s": ITEMS, "t": ITEMS[:2]})
    cfg = ProcessBenchConfig(mode="judge", model="fake", data=str(data), out=str(tmp_path / "o"), subsets=("s",),
                             limit=2, bootstrap=0)
    summary = run_processbench(cfg, GenerativeJudge(FakeEngine(verdict_policy)), progress=False)
    assert list(summary["subsets"]) == ["s"] and summary["subsets"]["s"]["n"] == 2
    assert summary["subsets"]["s"]["f1_ci"] is None and not (tmp_path / "o" / "t.jsonl").exists()


def test_a_judge_returning_the_wrong_number_of_judgments_is_an_error():
    from stepwiser.errors import StepwiserError

    class Short:
        def judge(self, items, k=1):
            return [Judgment(verdicts=[1], texts=["ok"]) for _ in items[1:]]

    items = [BenchItem("s", it["id"], it["problem"], tuple(it["steps"]), it["label"], it) for it in ITEMS]
    with pytest.raises(StepwiserError, match=r"the judge Short returned 3 judgments for 4 items"):
        list(run_stepwise(Short(), items))
