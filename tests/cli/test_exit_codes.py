"""Exit codes of `stepwiser.cli.main`: Ctrl-C inside a command is 130 (click turns the KeyboardInterrupt into
Abort), `ctx.exit(n)` inside a command is n, a plain Abort (EOF at a prompt) stays 1."""
from __future__ import annotations

import click
import pytest

import stepwiser.stages.data as data_stage
from stepwiser.cli import cli, main


@click.command("boom")
@click.option("--how", default="ok")
def boom(how):
    if how == "interrupt":
        raise KeyboardInterrupt
    if how == "eof":
        raise EOFError
    if how == "abort":
        raise click.Abort()
    if how.startswith("exit"):
        click.get_current_context().exit(int(how[4:]))


@pytest.fixture
def with_boom(monkeypatch):
    real = cli.get_command
    monkeypatch.setattr(cli, "get_command", lambda ctx, name: boom if name == "boom" else real(ctx, name))


@pytest.mark.parametrize("how, code, message", [
    ("interrupt", 130, "Interrupted; outputs written so far are kept"),
    ("exit3", 3, ""), ("exit0", 0, ""), ("ok", 0, ""),
    ("eof", 1, "Aborted."), ("abort", 1, "Aborted."),
])
def test_exit_codes(with_boom, capsys, how, code, message):
    assert main(["boom", "--how", how]) == code
    err = capsys.readouterr().err
    assert message in err and ("Aborted." not in err or code == 1)


def test_ctrl_c_inside_a_stage_command(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_stage, "run_synth", interrupted)
    assert main(["data", "synth", "--n", "2", "-o", str(tmp_path / "p.jsonl")]) == 130
    assert "Interrupted" in capsys.readouterr().err
