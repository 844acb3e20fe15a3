"""`stepwiser eval processbench` end to end with tiny local models (plumbing: model loading, engines, outputs)."""
import json
from pathlib import Path

from eval_data import records

from stepwiser.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "processbench"


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
