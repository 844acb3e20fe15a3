"""`stepwiser eval processbench` end to end with tiny local models (plumbing: model loading, engines, outputs)."""
import json
from pathlib import Path

import pytest
from eval_data import records

from stepwiser.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "processbench"


def _run(tmp_path, *args):
    out = tmp_path / "out"
    code = main(["eval", "processbench", *args, "--data", str(FIXTURES), "-o", str(out), "--max-tokens", "3",
                 "--device", "cpu", "--bootstrap", "10"])
    return code, out


def test_judge_on_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    code, out = _run(tmp_path, "--judge", str(tiny_model_dir), "--maj", "2", "--all-steps")
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["subsets"]) == {"gsm8k", "math"} and summary["meta"]["maj"] == 2
    recs = records(out / "gsm8k.jsonl")
    assert set(recs) == {"gsm8k-0", "gsm8k-1"}
    for r in recs.values():
        assert r["steps_judged"] == 3 and all(len(texts) == 2 for texts in r["analyses"])
        assert len(r["verdicts"]) == 3 and r["prediction"] in (None, -1, 0, 1, 2)
    assert "average" in capsys.readouterr().out


def test_critic_on_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    code, out = _run(tmp_path, "--critic", str(tiny_model_dir))
    assert code == 0, capsys.readouterr().err
    for r in records(out / "math.jsonl").values():
        assert len(r["indices"]) == 1 and len(r["analyses"]) == 1 and r["tokens"] >= 1
    assert json.loads((out / "summary.json").read_text())["meta"]["mode"] == "critic"


def test_help_lists_the_modes(capsys):
    assert main(["eval", "processbench", "--help"]) == 0
    text = capsys.readouterr().out
    for opt in ("--judge", "--critic", "--prm", "--predictions", "--reference", "--maj", "--threshold", "--all-steps",
                "--subsets", "--limit", "--engine"):
        assert opt in text


def test_a_subset_with_one_class_only_is_flagged(tmp_path, capsys):
    """--limit 1 keeps only the clean gsm8k item: F1 is 0 by construction, and the summary says so."""
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "gsm8k-0", "prediction": -1}\n')
    out = tmp_path / "out"
    code = main(["eval", "processbench", "--predictions", str(preds), "--data", str(FIXTURES), "--subsets", "gsm8k",
                 "--limit", "1", "-o", str(out), "--bootstrap", "0"])
    assert code == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())["subsets"]["gsm8k"]
    assert (s["n_error"], s["n_correct"], s["f1"]) == (0, 1, 0.0)
    assert "no erroneous items" in s["warning"] and "--limit 1" in s["warning"]
    assert "warning: subset 'gsm8k' has no erroneous items" in capsys.readouterr().err
    full = tmp_path / "full"
    preds.write_text('{"id": "gsm8k-0", "prediction": -1}\n{"id": "gsm8k-1", "prediction": 1}\n')
    assert main(["eval", "processbench", "--predictions", str(preds), "--data", str(FIXTURES), "--subsets", "gsm8k",
                 "-o", str(full), "--bootstrap", "0"]) == 0
    assert "warning" not in json.loads((full / "summary.json").read_text())["subsets"]["gsm8k"]


def _bench_items(n_error, n_clean, name="gsm8k"):
    from stepwiser.data.bench import BenchItem

    # erroneous first, as in the ProcessBench files
    return [BenchItem(name, f"{name}-{i}", "p", ("a", "b", "c"), (i % 3) if i < n_error else -1, {})
            for i in range(n_error + n_clean)]


def test_stratified_sample_keeps_both_classes_in_proportion():
    from stepwiser.data.bench import stratified_sample

    items = _bench_items(207, 193)   # the ProcessBench gsm8k counts
    got = stratified_sample(items, 40, seed=0, name="gsm8k")
    assert len(got) == 40 and sum(it.label == -1 for it in got) == 19   # round(40 * 193 / 400) = 19
    assert [it.id for it in got] == sorted((it.id for it in got), key=lambda x: int(x.split("-")[1]))  # file order
    assert len({it.id for it in got}) == 40
    assert [it.id for it in stratified_sample(items, 40, seed=0, name="gsm8k")] == [it.id for it in got]  # seeded
    assert [it.id for it in stratified_sample(items, 40, seed=1, name="gsm8k")] != [it.id for it in got]
    assert stratified_sample(items, 400) == items and stratified_sample(items, 999) == items
    rare = _bench_items(99, 1)
    assert sum(it.label == -1 for it in stratified_sample(rare, 2)) == 1      # a rare class still appears
    assert sum(it.label == -1 for it in stratified_sample(rare, 1)) in (0, 1)
    only_error = _bench_items(10, 0)
    assert len(stratified_sample(only_error, 3)) == 3
    with pytest.raises(ValueError):
        stratified_sample(items, 0)


def test_sample_option_and_its_conflict_with_limit(tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "gsm8k-0", "prediction": -1}\n{"id": "gsm8k-1", "prediction": 1}\n')
    out = tmp_path / "out"
    args = ["eval", "processbench", "--predictions", str(preds), "--data", str(FIXTURES), "--subsets", "gsm8k",
            "--bootstrap", "0"]
    assert main([*args, "--sample", "2", "-o", str(out)]) == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["subsets"]["gsm8k"]["n"] == 2 and s["meta"]["sample"] == 2
    assert json.loads((out / "manifest.json").read_text())["config"]["sample"] == 2
    assert main([*args, "--sample", "2", "--limit", "1", "-o", str(tmp_path / "x")]) != 0
    assert "not both" in capsys.readouterr().err
    # without --sample the manifest has no `sample` key, so runs of earlier versions still resume
    assert main([*args, "-o", str(tmp_path / "full")]) == 0
    assert "sample" not in json.loads((tmp_path / "full" / "manifest.json").read_text())["config"]
