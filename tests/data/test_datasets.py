"""Problem loaders on small hand-made fixtures (tests/fixtures/); errors name file and line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stepwiser.data import datasets as D
from stepwiser.data.datasets import load_problems, load_processbench
from stepwiser.errors import StepwiserError
from stepwiser.io.records import Problem, RecordError, content_hash

FIX = Path(__file__).parents[1] / "fixtures"


# --------------------------------------------------------------------------- generic JSON / JSONL

def test_jsonl_default_fields():
    ps = load_problems("jsonl", FIX / "problems.jsonl")
    assert [p.id for p in ps] == ["p1", content_hash({"problem": "What is half of one?", "answer": "\\frac{1}{2}"}),
                                  content_hash({"problem": ps[2].problem, "answer": "12"})]
    assert [p.answer for p in ps] == ["4", "\\frac{1}{2}", "12"]  # a JSON number becomes a string
    assert [p.source for p in ps] == ["problems", "hand", "problems"]  # default: the file name
    assert ps[1].extra == {"difficulty": "easy"}
    assert ps[2].solution.endswith("\\boxed{12}.") and ps[0].solution is None
    assert all(isinstance(p, Problem) for p in ps)


def test_json_list_with_field_mapping():
    ps = load_problems("json", FIX / "problems_custom.json", problem_field="question", answer_field="final")
    assert [(p.problem, p.answer) for p in ps] == [("Solve x + 3 = 5.", "2"), ("What is 10 / 4?", "\\frac{5}{2}")]
    assert ps[0].extra == {"qid": 7}
    assert ps[1].id == content_hash({"problem": "What is 10 / 4?", "answer": "\\frac{5}{2}"})


def test_missing_field_names_file_and_line():
    with pytest.raises(RecordError, match=r"problems_bad\.jsonl:2: missing field\(s\) 'answer'"):
        load_problems("jsonl", FIX / "problems_bad.jsonl")
    with pytest.raises(RecordError, match=r"problems_custom\.json:2 \(item 0\): missing field\(s\) 'answer'"):
        load_problems("json", FIX / "problems_custom.json", problem_field="question")


def test_json_list_errors_name_the_line(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('[\n {"problem": "a", "answer": "1"},\n\n {"problem": "b", "answer": ""}\n]\n')
    with pytest.raises(RecordError, match=r"p\.json:4 \(item 1\): field 'answer' must be a non-empty string"):
        load_problems("json", f)
    f.write_text('[\n {"problem": "a", "answer": "1"},\n {"problem": "b" "answer": "2"}\n]\n')
    with pytest.raises(RecordError, match=r"p\.json:3: malformed JSON"):
        load_problems("json", f)
    f.write_text('[{"problem": "a", "answer": "1"}, 5]')
    with pytest.raises(RecordError, match=r"p\.json:1 \(item 1\): expected a JSON object"):
        load_problems("json", f)


def test_duplicate_ids_are_an_error(tmp_path):
    f = tmp_path / "dup.jsonl"
    f.write_text('{"id": "a", "problem": "x", "answer": "1"}\n{"id": "a", "problem": "y", "answer": "2"}\n')
    with pytest.raises(RecordError, match=r"dup\.jsonl:2: duplicate problem id 'a' \(first at .*dup\.jsonl:1\)"):
        load_problems("jsonl", f)


def test_limit():
    assert [p.id for p in load_problems("jsonl", FIX / "problems.jsonl", limit=1)] == ["p1"]
    assert load_problems("jsonl", FIX / "problems.jsonl", limit=0) == []


# --------------------------------------------------------------------------- GSM8K, MATH, NuminaMath

def test_gsm8k_from_folder_and_file():
    ps = load_problems("gsm8k", FIX / "gsm8k")  # folder: <split>.jsonl, split "test" by default
    assert [p.answer for p in ps] == ["8", "1250", "40"]
    assert [p.id for p in ps] == ["gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/2"]
    assert ps[2].solution == "She reads 12 * 3 = 36 pages.\nThen 36 + 4 = 40 pages."  # no <<calculator>> notes
    assert ps[1].problem.startswith("A bike costs") and ps[1].source == "gsm8k"
    assert load_problems("gsm8k", FIX / "gsm8k" / "test.jsonl") == ps


def test_gsm8k_without_hashes_names_the_line(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2", "answer": "no marker"}\n')
    with pytest.raises(RecordError, match=r"test\.jsonl:2: GSM8K answer has no '#### <number>' line"):
        load_problems("gsm8k", f)


def test_math500():
    ps = load_problems("math", FIX / "math500")
    assert [p.answer for p in ps] == ["\\frac{3}{4}", "5", "\\left(-2, \\frac{4}{2}\\right)"]  # last \boxed
    assert ps[0].id == "test/prealgebra/1.json" and ps[0].extra == {"subject": "Prealgebra", "level": 1}
    assert ps[2].id == content_hash({"problem": ps[2].problem, "answer": ps[2].answer})
    assert ps[2].extra == {"type": "Algebra", "level": "Level 2"}
    assert all(p.source == "math" and "\\boxed" in p.solution for p in ps)


def test_math_without_any_answer(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text('{"problem": "p", "solution": "no box"}\n')
    with pytest.raises(RecordError, match=r"test\.jsonl:1: MATH record has no 'answer'"):
        load_problems("math", f)


def test_numina_skips_and_counts(caplog):
    skipped = []
    ps = load_problems("numina", FIX / "numina", skipped=skipped)  # folder: train.jsonl by default
    assert [p.answer for p in ps] == ["42", "2\\sqrt{2}"]
    assert ps[0].extra == {"origin": "synthetic_math"} and ps[0].source == "numina"
    assert [(Path(w).name, r) for w, r in skipped] == [
        ("train.jsonl:2", "no \\boxed{} answer in the solution"),
        ("train.jsonl:4", f"repeats the problem at {FIX / 'numina' / 'train.jsonl'}:1"),
    ]
    assert "skipped 2 numina record(s)" in caplog.text


def test_folder_without_the_split():
    with pytest.raises(StepwiserError, match=r"no train\.jsonl or train\.json .*found: test\.jsonl"):
        load_problems("gsm8k", FIX / "gsm8k", split="train")


def test_hub_path_uses_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        if name == "openai/gsm8k":
            return [{"question": "q", "answer": "x\n#### 3,000"}]
        return [{"problem": "p", "solution": "so \\boxed{7}", "answer": "7", "unique_id": "test/a/1.json"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ps = load_problems("gsm8k", "hf")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert (ps[0].id, ps[0].answer) == ("gsm8k/test/0", "3000")
    math = load_problems("math", "hf", limit=1)
    assert calls[-1] == ("HuggingFaceH4/MATH-500", None, "test")
    assert (math[0].id, math[0].answer) == ("test/a/1.json", "7")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    with pytest.raises(StepwiserError, match="could not load AI-MO/NuminaMath-CoT .*ConnectionError: offline"):
        load_problems("numina", "hf")


# --------------------------------------------------------------------------- argument validation

def test_bad_arguments():
    with pytest.raises(ValueError, match="allowed: jsonl, json, gsm8k, math, numina, processbench"):
        load_problems("csv", FIX / "problems.jsonl")
    with pytest.raises(ValueError, match="problem_field/answer_field"):
        load_problems("gsm8k", FIX / "gsm8k", problem_field="question")
    with pytest.raises(ValueError, match="path 'hf'"):
        load_problems("jsonl", "hf")
    with pytest.raises(ValueError, match="limit"):
        load_problems("jsonl", FIX / "problems.jsonl", limit=-1)
    with pytest.raises(StepwiserError, match="not found"):
        load_problems("jsonl", FIX / "nope.jsonl")


# --------------------------------------------------------------------------- ProcessBench

def test_processbench_folder():
    bench = load_processbench(FIX / "processbench")
    assert {k: [it["id"] for it in v] for k, v in bench.items()} == {
        "gsm8k": ["gsm8k-0", "gsm8k-1"], "math": ["math-0"]}
    assert bench["gsm8k"][1]["label"] == 1 and len(bench["gsm8k"][1]["steps"]) == 3
    assert list(load_processbench(FIX / "processbench", subsets=["math"])) == ["math"]
    assert list(load_processbench(FIX / "processbench", subsets="gsm8k,math")) == ["gsm8k", "math"]
    assert [len(v) for v in load_processbench(FIX / "processbench", limit=1).values()] == [1, 1]
    one = load_processbench(FIX / "processbench" / "gsm8k.json")
    assert list(one) == ["gsm8k"] and one["gsm8k"] == bench["gsm8k"]


def test_processbench_problems():
    ps = load_problems("processbench", FIX / "processbench")
    assert [(p.id, p.answer, p.source) for p in ps] == [
        ("gsm8k-0", "", "processbench/gsm8k"), ("gsm8k-1", "", "processbench/gsm8k"),
        ("math-0", "", "processbench/math")]
    assert [p.id for p in load_problems("processbench", FIX / "processbench", split="math")] == ["math-0"]


def test_processbench_unknown_subset():
    with pytest.raises(StepwiserError, match=r"no subset\(s\) omnimath \(available: gsm8k, math\)"):
        load_processbench(FIX / "processbench", subsets=["omnimath"])


def _bench_with(tmp_path, **changes) -> Path:
    folder = tmp_path / "pb"
    shutil.copytree(FIX / "processbench", folder)
    items = json.loads((folder / "gsm8k.json").read_text())
    items[1].update(changes)
    (folder / "gsm8k.json").write_text(json.dumps(items, indent=2))
    return folder


@pytest.mark.parametrize("changes, message", [
    ({"label": 3}, r"'label' must be an integer in \[-1, 3\) for 3 steps .*got 3"),
    ({"label": -2}, r"'label' must be an integer in \[-1, 3\)"),
    ({"label": True}, r"'label' must be an integer"),
    ({"steps": "one step"}, r"'steps' must be a non-empty list of strings"),
    ({"steps": []}, r"'steps' must be a non-empty list of strings"),
    ({"problem": ""}, r"field 'problem' must be a non-empty string"),
    ({"id": "gsm8k-0"}, r"duplicate id 'gsm8k-0' \(first at .*gsm8k\.json:2 \(item 0\)\)"),
])
def test_processbench_invalid_items_name_file_line_and_item(tmp_path, changes, message):
    folder = _bench_with(tmp_path, **changes)
    line = 1 + (folder / "gsm8k.json").read_text().splitlines().index("  {", 2)
    with pytest.raises(RecordError, match=rf"gsm8k\.json:{line} \(item 1\)(?: id '[^']+')?: " + message):
        load_processbench(folder)


def test_processbench_missing_field(tmp_path):
    folder = tmp_path / "pb"
    folder.mkdir()
    (folder / "s.json").write_text('[\n{"id": "a", "problem": "p", "steps": ["x"]}\n]')
    with pytest.raises(RecordError, match=r"s\.json:2 \(item 0\): missing field\(s\) 'label'"):
        load_processbench(folder)


def test_processbench_empty_subset_and_empty_folder(tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(RecordError, match=r"empty\.json: subset 'empty' has no items"):
        load_processbench(tmp_path)
    none = tmp_path / "none"
    none.mkdir()
    with pytest.raises(StepwiserError, match="no <subset>.json files"):
        load_processbench(none)


def test_processbench_hub(monkeypatch):
    import datasets

    calls = []
    item = {"id": "x-0", "generator": "g", "problem": "p", "steps": ["a", "b"], "label": 1,
            "final_answer_correct": False}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None:
                        calls.append((name, split)) or [dict(item, id=f"{split}-0")])
    bench = load_processbench("hf", subsets=["gsm8k", "omnimath"])
    assert calls == [("Qwen/ProcessBench", "gsm8k"), ("Qwen/ProcessBench", "omnimath")]
    assert bench["omnimath"][0]["id"] == "omnimath-0"
    assert D.PROCESSBENCH_SUBSETS == ("gsm8k", "math", "olympiadbench", "omnimath")
