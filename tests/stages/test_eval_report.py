"""`stepwiser report`: summaries -> the Table 5 layout in Markdown and a bar chart with intervals."""
import json

import pytest

from stepwiser.cli import main
from stepwiser.errors import StepwiserError
from stepwiser.stages.report import comparison_table, load_summary, make_report


def _summary(f1s: dict, avg, ci=True, judge="runs/judge-a", maj=1):
    sub = {k: {"n": 10, "f1": v, "f1_ci": [v - 5, v + 5] if ci else None} for k, v in f1s.items()}
    return {"subsets": sub, "average_f1": avg, "average_f1_ci": [avg - 3, avg + 3] if ci else None,
            "meta": {"judge": judge, "maj": maj}}


def test_table_layout():
    rows = [("disc", _summary({"gsm8k": 40.8, "math": 37.2}, 39.0)),
            ("stepwiser", _summary({"gsm8k": 46.94, "math": 43.4}, 45.17, ci=False))]
    assert comparison_table(rows) == (
        "| judge | GSM8K | MATH | Avg |\n"
        "|---|---:|---:|---:|\n"
        "| disc | 40.8 [35.8, 45.8] | 37.2 [32.2, 42.2] | 39.0 [36.0, 42.0] |\n"
        "| stepwiser | 46.9 | 43.4 | 45.2 |\n"
        "\nF1 in percent; in brackets the bootstrap 95% interval.\n")


def test_rows_on_different_subsets():
    rows = [("a", _summary({"gsm8k": 50.0}, 50.0)), ("b", _summary({"test": 20.0, "gsm8k": 10.0}, 15.0))]
    table = comparison_table(rows)
    assert table.splitlines()[0] == "| judge | GSM8K | test | Avg |"
    assert "| a | 50.0 [45.0, 55.0] | - | 50.0 [47.0, 53.0] |" in table
    assert "evaluated on different subsets" in table


def test_make_report_writes_table_and_png(tmp_path, capsys):
    paths = []
    for i, (name, maj) in enumerate((("runs/judge-a", 1), ("runs/judge-b", 8))):
        p = tmp_path / f"s{i}" / "summary.json"
        p.parent.mkdir()
        p.write_text(json.dumps(_summary({"gsm8k": 40.0 + i, "omnimath": 20.0}, 30.0 + i / 2, judge=name, maj=maj)))
        paths.append(str(p))
    table = make_report(paths, table_out=str(tmp_path / "t.md"), plot_out=str(tmp_path / "c.png"))
    assert "| judge-a |" in table and "| judge-b maj@8 |" in table and "Omni-MATH" in table
    assert (tmp_path / "t.md").read_text() == table
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", *paths, "--names", "x,y", "-o", str(tmp_path / "t2.md")]) == 0
    assert "| x |" in capsys.readouterr().out
    assert main(["report", *paths, "--names", "x"]) == 1
    assert "--names has 1 name(s) for 2 summary file(s)" in capsys.readouterr().err


def test_bad_summary_names_the_file(tmp_path):
    p = tmp_path / "summary.json"
    p.write_text(json.dumps({"average_f1": 3}))
    with pytest.raises(StepwiserError, match="summary.json: not a summary.json"):
        load_summary(p)
    p.write_text("{")
    with pytest.raises(StepwiserError, match="malformed JSON"):
        load_summary(p)


def _dev(f1, err, cor, judge):
    return {"subsets": {"dev": {"n": 50, "f1": f1, "error_acc": err, "correct_acc": cor}}, "average_f1": f1,
            "meta": {"judge": str(judge), "maj": 1}}


def test_select_best_by_f1_then_accuracies_then_step(tmp_path):
    from stepwiser.stages.report import select_best

    judges = []
    for step in (12, 6, 18):   # given out of step order, as a shell glob lists checkpoint-12 before checkpoint-6
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "stepwiser_judge.json").write_text(json.dumps({"kind": "generative", "step": step}))
        judges.append(d)
    rows = [("a", _dev(30.0, 20.0, 60.0, judges[0])), ("b", _dev(40.0, 30.0, 70.0, judges[1])),
            ("c", _dev(35.0, 90.0, 90.0, judges[2]))]
    assert select_best(rows) == 1                                     # the highest F1 wins
    rows = [("a", _dev(0.0, 28.0, 0.0, judges[0])), ("b", _dev(0.0, 30.0, 0.0, judges[1])),
            ("c", _dev(0.0, 28.0, 0.0, judges[2]))]
    assert select_best(rows) == 1                                     # F1 tie: higher mean accuracy
    rows = [("a", _dev(0.0, 28.0, 0.0, judges[0])), ("b", _dev(0.0, 28.0, 0.0, judges[1])),
            ("c", _dev(0.0, 28.0, 0.0, judges[2])), ("d", _dev(0.0, 28.0, 0.0, tmp_path / "no-meta"))]
    assert select_best(rows) == 2                                     # full tie: the latest step (18)
    assert select_best([("x", _dev(0.0, 0.0, 0.0, "a")), ("y", _dev(0.0, 0.0, 0.0, "b"))]) == 1
    with pytest.raises(ValueError):
        select_best([])


def test_report_select_prints_the_judge(tmp_path, capsys):
    paths = []
    for i, f1 in enumerate((10.0, 25.0, 5.0)):
        p = tmp_path / f"s{i}" / "summary.json"
        p.parent.mkdir()
        p.write_text(json.dumps(_dev(f1, f1, f1, f"runs/ck-{i}")))
        paths.append(str(p))
    assert main(["report", *paths, "--select"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "selected: runs/ck-1 (average F1 25.0)"


def test_a_partial_summary_is_marked_in_the_report(tmp_path):
    from stepwiser.stages.report import load_rows

    p = tmp_path / "s" / "summary.json"
    p.parent.mkdir()
    p.write_text(json.dumps({**_summary({"gsm8k": 40.0}, 40.0), "partial": True, "missing": 3}))
    assert load_rows([str(p)])[0][0] == "judge-a (partial: 3 missing)"
    assert load_rows([str(p)], ["mine"])[0][0] == "mine (partial: 3 missing)"
