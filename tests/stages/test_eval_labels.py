"""`stepwiser eval labels`: judges against held-out Monte Carlo labels (scores, resume, CLI, bad input)."""
import json

import pytest
from eval_data import verdict_policy
from fakes import FakeEngine

from stepwiser.cli import main
from stepwiser.errors import ConfigMismatchError, StepwiserError
from stepwiser.stages.eval_labels import LabelsEvalConfig, label_scores, run_labels
from stepwiser.core.metrics import percentile_interval, resample_indices
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.io.records import write_jsonl
from stepwiser.train.judge_metrics import verdict_metrics

# --------------------------------------------------------------------------- label_scores

# p1: labels 1 1 0 / verdicts 1 0 0; p2: 1 0 / 1 None; p3: 0 0 0 1 / 1 0 0 1
HAND = (["p1"] * 3 + ["p2"] * 2 + ["p3"] * 4,
        [1, 1, 0, 1, 0, 0, 0, 0, 1],
        [1, 0, 0, 1, None, 1, 0, 0, 1])


def test_hand_computed_point_estimates():
    s = label_scores(*HAND, resamples=0, seed=0)
    # positives: 4, right 3 -> 75; negatives: 5, right 3 (p1, p3 twice) -> 60; accuracy 6/9
    assert s["recall_positive"] == 75.0 and s["recall_negative"] == 60.0
    assert s["balanced_accuracy"] == 67.5 and s["accuracy"] == 66.67
    assert s["unparsed"] == 11.11 and s["positives"] == 44.44
    assert s["n"] == 9 and s["n_problems"] == 3
    assert all(s[f"{k}_ci"] is None for k in ("balanced_accuracy", "recall_positive", "recall_negative", "accuracy"))
    assert s["references"] == {"always_positive": 50.0, "always_negative": 50.0}


def test_perfect_and_constant_judges():
    ids, labels = ["a", "a", "b", "b", "c", "c"], [1, 0, 1, 0, 0, 1]
    perfect = label_scores(ids, labels, labels, resamples=200, seed=3)
    for k in ("balanced_accuracy", "recall_positive", "recall_negative", "accuracy"):
        assert perfect[k] == 100.0 and perfect[f"{k}_ci"] == [100.0, 100.0]
    # every problem holds both classes, so every replicate of a constant judge scores exactly 50
    always = label_scores(ids, labels, [1] * 6, resamples=200, seed=3)
    assert always["balanced_accuracy"] == 50.0 and always["balanced_accuracy_ci"] == [50.0, 50.0]
    assert always["recall_positive_ci"] == [100.0, 100.0] and always["recall_negative_ci"] == [0.0, 0.0]


def test_bootstrap_resamples_problems_not_examples():
    # resampling examples would give replicates with a single class (balanced accuracy 100 or 0);
    # resampling problems keeps each problem's [1, 0] pair together, so every replicate scores 50
    s = label_scores(["a", "a", "b", "b"], [1, 0, 1, 0], [1, 1, 1, 1], resamples=500, seed=0)
    assert s["balanced_accuracy_ci"] == [50.0, 50.0] and s["accuracy_ci"] == [50.0, 50.0]


def test_bootstrap_equals_a_brute_force_over_drawn_problems():
    ids, labels, verdicts = HAND
    s = label_scores(ids, labels, verdicts, resamples=300, seed=7, digits=None)
    problems = ["p1", "p2", "p3"]
    reps = {"balanced_accuracy": [], "recall_positive": [], "recall_negative": [], "accuracy": []}
    for draw in resample_indices(3, 300, 7):
        rows = [i for p in draw for i, q in enumerate(ids) if q == problems[p]]
        m = verdict_metrics([labels[i] for i in rows], [verdicts[i] for i in rows])
        for k, r in reps.items():
            if k in m:
                r.append(100 * m[k])
    for k, r in reps.items():
        assert s[f"{k}_ci"] == pytest.approx(percentile_interval(r))
    assert label_scores(ids, labels, verdicts, resamples=300, seed=7, digits=None) == s   # seeded


def test_label_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        label_scores(["a", "b"], [1, 1], [1, 0], resamples=0, seed=0)
    with pytest.raises(ValueError, match="one problem id"):
        label_scores(["a"], [1, 0], [1, 0], resamples=0, seed=0)
    with pytest.raises(ValueError, match="0 or 1"):
        label_scores(["a", "b"], [1, 0], [1, 2], resamples=0, seed=0)


# --------------------------------------------------------------------------- the stage

def example(pid, i, chunk, label):
    return {"key": f"{pid}/0/{i}", "problem_id": pid, "sample_id": 0, "chunk_index": i, "problem": f"Problem {pid}",
            "history": [f"{pid} step {j}" for j in range(i)], "chunk": chunk, "label": label,
            "label_type": "rel_effective"}


