"""`eval processbench` with predictions made elsewhere, the reference judges, and bad input (clear errors
naming the file; nothing written)."""
import json
from pathlib import Path

import pytest
from eval_data import ITEMS, records, write_bench

from stepwiser.cli import main
from stepwiser.data.bench import BenchItem
from stepwiser.stages.eval_processbench import ProcessBenchConfig, run_processbench
from stepwiser.judges.reference import LabelPrior
from stepwiser.data.synth import generate_bench

FIXTURES = Path(__file__).parents[1] / "fixtures" / "processbench"


def _preds(tmp_path, rows, name="preds.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _eval(tmp_path, *args):
    return main(["eval", "processbench", *args, "-o", str(tmp_path / "out"), "--bootstrap", "20"])


# --------------------------------------------------------------------------- predictions made elsewhere

def test_predictions_with_known_f1(tmp_path, capsys):
    data = write_bench(tmp_path / "bench", {"s": ITEMS, "t": ITEMS[:2]})
    preds = _preds(tmp_path, [{"id": "a", "prediction": -1, "subset": "s"}, {"id": "b", "prediction": 2, "subset": "s"},
                              {"id": "c", "prediction": 0, "subset": "s"}, {"id": "d", "prediction": None, "subset": "s"},
                              {"id": "a", "prediction": 0, "subset": "t"}, {"id": "b", "prediction": 1, "subset": "t"}])
    assert _eval(tmp_path, "--predictions", str(preds), "--data", str(data)) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    # s: error items b (wrong), c (right), d (null); correct item a (right) -> 33.3 / 100 -> F1 50
    assert (s["subsets"]["s"]["error_acc"], s["subsets"]["s"]["correct_acc"], s["subsets"]["s"]["f1"]) == \
        (33.33, 100.0, 50.0)
    assert s["subsets"]["s"]["unparsed"] == 1 and s["subsets"]["s"]["missing"] == 0
    # t: error item b right, correct item a wrong -> 100 / 0 -> F1 0
    assert s["subsets"]["t"]["f1"] == 0.0 and s["average_f1"] == 25.0
    assert records(tmp_path / "out" / "s.jsonl")["d"] == {"id": "d", "label": 2, "prediction": None,
                                                         "unparsed": True, "missing": False}


def test_missing_ids_need_allow_missing_and_make_a_partial_summary(tmp_path, capsys):
    data = write_bench(tmp_path / "bench", {"s": ITEMS})
    preds = _preds(tmp_path, [{"id": "a", "prediction": -1}, {"id": "c", "prediction": 0}])
    # refused by default: nothing written, the message names the ids and the flag
    assert _eval(tmp_path, "--predictions", str(preds), "--data", str(data)) == 1
    err = capsys.readouterr().err
    assert "preds.jsonl: 2 of the 4 evaluated items have no prediction (s: 'b', 'd'); give --allow-missing" in err
    assert not (tmp_path / "out").exists()
    cfg = ProcessBenchConfig(mode="predictions", model=str(preds), data=str(data), out=str(tmp_path / "o"), bootstrap=0,
                             allow_missing=True)
    summary = run_processbench(cfg, progress=False)
    s = summary["subsets"]["s"]
    assert (s["missing"], s["unparsed"], s["error_acc"], s["correct_acc"]) == (2, 0, 33.33, 100.0)
    assert summary["partial"] is True and summary["missing"] == 2
    assert records(tmp_path / "o" / "s.jsonl")["b"]["missing"]
    assert _eval(tmp_path, "--predictions", str(preds), "--data", str(data), "--allow-missing") == 0
    assert "warning: items without a prediction (scored as wrong): s 2" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["partial"] is True
    # no prediction for any evaluated item: an error even with --allow-missing
    data2 = write_bench(tmp_path / "bench2", {"s": ITEMS, "t": [dict(ITEMS[0], id="t-only")]})
    only_t = _preds(tmp_path, [{"id": "t-only", "prediction": -1}], "t.jsonl")
    assert _eval(tmp_path, "--predictions", str(only_t), "--data", str(data2), "--subsets", "s", "--allow-missing",
                 "--overwrite") == 1
    assert "no prediction for any of the 4 evaluated items" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--allow-missing applies to --predictions only"):
        ProcessBenchConfig(mode="reference", model="oracle", data=str(data), out="x", allow_missing=True)


def test_a_complete_predictions_file_gives_a_headline_summary(tmp_path):
    data = write_bench(tmp_path / "bench", {"s": ITEMS})
    preds = _preds(tmp_path, [{"id": i, "prediction": -1} for i in ("a", "b", "c", "d")])
    s = run_processbench(ProcessBenchConfig(mode="predictions", model=str(preds), data=str(data),
                                            out=str(tmp_path / "o"), bootstrap=0), progress=False)
    assert "partial" not in s and "missing" not in s


def test_ids_beyond_limit_or_in_other_subsets_are_ignored(tmp_path):
    data = write_bench(tmp_path / "bench", {"s": ITEMS, "t": [dict(ITEMS[0], id="t-only")]})
    preds = _preds(tmp_path, [{"id": i, "prediction": -1} for i in ("a", "b", "c", "d", "t-only")])
    assert _eval(tmp_path, "--predictions", str(preds), "--data", str(data), "--subsets", "s", "--limit", "2") == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["subsets"]["s"]["n"] == 2


@pytest.mark.parametrize("rows, message", [
    ([{"id": "a", "prediction": -1}, {"id": "zz", "prediction": 0}, {"id": "yy", "prediction": 1}],
     "2 prediction id(s) not in the data: 'zz', 'yy'"),
    ([{"id": "a", "prediction": -1, "subset": "nope"}], "not in the data: 'nope/a'"),
    ([{"id": "a", "prediction": -1}, {"id": "a", "prediction": 0}], "preds.jsonl:2: duplicate prediction for id 'a'"),
    ([{"id": "a"}], "preds.jsonl:1: a prediction needs 'id' and 'prediction'"),
    ([{"id": "b", "prediction": 4}], "preds.jsonl:1: prediction for id 'b' must be null or an integer in [-1, 4)"),
    ([{"id": "b", "prediction": "1"}], "must be null or an integer"),
    ([], "no predictions in this file"),
])
def test_bad_predictions_file(tmp_path, capsys, rows, message):
    data = write_bench(tmp_path / "bench", {"s": ITEMS})
    preds = _preds(tmp_path, rows)
    assert _eval(tmp_path, "--predictions", str(preds), "--data", str(data)) == 1
    err = capsys.readouterr().err
    assert message in err and "preds.jsonl" in err
    assert not (tmp_path / "out").exists()             # nothing written


def test_ambiguous_id_needs_a_subset(tmp_path, capsys):
    data = write_bench(tmp_path / "bench", {"s": ITEMS, "t": ITEMS})
    assert _eval(tmp_path, "--predictions", str(_preds(tmp_path, [{"id": "a", "prediction": -1}])),
                 "--data", str(data)) == 1
    assert "id 'a' is in subsets s, t; add a 'subset' field" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad ProcessBench files

@pytest.mark.parametrize("item, message", [
    ({"id": "x", "problem": "P", "steps": ["s0"]}, "missing field(s) 'label'"),
    ({"id": "x", "steps": ["s0"], "label": -1}, "missing field(s) 'problem'"),
    ({"id": "x", "problem": "P", "steps": ["s0", "s1"], "label": 2}, "'label' must be an integer in [-1, 2)"),
    ({"id": "x", "problem": "P", "steps": ["s0"], "label": -2}, "'label' must be an integer in [-1, 1)"),
    ({"id": "x", "problem": "P", "steps": [], "label": -1}, "'steps' must be a non-empty list"),
])
def test_bad_bench_item_names_the_file(tmp_path, capsys, item, message):
    data = write_bench(tmp_path / "bench", {"gsm8k": [ITEMS[0], item]})
    assert _eval(tmp_path, "--reference", "always-correct", "--data", str(data)) == 1
    err = capsys.readouterr().err
    assert message in err and "gsm8k.json" in err
    assert not (tmp_path / "out").exists()


def test_empty_subset_and_missing_subset(tmp_path, capsys):
    data = write_bench(tmp_path / "bench", {"s": ITEMS, "empty": []})
    assert _eval(tmp_path, "--reference", "first-step", "--data", str(data)) == 1
    err = capsys.readouterr().err
    assert "empty.json" in err and "has no items" in err
    (data / "empty.json").write_text("")
    assert _eval(tmp_path, "--reference", "first-step", "--data", str(data), "--subsets", "empty") == 1
    assert "has no items" in capsys.readouterr().err
    assert _eval(tmp_path, "--reference", "first-step", "--data", str(data), "--subsets", "s,nope") == 1
    assert "no subset(s) nope" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_exactly_one_mode(tmp_path, capsys):
    assert _eval(tmp_path, "--data", str(FIXTURES)) == 2
    assert _eval(tmp_path, "--reference", "oracle", "--judge", "x", "--data", str(FIXTURES)) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert _eval(tmp_path, "--reference", "oracle", "--maj", "3", "--data", str(FIXTURES)) == 2   # a config error is a usage error


def test_results_without_manifest_are_not_overwritten(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "gsm8k.jsonl").write_text("{}\n")
    assert _eval(tmp_path, "--reference", "always-correct", "--data", str(FIXTURES)) == 1
    assert "without a manifest" in capsys.readouterr().err
    assert _eval(tmp_path, "--reference", "always-correct", "--data", str(FIXTURES), "--overwrite") == 0


# --------------------------------------------------------------------------- reference judges

@pytest.fixture(scope="module")
def synth_bench(tmp_path_factory):
    test, dev = generate_bench(80, seed=11)
    return write_bench(tmp_path_factory.mktemp("synth"), {"test": test, "dev": dev})


def _reference(tmp_path, bench, name, *extra):
    out = tmp_path / name
    assert main(["eval", "processbench", "--reference", name, "--data", str(bench), "--subsets", "test",
                 "-o", str(out), "--bootstrap", "0", *extra]) == 0
    return json.loads((out / "summary.json").read_text())["subsets"]["test"], records(out / "test.jsonl")


def test_floors_and_ceiling_on_the_synthetic_bench(tmp_path, synth_bench):
    s, recs = _reference(tmp_path, synth_bench, "always-correct")
    assert (s["error_acc"], s["correct_acc"], s["f1"]) == (0.0, 100.0, 0.0)
    assert {r["prediction"] for r in recs.values()} == {-1}
    s, recs = _reference(tmp_path, synth_bench, "first-step")
    assert s["correct_acc"] == 0.0 and s["f1"] == 0.0 and {r["prediction"] for r in recs.values()} == {0}
    s, _ = _reference(tmp_path, synth_bench, "oracle")
    assert (s["error_acc"], s["correct_acc"], s["f1"]) == (100.0, 100.0, 100.0)
    s, recs = _reference(tmp_path, synth_bench, "position-prior")     # draws from DATA/dev.json
    assert 0.0 < s["f1"] < 50.0
    again, recs2 = _reference(tmp_path / "again", synth_bench, "position-prior")
    assert again == s and recs2 == recs                                 # seeded


def test_position_prior_draws_from_dev_labels_of_the_same_length():
    dev = [BenchItem("dev", str(i), "P", ("x",) * n, y) for i, (n, y) in enumerate([(3, 2), (3, 2), (4, -1), (5, 0)])]
    prior = LabelPrior(dev, seed=0)
    assert {prior.draw(BenchItem("t", str(i), "P", ("x",) * 3, -1)) for i in range(30)} == {2}
    assert {prior.draw(BenchItem("t", str(i), "P", ("x",) * 4, -1)) for i in range(30)} == {-1}
    # no dev item with 2 steps: all dev labels valid for 2 steps (-1 and 0)
    assert {prior.draw(BenchItem("t", str(i), "P", ("x",) * 2, -1)) for i in range(60)} == {-1, 0}


def test_oracle_and_prior_need_their_inputs(tmp_path, capsys):
    assert _eval(tmp_path, "--reference", "oracle", "--data", str(FIXTURES)) == 1
    assert "needs the synthetic bench's 'reference' field" in capsys.readouterr().err
    assert _eval(tmp_path, "--reference", "position-prior", "--data", str(FIXTURES)) == 1
    assert "--prior FILE" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
