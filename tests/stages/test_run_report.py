"""`stepwiser report-run`: tiny fake outputs of the other stages (their real file formats) -> report.md + PNGs."""
from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stepwiser.cli import cli
from stepwiser.core.metrics import summarize
from stepwiser.errors import StepwiserError
from stepwiser.stages.eval_labels import label_scores
from stepwiser.stages.run_report import RunReportConfig, run_report

PNG = b"\x89PNG\r\n\x1a\n"
N = 20   # problems, two chunks each (label 1 then 0)
VERDICTS = {   # judge name -> verdict of (problem, label)
    "good": lambda p, y: y,                              # balanced accuracy 100
    "pos": lambda p, y: 1,                               # always Positive: 50
    "mid": lambda p, y: y if y == 1 or p < 15 else 1,    # recall + 100, recall - 75: 87.5
}


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _chunks():
    return [(f"p{p}-{j}", f"synth-{p}", p, y) for p in range(N) for j, y in enumerate((1, 0))]


def _exact(key: str, y: int) -> int:
    return 0 if key == "p19-0" else y   # one chunk whose MC label is wrong


def make_data(tmp: Path) -> Path:
    return _jsonl(tmp / "test-data" / "val.jsonl", [
        {"key": k, "problem_id": pid, "chunk_index": int(k[-1]), "label": y, "exact_label": _exact(k, y)}
        for k, pid, _, y in _chunks()])


def make_labels(tmp: Path, name: str, data: Path) -> Path:
    """An `eval labels` folder: judgments.jsonl, summary.json (scored as the stage scores), manifest.json."""
    out, f = tmp / f"{name}-labels", VERDICTS[name]
    recs = [{"key": k, "problem_id": pid, "label": y, "verdict": f(p, y), "score": float(f(p, y)),
             "verdicts": [f(p, y)], "completion_tokens": 4.0, "analyses": None} for k, pid, p, y in _chunks()]
    _jsonl(out / "judgments.jsonl", recs)
    ids, verdicts = [r["problem_id"] for r in recs], [r["verdict"] for r in recs]
    summary = label_scores(ids, [r["label"] for r in recs], verdicts, 200)
    summary["exact"] = label_scores(ids, [_exact(r["key"], r["label"]) for r in recs], verdicts, 200)
    summary["meta"] = {"judge": f"runs/{name}", "maj": 1, "data": str(data)}
    _write(out / "summary.json", summary)
    _write(out / "manifest.json", {"stage": "eval-labels", "complete": True, "config": {
        "judge": f"runs/{name}", "data": str(data.parent), "split": "val", "maj": 1, "cot": None}})
    return out


def make_bench(tmp: Path) -> Path:
    out = tmp / "pb"
    s = summarize({"test": ([-1, -1, 2, 1], [-1, 0, 2, 1])}, resamples=0)   # error acc 100, correct acc 50
    s["meta"] = {"mode": "judge", "judge": "runs/mid", "maj": 1, "data": "bench", "subsets": ["test"]}
    _write(out / "summary.json", s)
    return out


def make_train(tmp: Path) -> Path:
    out = tmp / "train"
    rows = [{"step": 0, "time": 0.0, "val_n": 40, "val_balanced_accuracy": 0.5,
             "val_calibrated_balanced_accuracy": 0.55}]
    rows += [{"step": i, "time": 30.0 * i, "reward": 0.1 * i, "accuracy": 0.5, "zero_variance_groups": 0.25,
              "format_failure": 0.0625} for i in range(1, 5)]
    rows += [{"step": 4, "time": 120.0, "val_n": 40, "val_balanced_accuracy": 0.62,
              "val_calibrated_balanced_accuracy": 0.5}]
    _jsonl(out / "metrics.jsonl", rows)
    _write(out / "manifest.json", {"stage": "train-judge", "complete": True, "summary": {"steps": 4, "seconds": 120.0},
                                   "config": {"method": "grpo-nocot", "model": "policy", "data": "jd", "lr": 3e-4,
                                              "max_steps": 4, "shuffle_labels": False}})
    return out


def make_annotations(tmp: Path) -> Path:
    """Two samples of one problem sharing their first chunk (prefix sharing), M = 4, no manifest."""
    base = {"problem_id": "synth-0", "prefix_sharing": True, "q0": {"successes": 2, "rollouts": 4, "source": "rollouts"}}
    return _jsonl(tmp / "annotations.jsonl", [
        {**base, "sample_id": 0, "chunks": ["a", "b", "c"], "rollouts": [4, 4, 0],
         "labels": {"rel_effective": [1, 1, 0], "abs_q": [1, 1, 1]}},
        {**base, "sample_id": 1, "chunks": ["a", "d"], "rollouts": [4, 0],
         "labels": {"rel_effective": [1, 0], "abs_q": [1, 0]}}])


