"""`stepwiser quickstart`: generated data has a manifest; other options into the same folder are refused."""
import json

from stepwiser.cli import main


def _run(out, model, *args):
    return main(["quickstart", "--out", str(out), "--policy", str(model), "--max-tokens", "4", *args])


def test_quickstart_refuses_data_made_with_other_options(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "qs"
    assert _run(out, tiny_model_dir, "--problems", "2", "--bench", "4") == 0
    problems = (out / "problems.jsonl").read_text()
    assert json.loads((out / "problems.jsonl.manifest.json").read_text())["complete"] is True
    assert json.loads((out / "synth-bench" / "manifest.json").read_text())["complete"] is True
    capsys.readouterr()
    assert _run(out, tiny_model_dir, "--problems", "2", "--bench", "4") == 0          # same options: resumes
    for args, what in ((("--problems", "3", "--bench", "4"), "problems (2 -> 3)"),
                       (("--problems", "2", "--bench", "4", "--seed", "1"), "seed (0 -> 1)"),
                       (("--problems", "2", "--bench", "8"), "bench (4 -> 8)")):
        assert _run(out, tiny_model_dir, *args) == 1
        err = capsys.readouterr().err
        assert what in err and "--overwrite" in err, err
    assert (out / "problems.jsonl").read_text() == problems
    # files of an older quickstart without a manifest: kept only if they are what the options make
    (out / "problems.jsonl.manifest.json").unlink()
    assert _run(out, tiny_model_dir, "--problems", "3", "--bench", "4") == 1
    assert "problems.jsonl was generated with other options than problems=3, seed=0" in capsys.readouterr().err
    # --overwrite regenerates the data and what was made from it
    assert _run(out, tiny_model_dir, "--problems", "3", "--bench", "4", "--overwrite") == 0
    assert len((out / "problems.jsonl").read_text().splitlines()) == 3
    assert len((out / "samples.jsonl").read_text().splitlines()) == 3
