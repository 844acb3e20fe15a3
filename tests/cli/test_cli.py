"""C1: one entry point; --help works for every subcommand without a model or network; exit codes."""
import subprocess
import sys

import pytest

from stepwiser.cli import SUBCOMMANDS, cli, main


def test_version_and_help():
    out = subprocess.run([sys.executable, "-m", "stepwiser", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "stepwiser, version" in out.stdout
    out = subprocess.run([sys.executable, "-m", "stepwiser", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "sample" in out.stdout


def test_listed_subcommands_exist_and_have_help(capsys):
    listed = cli.list_commands(None)
    for required in ("data", "sample", "segment", "annotate"):
        assert required in listed
    for sub in listed:
        assert sub in SUBCOMMANDS
        assert main([sub, "--help"]) == 0
        assert "Usage:" in capsys.readouterr().out


def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom stepwiser.cli import main, cli\n"
            "for s in cli.list_commands(None):\n"
            "    try:\n        main([s, '--help'])\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'vllm') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_usage_error_exits_2(capsys):
    assert main(["sample"]) == 2
    assert "Missing option" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_runtime_failure_exits_1_with_one_line(tmp_path, capsys):
    p = tmp_path / "problems.jsonl"
    p.write_text("not json\n")
    code = main(["sample", "--policy", str(tmp_path / "nope"), "--problems", str(p), "-o", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and "problems.jsonl:1" in err
    assert "Traceback" not in err


def test_debug_shows_traceback(tmp_path):
    p = tmp_path / "problems.jsonl"
    p.write_text("not json\n")
    with pytest.raises(Exception, match="problems.jsonl:1"):
        main(["--debug", "sample", "--policy", "x", "--problems", str(p), "-o", str(tmp_path / "o.jsonl")])


def test_unknown_engine_is_a_usage_error(tmp_path, capsys):
    p = tmp_path / "problems.jsonl"
    p.write_text("")
    assert main(["sample", "--policy", "x", "--problems", str(p), "-o", str(tmp_path / "o"), "--engine", "tgi"]) == 2
    assert "hf" in capsys.readouterr().err