def make_search(tmp: Path) -> Path:
    out = tmp / "search"
    _jsonl(out / "search.jsonl", [{"problem_id": f"synth-{i}", "correct": c, "resets": [0]} for i, c in
                                  enumerate([True, True, True, False])])
    _jsonl(out / "baseline.jsonl", [{"problem_id": f"synth-{i}", "sample_id": 0, "correct": c} for i, c in
                                    enumerate([False, False, True, False])])
    _write(out / "summary.json", {"n": 4, "accuracy": 75.0, "baseline_accuracy": 25.0, "mean_accepted_tokens": 56.81,
                                  "mean_rejected_tokens": 95.43, "mean_resets_per_chunk": 1.403,
                                  "judge_seconds_share": 0.392, "mean_judge_calls": 7.59})
    _write(out / "manifest.json", {"stage": "search", "config": {"policy": "policy", "judge": "runs/mid",
                                                                 "max_resets": 5, "maj": 1}})
    return out


def make_select(tmp: Path) -> tuple[Path, Path]:
    sel = _write(tmp / "sel" / "summary.json", {
        "strategy": "judge", "prompts": 10, "prompts_with_correct": 8, "samples": 80, "correct_samples": 40,
        "mean_judge_score_kept": 0.9, "mean_judge_score_all_correct": 0.7}).parent
    acc = _write(tmp / "acc" / "summary.json", {"problems": 300, "k": 1, "mean_accuracy": 48.0, "stderr": 2.89,
                                                "meta": {"policy": "p", "k": 1, "temperature": 0.0,
                                                         "metric": "greedy"}}).parent
    return sel, acc


@pytest.fixture
def inputs(tmp_path):
    data = make_data(tmp_path)
    labels = {n: make_labels(tmp_path, n, data) for n in VERDICTS}
    sel, acc = make_select(tmp_path)
    return {"data": data, "labels": labels, "bench": make_bench(tmp_path), "train": make_train(tmp_path),
            "annotations": make_annotations(tmp_path), "search": make_search(tmp_path), "select": sel,
            "accuracy": acc, "out": tmp_path / "report"}


def _cfg(inp, **kw) -> RunReportConfig:
    args = dict(out=str(inp["out"]), labels=[f"{n}={p}" for n, p in inp["labels"].items()],
                pair=["mid:pos", "pos:mid"], data=str(inp["data"]), verdict="mid>pos,good,95,60",
                bench=[f"mid={inp['bench']}"], train=[f"nocot={inp['train']}"],
                annotations=[f"ann={inp['annotations']}"], search=[f"mid={inp['search']}"],
                select=[f"judge-sel={inp['select']}"], accuracy=[f"judge-sel={inp['accuracy']}"],
                title="Tiny run", notes="A smoke-sized run.", bootstrap=200)
    return RunReportConfig(**{**args, **kw})


def _row(text: str, start: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith(start)]
    return line


def test_full_report(inputs):
    res = run_report(_cfg(inputs))
    text = (inputs["out"] / "report.md").read_text()
    assert text == res["text"] and text.startswith("# Tiny run\n\nA smoke-sized run.\n")
    assert _row(text, "| mid | 87.5 [")            # MC: recalls 100 and 75
    good = _row(text, "| good |")   # exact: p19-0 is Negative there and good calls it Positive
    assert good.startswith("| good | 100.0 [100.0, 100.0] | - | 97.6 [") and good.endswith("| - | 100.0 / 95.2 | 0.0 |")
    assert "Always-one-verdict judges score 50" in text
    assert "Produced by: `stepwiser eval labels` with data=" in text and "mid: judge=runs/mid" in text
    mc, exact = _row(text, "| mid vs pos | MC"), _row(text, "| mid vs pos | exact")
    assert "| MC (40 chunks, 20 problems) | +37.5 [" in mc and mc.endswith("| yes |")
    assert "| exact (40 chunks, 20 problems) |" in exact
    assert _row(text, "| pos vs mid | MC").split("|")[3].strip().startswith("-37.5 [")
    assert _row(text, "| mid | 66.7 |") == "| mid | 66.7 | 100.0 | 50.0 | 4 |"
    assert _row(text, "| nocot |") == "| nocot | grpo-nocot | 4 | 62.0 (4) | 62.0 (4) | 55.0 (0) | 2.0 min |"
    assert "Produced by: `stepwiser train-judge` with method=grpo-nocot, model=policy, data=jd, lr=0.0003" in text
    assert _row(text, "| ann |") == "| ann | 2 | 5 | 12 | 16 | 33.3% | 0.0% | - |"
    search = _row(text, "| mid | 4 |")
    assert "| 75.0 | 25.0 | +50.0 | +50.0 [" in search and "| 1.40 | 7.59 | 39.2% |" in search
    assert _row(text, "| judge-sel |") == "| judge-sel | judge | 10 | 8 | 40 / 80 | 0.900 | 0.700 | 48.0 +/- 2.9 (greedy) |"
    assert sorted(Path(p).name for p in res["plots"]) == ["label_balance.png", "train_curves.png", "train_health.png"]
    for p in res["plots"]:
        assert Path(p).read_bytes()[:8] == PNG and f"]({Path(p).name})" in text


