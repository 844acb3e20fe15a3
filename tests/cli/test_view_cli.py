"""`stepwiser view INPUT... -o PAGE.html`: inputs as arguments, --config, the summary, exit codes."""
from __future__ import annotations

from test_view_fixtures import write_inputs

from stepwiser.cli import main


def test_view_writes_the_page_and_prints_the_summary(tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in")
    out = tmp_path / "page.html"
    assert main(["view", *map(str, inputs.values()), "-o", str(out), "--title", "micro run"]) == 0
    cap = capsys.readouterr()
    assert "solutions" in cap.out and "8" in cap.out and "chunks" in cap.out and f"wrote page: {out}" in cap.err
    page = out.read_text()
    assert "<title>micro run</title>" in page and page.count('<section class="solution"') == 8


def test_view_options_from_a_config_file(tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in")
    cfg = tmp_path / "view.yaml"
    cfg.write_text(f"view:\n  inputs: [{inputs['annotate']}]\n  max-solutions: 2\n  out: {tmp_path / 'p.html'}\n")
    assert main(["view", "--config", str(cfg)]) == 0
    assert (tmp_path / "p.html").read_text().count('<section class="solution"') == 2


def test_view_usage_and_runtime_errors(tmp_path, capsys):
    assert main(["view", "--help"]) == 0 and "[INPUTS]..." in capsys.readouterr().out
    assert main(["view", "-o", str(tmp_path / "p.html")]) == 2
    assert "Missing argument INPUTS..." in capsys.readouterr().err
    assert main(["view", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "p.html")]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["view", str(empty), "-o", str(tmp_path / "p.html")]) == 1
    assert "hold(s) no records" in capsys.readouterr().err
    bogus = tmp_path / "bogus.jsonl"
    bogus.write_text('{"a": 1}\n')
    assert main(["view", str(bogus), "-o", str(tmp_path / "p.html")]) == 1
    assert f"{bogus}: not an annotate, eval or search output" in capsys.readouterr().err
