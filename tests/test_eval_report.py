"""`stepwiser report`: summaries -> the Table 5 layout in Markdown and a bar chart with intervals."""
import json

import pytest

from stepwiser.cli import main
from stepwiser.errors import StepwiserError
from stepwiser.report import comparison_table, load_summary, make_report


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
