"""StageProgress: a live bar on a terminal, periodic plain lines in a log (background runs), silent when off."""
import pytest

from stepwiser.io import progress
from stepwiser.io.progress import StageProgress


def test_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    with StageProgress("annotate", 10, "chunks", rates=("rollouts",), every=0) as bar:
        bar.advance(0, rollouts=8)
        bar.advance(3)
        bar.set(saved="40%")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4   # three updates and the final line
    assert lines[0].startswith("annotate: 0/10 chunks, ") and "rollouts/s" in lines[0]
    assert lines[-1].startswith("annotate: 3/10 chunks, ") and lines[-1].endswith("saved 40%")


def test_lines_are_spaced_by_the_interval(capsys, monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setenv("STEPWISER_PROGRESS_EVERY", "3600")
    with StageProgress("sample", 5, "problems") as bar:
        for _ in range(5):
            bar.advance(1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sample: 5/5 problems, ")   # within the hour: the final line only
    monkeypatch.setenv("STEPWISER_PROGRESS_EVERY", "soon")
    with pytest.raises(ValueError, match="STEPWISER_PROGRESS_EVERY"):
        StageProgress("x", 1)


def test_silent_when_disabled(capsys, monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    with StageProgress("eval", 2, enabled=False, every=0) as bar:
        bar.advance(2)
    assert capsys.readouterr().err == ""
