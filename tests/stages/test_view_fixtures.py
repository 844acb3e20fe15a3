"""Tiny annotate / eval processbench / eval labels / search outputs for the `view` tests and for
scripts/view_screenshot.py (no tests here: `write_inputs` writes the four outputs into a folder).

With `payload=True` the problems, chunks, analyses and rejected attempts carry HTML/JS payloads
(`PAYLOADS`) that would set `window.pwned` or the document title if they ever ran."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

PAYLOADS = [
    "<script>window.pwned = 1; document.title = 'pwned';</script>",
    "</script><script>window.pwned = 2</script>",
    "<img src=x onerror=\"window.pwned = 3; document.title = 'pwned'\">",
    "\" onmouseover=\"window.pwned = 4\" data-x='",
    "</style><b id=\"injected\">bold?</b>\u2028&amp; &lt;",
]

PROBLEMS = [
    ("p1", "Tom has 3 boxes of 4 apples and eats 2. How many apples are left?", "10"),
    ("p2", "A bus carries 12 people; 5 get off and 7 get on. How many are on the bus?", "14"),
    ("p3", "Ann reads 6 pages a day for 5 days. How many pages does she read?", "30"),
]


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _manifest(path: Path, stage: str, config: dict) -> None:
    path.write_text(json.dumps({"stage": stage, "config": config, "complete": True}), encoding="utf-8")


def _problems(root: Path, payload: bool) -> Path:
    rows = [{"id": pid, "problem": text + (" " + PAYLOADS[i % len(PAYLOADS)] if payload else ""), "answer": a,
             "source": "synth"} for i, (pid, text, a) in enumerate(PROBLEMS)]
    return _jsonl(root / "problems.jsonl", rows)


def annotation(pid: str, sid: int, chunks: list[str], q: list[float], correct: bool, rollouts: int = 8) -> dict:
    spent = [rollouts] * (len(chunks) - 1) + [0]
    labels = {"abs_q": [int(x > 0) for x in q[1:]],
              "rel_effective": [int(b >= a) for a, b in itertools.pairwise(q)], "rel_ratio": None}
    return {"problem_id": pid, "sample_id": sid, "response": "", "chunks": chunks, "correct": correct,
            "sampling": {}, "successes": [round(x * r) for x, r in zip(q[1:], spent)], "rollouts": spent,
            "q0": {"successes": round(q[0] * rollouts), "rollouts": rollouts, "source": "rollouts"},
            "q": q, "labels": labels, "label_params": {"gamma": 0.8, "alpha": 0.4, "n": 4},
            "early_stop": {"mode": "off", "delta": None}}


def write_annotate(root: Path, problems: Path, payload: bool) -> Path:
    bad = PAYLOADS[0] if payload else ""
    rows = [
        annotation("p1", 0, ["3 boxes of 4 apples are 3 * 4 = 12 apples.", "After eating 2: 12 - 2 = 10.",
                             "The answer is \\boxed{10}."], [0.5, 0.75, 1.0, 1.0], True),
        annotation("p1", 1, ["3 boxes of 4 apples are 3 + 4 = 7 apples." + bad, "After eating 2: 7 - 2 = 5.",
                             "The answer is \\boxed{5}."], [0.5, 0.0, 0.0, 0.0], False),
        annotation("p2", 0, ["12 - 5 = 7 people stay.", "7 + 7 = 14 people. The answer is \\boxed{14}."],
                   [0.625, 0.875, 1.0], True),
    ]
    path = _jsonl(root / "annotations.jsonl", rows)
    _manifest(root / "annotations.jsonl.manifest.json", "annotate", {"problems": str(problems), "rollouts": 8})
    return path


def write_eval(root: Path, payload: bool) -> Path:
    extra = " " + PAYLOADS[2] if payload else ""
    bench = [{"id": "b1", "problem": PROBLEMS[2][1] + extra, "steps": ["6 pages a day.", "6 * 5 = 35 pages.",
                                                                    "The answer is \\boxed{35}."], "label": 1},
             {"id": "b2", "problem": PROBLEMS[0][1], "steps": ["3 * 4 = 12.", "12 - 2 = 10.",
                                                              "The answer is \\boxed{10}."], "label": -1}]
    (root / "bench").mkdir(parents=True, exist_ok=True)
    (root / "bench" / "test.json").write_text(json.dumps(bench), encoding="utf-8")
    out = root / "eval"
    analysis = "Step check: 6 * 5 = 30, not 35." + (" " + PAYLOADS[1] + " " + PAYLOADS[3] if payload else "")
    _jsonl(out / "test.jsonl", [
        {"id": "b1", "label": 1, "prediction": -1, "unparsed": False, "steps_judged": 3, "step_verdicts": [1, 1, 1],
         "verdicts": [[1], [1], [1]], "scores": [1.0, 1.0, 1.0],
         "analyses": [["Reads the rate right. Positive"], [analysis + " Positive"], ["Boxed. Positive"]]},
        {"id": "b2", "label": -1, "prediction": 1, "unparsed": False, "steps_judged": 2, "step_verdicts": [1, 0],
         "verdicts": [[1], [0]], "scores": [1.0, 0.0],
         "analyses": [["3 * 4 = 12. Positive"], ["12 - 2 = 10 looks wrong. Negative" + extra]]}])
    _manifest(out / "manifest.json", "eval-processbench", {"data": str(root / "bench"), "subsets": ["test"]})
    (out / "summary.json").write_text(json.dumps({"subsets": {"test": {"f1": 0.0}}, "average_f1": 0.0}))
    return out


def write_labels(root: Path, payload: bool) -> Path:
    chunks = ["12 - 5 = 7 people stay.", "7 + 7 = 15 people." + (" " + PAYLOADS[4] if payload else "")]
    ex = [{"key": f"p2/0/{i}", "problem_id": "p2", "sample_id": 0, "chunk_index": i, "problem": PROBLEMS[1][1],
           "history": chunks[:i], "chunk": chunks[i], "label": lab, "label_type": "rel_effective"}
          for i, lab in ((0, 1), (1, 0))]
    _jsonl(root / "jd" / "val.jsonl", ex)
    out = root / "labels"
    _jsonl(out / "judgments.jsonl", [
        {"key": "p2/0/0", "problem_id": "p2", "label": 1, "verdict": 1, "score": 1.0, "verdicts": [1],
         "analyses": ["12 - 5 = 7. Positive"]},
        {"key": "p2/0/1", "problem_id": "p2", "label": 0, "verdict": 1, "score": 1.0, "verdicts": [1],
         "analyses": ["7 + 7 = 14, the step says 15. Positive (a mistake of the judge)"]}])
    _manifest(out / "manifest.json", "eval-labels", {"data": str(root / "jd"), "split": "val"})
    return out


def write_search(root: Path, problems: Path, payload: bool) -> Path:
    bad = " " + PAYLOADS[2] if payload else ""
    out = root / "search"
    _jsonl(out / "search.jsonl", [
        {"problem_id": "p3", "response": "", "chunks": ["6 * 5 = 30 pages.", "The answer is \\boxed{30}."],
         "correct": True, "resets": [2, 0], "accepted_tokens": 14, "rejected_tokens": 16, "judge_calls": 4,
         "unparsed_verdicts": 0, "stop_reason": "answer",
         "rejected": [["<chunk>6 * 5 = 35 pages." + bad, "<chunk>6 + 5 = 11 pages."], []],
         "rejected_at_end": [], "verdicts": [[0, 0, 1], [1]]},
        {"problem_id": "p1", "response": "", "chunks": ["3 * 4 = 12 apples.", "12 - 2 = 9. \\boxed{9}"],
         "correct": False, "resets": [0, 1], "accepted_tokens": 12, "rejected_tokens": 6, "judge_calls": 2,
         "unparsed_verdicts": 0, "stop_reason": "answer", "rejected": [[], ["12 - 2 = 8."]],
         "rejected_at_end": [], "verdicts": [[1], [0]]}])
    _manifest(out / "manifest.json", "search", {"problems": str(problems), "max_resets": 1})
    return out


def write_inputs(root: Path, payload: bool = False) -> dict[str, Path]:
    """The four outputs under `root`: {kind: path to give `stepwiser view`}."""
    root.mkdir(parents=True, exist_ok=True)
    problems = _problems(root, payload)
    return {"annotate": write_annotate(root, problems, payload), "eval": write_eval(root, payload),
            "labels": write_labels(root, payload), "search": write_search(root, problems, payload)}
