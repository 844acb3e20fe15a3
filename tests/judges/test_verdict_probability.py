"""The no-CoT judge read by its verdict probability, the dev threshold, and selection --by calibrated."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stepwiser.core.metrics import best_threshold
from stepwiser.judges.base import JudgeItem

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("labels,scores,want", [
    ([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.1], (0.5, 1.0)),             # 0.5 already separates: kept (nearest 0.5)
    ([1, 0], [0.7, 0.7], (0.5, 0.5)),                              # one distinct score: nothing to cut
    ([1, 1, 0, 0], [0.6, 0.7, 0.65, 0.62], (0.675, 0.75)),        # a lean to Positive: the cut moves up
    ([1, 1, 0, 0], [0.8, 0.9, 0.6, 0.7], (0.75, 1.0)),            # all above 0.5, separable at the midpoint
    ([0, 0, 1, 1], [0.2, 0.3, 0.35, 0.4], (0.325, 1.0)),
])
def test_best_threshold_exact(labels, scores, want):
    cut, bacc = best_threshold(labels, scores)
    assert (round(cut, 6), round(bacc, 6)) == want


def test_best_threshold_ties_go_to_the_cut_nearest_one_half():
    # cuts 0.2 and 0.7 both give 0.75; 0.7 is nearer 0.5
    assert best_threshold([1, 1, 0, 0], [0.3, 0.8, 0.1, 0.6]) == pytest.approx((0.7, 0.75))


def test_best_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        best_threshold([1, 1], [0.2, 0.3])


def test_verdict_probability_matches_the_generative_judges_greedy_verdict(tiny_model_dir):
    from stepwiser.engines.hf import HFEngine
    from stepwiser.judges.verdict_probability import VerdictProbabilityJudge, verdict_tokens

    engine = HFEngine(str(tiny_model_dir), device="cpu", batch_size=4)
    opening, pos, neg = verdict_tokens(engine, "compact")
    tok = engine.tokenizer
    assert tok.decode(opening + [pos]).startswith("\\boxed{P") and tok.decode(opening + [neg]).startswith("\\boxed{N")
    items = [JudgeItem("What is 2 + 3?", [], "2 + 3 = 5"), JudgeItem("What is 2 + 3?", ["2 + 3 = 5"], "So 5."),
             JudgeItem("A long problem " * 5, ["a", "b"], "c")]
    judge = VerdictProbabilityJudge(engine, prompt="compact", threshold=0.5)
    scores = judge.scores(items)
    assert all(0 < p < 1 for p in scores) and len(set(scores)) == 3
    assert scores == pytest.approx([judge.scores([it])[0] for it in items], abs=1e-5)   # padding changes nothing
    out = judge.judge(items, k=3)
    assert [j.verdicts for j in out] == [[int(p >= 0.5)] * 3 for p in scores]
    assert [j.score for j in out] == pytest.approx(scores)
    cut = sorted(scores)[1]
    assert [j.verdict for j in VerdictProbabilityJudge(engine, "compact", threshold=cut).judge(items)] == \
        [int(p >= cut) for p in scores]


def _run(args):
    return subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, cwd=ROOT)


def test_nocot_run_records_calibrated_validation_and_selection_exports_it(tiny_model_dir, tmp_path):
    from stepwiser.cli import main
    from stepwiser.judges.load import load_judge
    from stepwiser.judges.verdict_probability import VerdictProbabilityJudge
    from stepwiser.train.judge_metrics import read_metrics
    from tests.train.test_train_grpo import write_data

    data, out = write_data(tmp_path), tmp_path / "run"
    rc = main(["train-judge", "--method", "grpo-nocot", "--judge-prompt", "compact", "--data", str(data),
               "--model", str(tiny_model_dir), "-o", str(out), "--lr", "1e-3", "--per-device-batch", "4",
               "--max-steps", "2", "--save-steps", "2", "--eval-steps", "2", "--format-warmup-steps", "2"])
    assert rc == 0
    val = [r for r in read_metrics(out) if "val_n" in r]
    assert [r["step"] for r in val] == [0, 2]
    for r in val:
        assert 0 <= r["val_auroc"] <= 1 and 0.5 <= r["val_calibrated_balanced_accuracy"] <= 1
        assert 0 <= r["val_threshold"] <= 1
    sel = tmp_path / "judge"
    res = _run(["scripts/select_checkpoint.py", str(out), "--by", "calibrated", "-o", str(sel)])
    assert res.returncode == 0, res.stderr
    meta = json.loads((sel / "stepwiser_judge.json").read_text())
    assert meta["score"] == "verdict_probability" and meta["threshold"] == val[1]["val_threshold"]
    assert meta["step"] == 2 and json.loads((sel / "selection.json").read_text())["by"] == "calibrated"
    judge = load_judge(str(sel), {"engine": "hf", "device": "cpu", "batch_size": 4, "dtype": None})
    assert isinstance(judge, VerdictProbabilityJudge) and judge.threshold == val[1]["val_threshold"]
    assert load_judge(str(sel), {"engine": "hf", "device": "cpu", "batch_size": 4, "dtype": None},
                      threshold=0.25).threshold == 0.25
    floor = tmp_path / "floor"
    res = _run(["scripts/select_checkpoint.py", str(out), "--by", "calibrated", "--step", "0", "-o", str(floor)])
    assert res.returncode == 0, res.stderr
    meta0 = json.loads((floor / "stepwiser_judge.json").read_text())
    assert meta0["threshold"] == val[0]["val_threshold"] and (floor / "model.safetensors").exists()
    res = _run(["scripts/select_checkpoint.py", str(out), "--by", "calibrated", "--step", "1", "-o", str(floor)])
    assert res.returncode != 0 and "no val_calibrated_balanced_accuracy record" in res.stderr