# verdict_policy: Negative on BAD, unparsed on ???, else Positive
EXAMPLES = [example("p1", 0, "x ok", 1), example("p1", 1, "y BAD", 0), example("p2", 0, "z ok", 0),
            example("p2", 1, "w ???", 1), example("p3", 0, "v ok", 1), example("p3", 1, "u BAD", 0)]


def write_split(folder, examples=EXAMPLES, name="val.jsonl"):
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / name, examples)
    return folder


def fake_judge():
    return GenerativeJudge(FakeEngine(verdict_policy), cot=True, max_tokens=64)


def never_called():
    raise AssertionError("a finished run must not load its judge again")


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_run_writes_records_and_summary_and_resumes(tmp_path):
    data = write_split(tmp_path / "jd")
    cfg = LabelsEvalConfig(judge="fake", data=str(data), out=str(tmp_path / "out"), bootstrap=50, batch_items=4)
    judge = fake_judge()
    s = run_labels(cfg, lambda: judge, progress=False)
    assert judge.engine.calls == [4, 2]
    # positives: p1 right, p2 unparsed, p3 right -> 66.67; negatives: p1 right, p2 wrong, p3 right -> 66.67
    assert s["recall_positive"] == 66.67 and s["recall_negative"] == 66.67 and s["balanced_accuracy"] == 66.67
    assert s["accuracy"] == 66.67 and s["unparsed"] == 16.67 and s["n_unparsed"] == 1 and s["positives"] == 50.0
    assert s["n"] == 6 and s["n_problems"] == 3 and len(s["balanced_accuracy_ci"]) == 2
    assert s["mean_completion_tokens"] > 0 and s["meta"]["data"].endswith("val.jsonl")
    recs = lines(tmp_path / "out" / "judgments.jsonl")
    assert [r["key"] for r in recs] == [e["key"] for e in EXAMPLES]
    assert [r["verdict"] for r in recs] == [1, 0, 1, None, 1, 0]
    assert recs[1]["score"] == 0.0 and recs[3]["score"] is None and recs[0]["analyses"][0].endswith("{Positive}")
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == s

    cfg.batch_items = 2   # volatile: resumes
    again = run_labels(cfg, never_called, progress=False)
    assert len(lines(tmp_path / "out" / "judgments.jsonl")) == 6
    assert {k: v for k, v in again.items() if k != "meta"} == {k: v for k, v in s.items() if k != "meta"}
    with pytest.raises(ConfigMismatchError, match="maj"):
        run_labels(LabelsEvalConfig(judge="fake", data=str(data), out=str(tmp_path / "out"), maj=3), never_called,
                   progress=False)


