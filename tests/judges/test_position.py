"""The position rule: a chunk-label floor that reads only the chunk index, fitted on dev labels."""
import json

import pytest

from stepwiser.judges.base import JudgeItem
from stepwiser.judges.position import PositionJudge, position_rates, rate_at


def test_position_rates_exact():
    assert position_rates([0, 0, 1, 1, 1, 2], [1, 1, 1, 0, 0, 0]) == {0: 1.0, 1: 1 / 3, 2: 0.0}


@pytest.mark.parametrize("indices,labels,match", [([], [], "at least one"), ([0], [1, 0], "1 indices for 2"),
                                                  ([-1], [1], ">= 0")])
def test_position_rates_refuses_bad_input(indices, labels, match):
    with pytest.raises(ValueError, match=match):
        position_rates(indices, labels)


def test_rate_at_falls_back_to_the_nearest_lower_index():
    rates = {1: 0.8, 3: 0.2}
    assert [rate_at(rates, i) for i in (0, 1, 2, 3, 7)] == [0.8, 0.8, 0.8, 0.2, 0.2]


def test_fit_chooses_the_dev_threshold_and_judges_by_history_length():
    # index 0: 3 of 4 Positive, index 1: 1 of 4, index 2: 0 of 2 -> the cut between 0.25 and 0.75
    idx = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    lab = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    judge = PositionJudge.fit(idx, lab)
    assert judge.threshold == pytest.approx(0.5)
    items = [JudgeItem("p", [], "a"), JudgeItem("p", ["a"], "b"), JudgeItem("p", ["a", "b", "c", "d"], "e")]
    out = judge.judge(items, k=2)
    assert [j.verdicts for j in out] == [[1, 1], [0, 0], [0, 0]]
    assert [j.scores[0] for j in out] == [0.75, 0.25, 0.0]
    assert judge.reading() == {"kind": "position", "threshold": pytest.approx(0.5),
                               "rates": {"0": 0.75, "1": 0.25, "2": 0.0}}


def _example(i, history, label):
    return {"key": f"k{i}", "problem_id": f"p{i // 3}", "sample_id": 0, "chunk_index": len(history),
            "problem": "1 + 1", "history": history, "chunk": "x", "label": label, "label_type": "rel_effective"}


def test_load_judge_and_eval_labels_with_the_position_rule(tmp_path):
    from stepwiser.judges.load import judge_reading, load_judge
    from stepwiser.stages.eval_labels import LabelsEvalConfig, run_labels

    dev = tmp_path / "dev"
    dev.mkdir()
    rows = [_example(i, ["s"] * (i % 3), int(i % 3 == 0)) for i in range(12)]
    (dev / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    judge = load_judge(str(dev), kind="position")
    assert judge.rates == {0: 1.0, 1: 0.0, 2: 0.0}
    assert judge_reading(str(dev), "position")["threshold"] == judge.threshold
    assert judge_reading(str(dev), "position", threshold=0.9)["threshold"] == 0.9
    summary = run_labels(LabelsEvalConfig(judge=str(dev), judge_kind="position", data=str(dev), split="val",
                                          out=str(tmp_path / "out"), bootstrap=0), judge=judge, progress=False)
    assert summary["balanced_accuracy"] == 100.0   # fitted and scored on the same examples here
    assert summary["meta"]["read_as"]["kind"] == "position"
