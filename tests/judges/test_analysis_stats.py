"""stepwiser.judges.analysis_stats: how often a CoT judge's own recomputation is right, and how often its
verdict agrees with it, per judgment (exact cases) and in `eval labels` summaries."""
from __future__ import annotations

from fakes import FakeEngine

from stepwiser.io.records import write_jsonl
from stepwiser.judges.analysis_stats import (
    analysis_stats,
    analysis_text,
    judgment_check,
    judgments_analysis_stats,
)
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.stages.eval_labels import LabelsEvalConfig, run_labels

WRONG, RIGHT, PLAN = "He buys 3, so 5 + 3 = 9.", "He buys 3, so 5 + 3 = 8.", "Let x be the number of apples."
CASES = [  # (chunk, judgment, expected check)
    (WRONG, "My own step: 5 + 3 = 8.\n\\boxed{Negative}",
     {"recomputed": True, "right": True, "implied": 0, "verdict": 0, "agree": True}),
    (WRONG, "My own step: 5 + 3 = 8.\n\\boxed{Positive}",
     {"recomputed": True, "right": True, "implied": 0, "verdict": 1, "agree": False}),
    (RIGHT, "check: 5 + 3 = 9 \\boxed{Negative}",
     {"recomputed": True, "right": False, "implied": 0, "verdict": 0, "agree": True}),
    (RIGHT, "Looks fine to me. \\boxed{Positive}",
     {"recomputed": False, "right": None, "implied": None, "verdict": 1, "agree": None}),
    (RIGHT, "So 5 + 3 = 8 and then", {"recomputed": True, "right": True, "implied": 1, "verdict": None, "agree": None}),
    (PLAN, "2 + 2 = 4 \\boxed{Positive}", {"recomputed": True, "right": True, "implied": None, "verdict": 1,
                                           "agree": None}),
]


def test_each_judgment():
    for chunk, text, want in CASES:
        assert judgment_check(chunk, text) == want, text


def test_the_last_equation_of_the_analysis_is_its_recomputation_and_the_verdict_box_is_not_analysis():
    text = "The chunk says 5 + 3 = 9, but 5 + 3 = 8. My answer is \\boxed{8}.\n\\boxed{Negative}"
    assert analysis_text(text) == text[:text.rindex("\\boxed")]
    assert judgment_check(WRONG, text) == {"recomputed": True, "right": True, "implied": 0, "verdict": 0,
                                           "agree": True}
    assert judgment_check(RIGHT, "5 + 3 = 8 \\boxed{Negative}")["agree"] is False


def test_counts_and_shares():
    s = analysis_stats((c, t) for c, t, _ in CASES)
    # compared: cases 0-2, all implying Negative (2 of 3 agree); no Positive-implying one
    assert s == {"analyses": 6, "recomputed": 5, "right": 4, "compared": 3, "agree": 2, "implied_positive": 0,
                 "agree_positive": 0, "right_share": 0.6667, "right_share_of_recomputed": 0.8, "agree_share": 0.6667,
                 "agree_balanced": 0.6667}
    assert analysis_stats([]) == {"analyses": 0, "recomputed": 0, "right": 0, "compared": 0, "agree": 0,
                                  "implied_positive": 0, "agree_positive": 0, "right_share": None,
                                  "right_share_of_recomputed": None, "agree_share": None, "agree_balanced": None}
    # a judge that always says Negative: 9 of 10 agree, but balanced agreement is chance
    always_neg = [(WRONG, "5 + 3 = 8 \\boxed{Negative}")] * 9 + [(RIGHT, "5 + 3 = 8 \\boxed{Negative}")]
    s = analysis_stats(always_neg)
    assert (s["agree_share"], s["implied_positive"], s["agree_positive"], s["agree_balanced"]) == (0.9, 1, 0, 0.5)


def judge_text(prompt, rng, request):
    """A judge that recomputes 5 + 3 right, and says Negative on the micro examples' p2 chunks."""
    verdict = "Negative" if "p2 chunk" in prompt else "Positive"
    return f"Redoing it: 5 + 3 = 8.\n\\boxed{{{verdict}}}"


def test_eval_labels_summary_reports_them(tmp_path):
    rows = [{"key": f"{p}/0/{i}", "problem_id": p, "sample_id": 0, "chunk_index": i, "problem": f"Problem {p}",
             "history": [], "chunk": f"{p} chunk: 5 + 3 = {8 + i}.", "label": 1 - i, "label_type": "rel_effective"}
            for p in ("p1", "p2") for i in (0, 1)]
    write_jsonl(tmp_path / "jd" / "val.jsonl", rows)
    cfg = LabelsEvalConfig(judge="fake", data=str(tmp_path / "jd"), out=str(tmp_path / "out"), bootstrap=0, maj=2)
    s = run_labels(cfg, lambda: GenerativeJudge(FakeEngine(judge_text), cot=True, max_tokens=64), progress=False)
    # 4 examples x 2 samples, all right; implied: Positive on the i=0 chunks (8), Negative on i=1 (9);
    # verdicts: Positive on p1, Negative on p2 -> agree on p1/0 and p2/1 (2 x 2 samples)
    assert s["analysis"] == {"analyses": 8, "recomputed": 8, "right": 8, "compared": 8, "agree": 4,
                             "implied_positive": 4, "agree_positive": 2, "right_share": 1.0,
                             "right_share_of_recomputed": 1.0, "agree_share": 0.5, "agree_balanced": 0.5}
    assert judgments_analysis_stats(tmp_path / "out", tmp_path / "jd") == s["analysis"]