def test_verdict_lines(inputs):
    text = run_report(_cfg(inputs))["text"]
    lines = [x for x in text.splitlines() if x.startswith("**Verdict:**")]
    assert len(lines) == 4
    # exact labels: the judge's summary has them (p19-0 is Negative there, and mid calls it Positive)
    assert lines[0].startswith("**Verdict:** mid (balanced accuracy vs exact labels ")
    assert " beats pos: paired difference +" in lines[0] and "its 95% interval lies entirely above 0" in lines[0]
    assert " does not beat good: paired difference -" in lines[1] and "does not lie entirely above 0" in lines[1]
    assert " does not beat 95: the lower bound of its 95% interval" in lines[2] and "not a paired test" in lines[2]
    assert " beats 60: the lower bound" in lines[3] and "is above 60's point value 60.0" in lines[3]


def test_verdict_without_judgments_compares_the_interval(inputs):
    (inputs["labels"]["pos"] / "judgments.jsonl").unlink()
    text = run_report(_cfg(inputs, pair=[], verdict="mid>pos"))["text"]
    line = _row(text, "**Verdict:**")
    assert " beats pos: the lower bound of its 95% interval" in line
    assert "pos's point value 50.0 (no paired test: pos has no judgments.jsonl; not a paired test)" in line


def test_no_input_is_an_error(tmp_path):
    with pytest.raises(StepwiserError, match="nothing to report: give at least one of --labels, --bench"):
        run_report(RunReportConfig(out=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


def test_missing_inputs(inputs, tmp_path):
    gone = tmp_path / "nope"
    with pytest.raises(StepwiserError, match=re.escape(f"every input is missing: --labels a: {gone}: not found")):
        run_report(RunReportConfig(out=str(tmp_path / "r"), labels=[f"a={gone}"]))
    half = tmp_path / "half"
    half.mkdir()   # a folder whose stage has not finished
    with pytest.raises(StepwiserError, match=re.escape(f"--search s: {half / 'summary.json'}: not found")):
        run_report(RunReportConfig(out=str(tmp_path / "r"), search=[f"s={half}"], train=[f"t={gone}"]))
    res = run_report(RunReportConfig(out=str(tmp_path / "r"), bench=[f"b={inputs['bench']}", f"c={gone}"]))
    assert res["missing"] == [f"--bench c: {gone}: not found"]
    assert f"## Inputs not found (left out)\n\n- --bench c: {gone}: not found\n" in res["text"]


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="'b' is not a --labels name"):
        RunReportConfig(out="o", labels=["a=x"], pair=["a:b"])
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        RunReportConfig(out="o", bench=["justapath"])
    with pytest.raises(ValueError, match="expected JUDGE>FLOOR1,FLOOR2"):
        RunReportConfig(out="o", labels=["a=x"], verdict="a")


def test_cli(inputs):
    runner = CliRunner()
    res = runner.invoke(cli, ["report-run", "--help"])
    assert res.exit_code == 0 and "--verdict" in res.output and "--annotations" in res.output
    res = runner.invoke(cli, ["report-run", "-o", str(inputs["out"]), "--labels", f"mid={inputs['labels']['mid']}",
                              "--labels", f"pos={inputs['labels']['pos']}", "--verdict", "mid>pos",
                              "--bootstrap", "100"])
    assert res.exit_code == 0, res.output
    assert (inputs["out"] / "report.md").is_file() and "**Verdict:** mid" in res.output
    assert res.output.rstrip().endswith(f"wrote report: {inputs['out'] / 'report.md'}")


def test_micro_tables_wrapper(inputs, tmp_path, monkeypatch, capsys):
    script = Path(__file__).resolve().parents[2] / "scripts" / "micro_tables.py"
    out = tmp_path / "t" / "tables.md"
    monkeypatch.setattr(sys, "argv", ["micro_tables.py", "--data", str(inputs["data"]), "--labels",
                                      f"mid={inputs['labels']['mid']}", f"pos={inputs['labels']['pos']}", "--bench",
                                      f"mid={inputs['bench']}", "--pair", "mid:pos", "--bootstrap", "100", "-o", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    text = out.read_text()
    assert "| mid vs pos | exact (40 chunks, 20 problems) | +" in text and "| mid | 66.7 | 100.0 | 50.0 | 4 |" in text