def test_resume_judges_only_the_missing_examples(tmp_path):
    data = write_split(tmp_path / "jd")
    out = tmp_path / "out"
    cfg = LabelsEvalConfig(judge="fake", data=str(data), out=str(out), bootstrap=0, maj=3)
    run_labels(cfg, fake_judge(), progress=False)
    kept = lines(out / "judgments.jsonl")[:4]
    (out / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"key": "p3/0/0", "pro')
    judge = fake_judge()
    s = run_labels(cfg, judge, progress=False)
    assert judge.engine.calls == [2] and len(lines(out / "judgments.jsonl")) == 6
    assert s["balanced_accuracy"] == 66.67 and s["balanced_accuracy_ci"] is None
    assert all(len(r["analyses"]) == 3 and len(r["verdicts"]) == 3 for r in lines(out / "judgments.jsonl"))


@pytest.mark.parametrize("content, match", [
    ("", "no judge examples"),
    (json.dumps(example("p1", 0, "a", 1)) + "\n{not json\n", r"val.jsonl:2: malformed"),
    (json.dumps({"key": "k", "problem_id": "p"}) + "\n", r"val.jsonl:1: .*missing field"),
    ("".join(json.dumps(example(p, 0, "a", 1)) + "\n" for p in ("p1", "p2")), r"val.jsonl: .*both classes"),
    ("".join(json.dumps(example("p1", 0, "a", y)) + "\n" for y in (1, 0)), r"val.jsonl: duplicate example key"),
])
def test_bad_data_is_refused_naming_the_file(tmp_path, content, match):
    (tmp_path / "jd").mkdir()
    (tmp_path / "jd" / "val.jsonl").write_text(content)
    cfg = LabelsEvalConfig(judge="fake", data=str(tmp_path / "jd"), out=str(tmp_path / "out"))
    with pytest.raises(StepwiserError, match=match):
        run_labels(cfg, never_called, progress=False)
    assert not (tmp_path / "out").exists()


def test_limit_to_one_class_and_missing_split_are_refused(tmp_path):
    data = write_split(tmp_path / "jd")
    with pytest.raises(StepwiserError, match=r"the first 1\).*both classes"):
        run_labels(LabelsEvalConfig(judge="f", data=str(data), out=str(tmp_path / "o"), limit=1), never_called)
    with pytest.raises(StepwiserError, match="test.jsonl: not found"):
        run_labels(LabelsEvalConfig(judge="f", data=str(data), out=str(tmp_path / "o"), split="test"), never_called)


# --------------------------------------------------------------------------- CLI

def test_cli_with_a_fake_judge_resumes_without_duplicates(tmp_path, monkeypatch, capsys):
    import stepwiser.judges.load

    loads = []

    def load_judge(model, engine_opts=None, **kw):
        loads.append((model, kw))
        return fake_judge()

    monkeypatch.setattr(stepwiser.judges.load, "load_judge", load_judge)
    data = write_split(tmp_path / "jd")
    out = tmp_path / "out"
    args = ["eval", "labels", "--judge", "some/judge", "--data", str(data), "-o", str(out), "--bootstrap", "20",
            "--batch-items", "5", "--maj", "2", "--max-tokens", "7"]
    assert main(args) == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    for k in ("n", "n_problems", "balanced_accuracy", "balanced_accuracy_ci", "recall_positive", "recall_positive_ci",
              "recall_negative", "recall_negative_ci", "accuracy", "accuracy_ci", "unparsed",
              "mean_completion_tokens", "positives", "references"):
        assert k in s
    assert s["balanced_accuracy"] == 66.67 and s["meta"]["maj"] == 2
    assert loads == [("some/judge", {"kind": "auto", "cot": None, "max_tokens": 7, "seed": 0, "threshold": None})]
    assert "balanced accuracy" in capsys.readouterr().out
    assert main([*args[:-6], "--batch-items", "1", "--maj", "2", "--max-tokens", "7"]) == 0
    assert len(loads) == 1 and len(lines(out / "judgments.jsonl")) == 6
    assert main([*args, "--seed", "1"]) == 1
    assert "different run" in capsys.readouterr().err


def test_cli_on_tiny_models(tmp_path, tiny_model_dir, capsys):
    data = write_split(tmp_path / "jd", EXAMPLES[:4])
    base = ["eval", "labels", "--judge", str(tiny_model_dir), "--data", str(data), "--device", "cpu",
            "--bootstrap", "10"]
    assert main([*base, "-o", str(tmp_path / "gen"), "--maj", "2", "--max-tokens", "3"]) == 0, capsys.readouterr().err
    recs = lines(tmp_path / "gen" / "judgments.jsonl")
    assert len(recs) == 4 and all(len(r["analyses"]) == 2 and r["completion_tokens"] >= 1 for r in recs)
    assert main([*base, "-o", str(tmp_path / "disc"), "--judge-kind", "discriminative"]) == 0, capsys.readouterr().err
    recs = lines(tmp_path / "disc" / "judgments.jsonl")
    assert all(0 <= r["score"] <= 1 and r["verdict"] in (0, 1) and r["analyses"] is None for r in recs)
    assert json.loads((tmp_path / "disc" / "summary.json").read_text())["n"] == 4


# --------------------------------------------------------------------------- auroc

def test_auroc_exact_values():
    from stepwiser.stages.eval_labels import auroc

    assert auroc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 100.0
    assert auroc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auroc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 50.0          # all ties: no ranking
    # pairs (pos, neg): (0.9,0.4) win, (0.9,0.6) win, (0.5,0.4) win, (0.5,0.6) loss, ties none -> 3/4
    assert auroc([1, 0, 1, 0], [0.9, 0.4, 0.5, 0.6]) == 75.0
    # a tie between a positive and a negative counts half: (0.5,0.5) half, (0.7,0.5) win -> 1.5/2
    assert auroc([1, 1, 0], [0.5, 0.7, 0.5]) == 75.0
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 1], [0.2, 0.3])


def test_auroc_interval_resamples_problems():
    from stepwiser.stages.eval_labels import auroc_interval

    # a perfect ranking stays perfect in every replicate
    assert auroc_interval(["a", "a", "b", "b"], [1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], resamples=200) == [100.0, 100.0]
    lo, hi = auroc_interval(["a", "a", "b", "b", "c", "c"], [1, 0, 1, 0, 1, 0], [0.9, 0.1, 0.2, 0.8, 0.6, 0.4],
                            resamples=500, seed=1)
    assert 0.0 <= lo < hi <= 100.0
