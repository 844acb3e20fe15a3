"""Exact (oracle) labels beside the Monte Carlo ones: judge-data attaches them to micro-domain examples,
eval labels scores the same verdicts against both."""
from __future__ import annotations

import json

import pytest
from fakes import FakeEngine

from stepwiser.data.synth import generate_problems
from stepwiser.io.records import Annotation, write_jsonl
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.stages.eval_labels import LabelsEvalConfig, run_labels
from stepwiser.stages.judge_data import JudgeDataConfig, exact_labels, load_judge_tokenizer, run_judge_data

P = generate_problems(2, 0)[0]   # 13 * 12 = 156, 156 * 2 = 312, 312 + 3 = 315, 315 - 9 = 306, 306 / 2 = 153
GOLD = ["The garden has 13 * 12 = 156 apple trees.", "She gets 156 * 2 = 312 apples.",
        "That gives her 312 + 3 = 315 apples.", "315 - 9 = 306 apples are good.",
        "She fills 306 / 2 = 153 bags. The answer is \\boxed{153}."]
BAD = GOLD[:1] + ["She gets 156 * 2 = 302 apples.", "That gives her 302 + 3 = 305 apples.",
                  "305 - 9 = 296 apples are good.", "She fills 296 / 2 = 148 bags. The answer is \\boxed{148}."]


def test_exact_labels_are_one_before_the_first_error_zero_at_it_none_after():
    assert "156 * 2 = 312" in P.solution
    assert exact_labels(GOLD, P) == [1, 1, 1, 1, 1]
    assert exact_labels(BAD, P) == [1, 0, None, None, None]


def _annotation(sid, chunks, mc):
    H = len(chunks)
    return Annotation(problem_id=P.id, sample_id=sid, response="\n".join(f"<chunk>{c}</chunk>" for c in chunks),
                      chunks=chunks, correct=chunks is GOLD, successes=[4] * (H - 1) + [int(chunks is GOLD)],
                      rollouts=[8] * (H - 1) + [0], q0={"successes": 4, "rollouts": 8, "source": "rollouts"},
                      q=[0.5] * H + [float(chunks is GOLD)],
                      labels={"abs_q": None, "rel_ratio": None, "rel_effective": mc})


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    return load_judge_tokenizer(str(smollm2_tokenizer_dir))


def test_judge_data_attaches_exact_labels_and_eval_scores_against_both(tmp_path, tok, smollm2_tokenizer_dir):
    # MC labels: the gold sample's chunk 2 called Negative (a correct chunk the policy fails after);
    # both samples share their first chunk: judge-data merges that input (9 examples, 6 with an exact label)
    ann = tmp_path / "ann.jsonl"
    write_jsonl(ann, [_annotation(0, GOLD, [1, 1, 0, 1, 1]), _annotation(1, BAD, [1, 0, 0, 0, 0])])
    probs = tmp_path / "problems.jsonl"
    write_jsonl(probs, [P])
    cfg = JudgeDataConfig(annotations=str(ann), problems=str(probs), out=str(tmp_path / "jd"),
                          tokenizer=str(smollm2_tokenizer_dir), val_frac=0, balance=False)
    s = run_judge_data(cfg, tokenizer=tok)
    rows = [json.loads(x) for x in (tmp_path / "jd" / "train.jsonl").read_text().splitlines()]
    by = {(r["sample_id"], r["chunk_index"]): r for r in rows}
    assert by[(0, 2)]["label"] == 0 and by[(0, 2)]["exact_label"] == 1
    assert by[(1, 1)]["exact_label"] == 0 and by[(1, 3)]["exact_label"] is None
    assert s["exact_labels"]["with_exact_label"] == 6 and s["exact_labels"]["exact_negative"] == 1
    # a judge that flags "302": right on the exact labels of the bad sample
    judge = GenerativeJudge(FakeEngine(lambda text, rng, r: "\\boxed{Negative}" if "= 302" in text.split(
        "### New chunk")[-1] else "\\boxed{Positive}"), cot=True, max_tokens=8)
    out = run_labels(LabelsEvalConfig(judge="fake", data=str(tmp_path / "jd"), split="train",
                                      out=str(tmp_path / "ev"), bootstrap=0), judge, progress=False)
    assert out["exact"]["n"] == 6 and out["exact"]["balanced_accuracy"] == 100.0
    assert out["exact"]["mc_agreement"] == round(5 / 6, 4)
    assert out["balanced_accuracy"] < 100.0     # against the MC labels the same verdicts look worse
