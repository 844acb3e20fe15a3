"""Stage `judge-data`: examples per chunk, problem-disjoint split, balancing, token window, bad input."""
import json
import random
import shutil

import pytest
from fakes import FakeEngine

from stepwiser.stages.annotate import AnnotateConfig, run_annotate
from stepwiser.cli import main
from stepwiser.errors import ConfigMismatchError, StepwiserError
from stepwiser.judges.prompts import disc_messages, judge_messages
from stepwiser.stages.judge_data import (
    JudgeDataConfig,
    balance,
    class_counts,
    count_chat_tokens,
    example_key,
    judge_item,
    load_judge_tokenizer,
    run_judge_data,
    split_problems,
)
from stepwiser.io.records import (
    Annotation,
    JudgeExample,
    Problem,
    RecordError,
    Sample,
    read_records,
    write_jsonl,
)

# problem p<i> has two samples; labels chosen so that the counts below are known exactly
LABELS = {  # (problem, sample) -> rel_effective labels, one per chunk
    ("p0", 0): [1, 1, 1], ("p0", 1): [1, 0, 0],
    ("p1", 0): [1, 1], ("p1", 1): [1, 1, 1, 1],
    ("p2", 0): [1, 1, 0], ("p2", 1): [1],
    ("p3", 0): [0, 0], ("p3", 1): [1, 1, 1],
    ("p4", 0): [1, 1, 1], ("p4", 1): [1, 0],
    ("p5", 0): [1, 1], ("p5", 1): [1, 1],
}
N_POS = sum(sum(v) for v in LABELS.values())              # 24
N_NEG = sum(len(v) - sum(v) for v in LABELS.values())     # 6


def _annotation(pid, sid, labels, types=("rel_effective", "abs_q")):
    chunks = [f"{pid} s{sid} step {i}: {i} + {i} = {2 * i}" for i in range(len(labels))]
    H = len(chunks)
    return Annotation(problem_id=pid, sample_id=sid, response="\n".join(f"<chunk>{c}</chunk>" for c in chunks),
                      chunks=chunks, correct=bool(labels[-1]), successes=[4] * (H - 1) + [labels[-1]],
                      rollouts=[8] * (H - 1) + [0], q0={"successes": 4, "rollouts": 8, "source": "rollouts"},
                      q=[0.5] * H + [float(labels[-1])],
                      labels={t: (list(labels) if t in types else None) for t in ("abs_q", "rel_ratio",
                                                                                  "rel_effective")})


def _write(tmp_path, labels=LABELS, name="ann.jsonl", **kw):
    ann = tmp_path / name
    write_jsonl(ann, [_annotation(p, s, lab, **kw) for (p, s), lab in labels.items()])
    probs = tmp_path / "problems.jsonl"
    write_jsonl(probs, [Problem(id=p, problem=f"Problem {p}: add things.", answer="SECRET-42", source="t")
                        for p in sorted({p for p, _ in labels})])
    return ann, probs


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    return load_judge_tokenizer(str(smollm2_tokenizer_dir))


def _cfg(tmp_path, ann, probs, tok_dir, out="jd", **kw):
    return JudgeDataConfig(annotations=str(ann), problems=str(probs), out=str(tmp_path / out),
                           tokenizer=str(tok_dir), **kw)


def _read(path, cls=JudgeExample):
    return read_records(path, cls) if cls else [json.loads(x) for x in path.read_text().splitlines()]


def test_one_example_per_chunk_with_history_and_key(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path)
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, val_frac=0, balance=False), tokenizer=tok)
    rows = _read(tmp_path / "jd" / "train.jsonl")
    assert len(rows) == N_POS + N_NEG == 30 and s["train"] == 30 and s["val"] == 0
    by = {(r.problem_id, r.sample_id, r.chunk_index): r for r in rows}
    anns = {(a.problem_id, a.sample_id): a for a in read_records(ann, Annotation)}
    for (pid, sid), a in anns.items():
        for i, chunk in enumerate(a.chunks):
            r = by[pid, sid, i]
            assert r.chunk == chunk and r.history == a.chunks[:i] and r.label == LABELS[pid, sid][i]
            assert r.problem == f"Problem {pid}: add things." and r.label_type == "rel_effective"
            assert r.key == example_key(pid, sid, i, "rel_effective")
            assert r.extra["chunk_style"] == "tags" and r.extra["prompt_tokens"] > 0
    assert len({r.key for r in rows}) == 30
    assert example_key("p0", 0, 1, "abs_q") != example_key("p0", 0, 1, "rel_effective")
    assert s["balance"]["all"] == {"records": 30, "positive": 24, "negative": 6, "positive_pct": 80.0,
                                   "problems": 6}
    # nothing the judge must not see is in an example's judging input
    for r in rows:
        blob = json.dumps(judge_messages(judge_item(r)))
        assert "SECRET-42" not in blob and '"label' not in blob


def test_balancing_exact_counts_and_seeded(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path)
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, val_frac=0), tokenizer=tok)
    rows = _read(tmp_path / "jd" / "train.jsonl")
    assert sum(r.label for r in rows) == 6 and sum(1 - r.label for r in rows) == 6      # 50/50, minority kept
    assert s["balance"]["train"]["records"] == 30 and s["balance"]["train_balanced"]["records"] == 12
    assert s["balance"]["train_balanced"]["positive_pct"] == 50.0
    order = [(r.problem_id, r.sample_id, r.chunk_index) for r in rows]
    assert order == sorted(order, key=lambda k: list(LABELS).index(k[:2]) * 10 + k[2])  # file order kept
    # same seed -> same selection; other seeds -> other selections of the positives
    again = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="jd2", val_frac=0), tokenizer=tok)
    assert again["train"] == 12 and (tmp_path / "jd2" / "train.jsonl").read_text() == \
        (tmp_path / "jd" / "train.jsonl").read_text()
    with pytest.raises(ConfigMismatchError, match="seed"):   # C7: another config into the same output
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="jd2", val_frac=0, seed=9),
                       tokenizer=tok)
    picks = set()
    for seed in range(1, 6):
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out=f"s{seed}", val_frac=0, seed=seed),
                       tokenizer=tok)
        picks.add(tuple(r.key for r in _read(tmp_path / f"s{seed}" / "train.jsonl")))
    assert len(picks) > 1


def test_balance_function_minority_positive():
    ex = [JudgeExample(key=str(i), problem_id="p", chunk_index=i, label=int(i < 3)) for i in range(10)]
    out = balance(ex, seed=0)
    assert [e.label for e in out].count(1) == 3 and [e.label for e in out].count(0) == 3
    assert all(e in out for e in ex[:3])
    assert balance(ex, seed=0) == out
    with pytest.raises(StepwiserError, match="one class only.*--no-balance"):
        balance([e for e in ex if e.label], seed=0)


def test_split_is_by_problem_and_seeded():
    ids = [f"q{i}" for i in range(20)]
    val = split_problems(ids * 3, 0.1, seed=0)
    assert len(val) == 2 and val <= set(ids)
    assert split_problems(reversed(ids), 0.1, seed=0) == val           # order of appearance does not matter
    assert len({frozenset(split_problems(ids, 0.25, s)) for s in range(6)}) > 1
    assert len(split_problems(ids, 0.25, 0)) == 5
    assert split_problems(ids, 0.0, 0) == set()
    assert len(split_problems(ids[:3], 0.01, 0)) == 1 and len(split_problems(ids[:3], 0.9, 0)) == 2
    with pytest.raises(StepwiserError, match="at least 2 problems"):
        split_problems(["only"], 0.1, 0)


def test_split_files_are_problem_disjoint_and_val_unbalanced(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path)
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, val_frac=0.34), tokenizer=tok)
    train, val = _read(tmp_path / "jd" / "train.jsonl"), _read(tmp_path / "jd" / "val.jsonl")
    val_ids = split_problems([f"p{i}" for i in range(6)], 0.34, 0)
    assert len(val_ids) == 2 and s["val_problems"] == 2
    assert {r.problem_id for r in val} == val_ids and not ({r.problem_id for r in train} & val_ids)
    # validation keeps every chunk of its problems (not balanced)
    want_val = [(p, sid, i, y) for (p, sid), lab in LABELS.items() if p in val_ids for i, y in enumerate(lab)]
    assert sorted((r.problem_id, r.sample_id, r.chunk_index, r.label) for r in val) == sorted(want_val)
    tr = [y for (p, _), lab in LABELS.items() if p not in val_ids for y in lab]
    assert len(train) == 2 * min(sum(tr), len(tr) - sum(tr))
    assert s["balance"]["val"] == class_counts(val)


def test_disc_format_same_split_no_balancing(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path)
    run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="sw", val_frac=0.34), tokenizer=tok)
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="disc", val_frac=0.34,
                            format="disc"), tokenizer=tok)
    train, val = _read(tmp_path / "disc" / "train.jsonl", None), _read(tmp_path / "disc" / "val.jsonl", None)
    assert len(train) + len(val) == len(LABELS) and s["train"] + s["val"] == 12
    assert "train_balanced" not in s["balance"]
    sw_val = {r.problem_id for r in _read(tmp_path / "sw" / "val.jsonl")}
    assert {r["problem_id"] for r in val} == sw_val
    anns = {(a.problem_id, a.sample_id): a for a in read_records(ann, Annotation)}
    for r in train + val:
        a = anns[r["problem_id"], r["sample_id"]]
        assert r["chunks"] == a.chunks and r["labels"] == LABELS[a.problem_id, a.sample_id]
        assert r["problem"] == f"Problem {a.problem_id}: add things." and "SECRET-42" not in json.dumps(r)
        n = count_chat_tokens([disc_messages(r["problem"], r["chunks"], r["labels"])], tok, False)[0]
        assert r["prompt_tokens"] == n
    assert s["balance"]["all"]["positive"] == N_POS and s["balance"]["all"]["records"] == 12


def test_token_window_counts_the_prompt_the_engine_sees(tmp_path, tok, smollm2_tokenizer_dir, tiny_model_dir):
    from stepwiser.engines import Request
    from stepwiser.engines.hf import HFEngine

    ann, probs = _write(tmp_path)
    run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="all", val_frac=0, balance=False),
                   tokenizer=tok)
    rows = _read(tmp_path / "all" / "train.jsonl")
    engine = HFEngine(str(tiny_model_dir), device="cpu")
    seen = [len(ids) for ids in engine.encode([Request(messages=judge_messages(judge_item(r))) for r in rows])]
    assert [r.extra["prompt_tokens"] for r in rows] == seen
    lengths = sorted(seen)
    lo, hi = lengths[5], lengths[-6]
    assert lo < hi
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="win", val_frac=0, balance=False,
                            min_tokens=lo, max_tokens=hi), tokenizer=tok)
    kept = _read(tmp_path / "win" / "train.jsonl")
    assert all(lo <= r.extra["prompt_tokens"] <= hi for r in kept)
    assert s["dropped_short"] == sum(n < lo for n in seen) and s["dropped_long"] == sum(n > hi for n in seen)
    assert len(kept) == 30 - s["dropped_short"] - s["dropped_long"] and s["max_prompt_tokens"] <= hi
    with pytest.raises(StepwiserError, match="outside the token window"):
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="none", max_tokens=10), tokenizer=tok)


def test_real_annotations_from_the_annotate_stage(tmp_path, tok, smollm2_tokenizer_dir):
    """Annotations made by `annotate` (fake policy) go through, and their chunk style is picked up."""
    probs = [Problem(id=f"r{i}", problem=f"Compute {i} + 10.", answer="77", source="t") for i in range(4)]
    chunk_sets = [["a", "b", "so \\boxed{77}"], ["a", "BAD", "so \\boxed{12}"]]
    samples = [Sample(problem_id=p.id, sample_id=j, response="\n".join(f"<chunk>{c}</chunk>" for c in ch),
                      chunks=ch, correct=ch[-1].endswith("{77}")) for p in probs for j, ch in enumerate(chunk_sets)]
    pp, sp = tmp_path / "problems.jsonl", tmp_path / "samples.jsonl"
    write_jsonl(pp, probs)
    write_jsonl(sp, samples)

    def policy(text, rng, req):
        p = 0.0 if "BAD" in req.prefix else 0.7
        return f"<chunk>so \\boxed{{{77 if rng.random() < p else 13}}}</chunk>"

    run_annotate(AnnotateConfig(policy="fake", samples=str(sp), problems=str(pp), out=str(tmp_path / "ann.jsonl"),
                                rollouts=8, chunk_style="blank"), FakeEngine(policy), progress=False)
    s = run_judge_data(_cfg(tmp_path, tmp_path / "ann.jsonl", pp, smollm2_tokenizer_dir, label="abs_q",
                            val_frac=0.25), tokenizer=tok)
    assert s["chunk_style"] == "blank" and s["val_problems"] == 1
    anns = read_records(tmp_path / "ann.jsonl", Annotation)
    assert s["balance"]["all"]["records"] == sum(len(a.chunks) for a in anns) == 24
    assert s["balance"]["all"]["negative"] == sum(a.labels["abs_q"].count(0) for a in anns) > 0
    with pytest.raises(ValueError, match="annotated with chunk style 'blank'"):
        run_judge_data(_cfg(tmp_path, tmp_path / "ann.jsonl", pp, smollm2_tokenizer_dir, out="x",
                            chunk_style="tags"), tokenizer=tok)


# --------------------------------------------------------------------------- bad input

def test_missing_or_null_label_type_names_file_and_types(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path, types=("abs_q",))
    with pytest.raises(StepwiserError, match=r"ann.jsonl:1: no 'rel_effective' labels.*present in .*: abs_q"):
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir), tokenizer=tok)
    rows = [json.loads(x) for x in ann.read_text().splitlines()]
    for r in rows:
        del r["labels"]["rel_effective"]
    write_jsonl(ann, rows)
    with pytest.raises(StepwiserError, match=r"no 'rel_effective' labels.*abs_q"):
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir), tokenizer=tok)
    assert not (tmp_path / "jd").exists()          # nothing written, no manifest left to block a retry
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, label="abs_q"), tokenizer=tok)
    assert s["train"] > 0


def test_one_class_label_set_is_an_error_unless_no_balance(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path, {("p0", 0): [1, 1], ("p1", 0): [1], ("p2", 0): [1, 1, 1]})
    with pytest.raises(StepwiserError, match=r"ann.jsonl: all 6 'rel_effective' labels are positive.*impossible"):
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir), tokenizer=tok)
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, balance=False), tokenizer=tok)
    assert "one class only" in s["warning"]
    # both classes in the file but only one left in the train split
    ann, probs = _write(tmp_path, {("p0", 0): [1, 1], ("p1", 0): [0, 1]}, name="two.jsonl")
    split = split_problems(["p0", "p1"], 0.5, 0)
    seed = 0 if split == {"p1"} else 1
    assert split_problems(["p0", "p1"], 0.5, seed) == {"p1"}
    with pytest.raises(StepwiserError, match="one class only"):
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="t", val_frac=0.5, seed=seed),
                       tokenizer=tok)


def test_malformed_and_inconsistent_annotations_name_file_and_line(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path)
    lines = ann.read_text().splitlines()
    cfg = _cfg(tmp_path, ann, probs, smollm2_tokenizer_dir)
    ann.write_text("\n".join(lines[:3] + ['{"problem_id": "p9", "sample_id": 0'] + lines[3:]) + "\n")
    with pytest.raises(RecordError, match=r"ann.jsonl:4: malformed JSON"):
        run_judge_data(cfg, tokenizer=tok)
    bad = json.loads(lines[2])
    bad["labels"]["rel_effective"] = bad["labels"]["rel_effective"][:-1]
    ann.write_text("\n".join(lines[:2] + [json.dumps(bad)] + lines[3:]) + "\n")
    with pytest.raises(RecordError, match=r"ann.jsonl:3: labels\['rel_effective'\] must be a list of 2"):
        run_judge_data(cfg, tokenizer=tok)
    ann.write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(RecordError, match=rf"ann.jsonl:{len(lines) + 1}: sample p0/0 already appears on line 1"):
        run_judge_data(cfg, tokenizer=tok)
    ann.write_text("\n".join(lines) + "\n")
    write_jsonl(probs, [r for r in map(json.loads, probs.read_text().splitlines()) if r["id"] != "p3"])
    with pytest.raises(StepwiserError, match="not in .*problems.jsonl.*'p3'"):
        run_judge_data(cfg, tokenizer=tok)
    ann.write_text("")
    with pytest.raises(StepwiserError, match="no annotations"):
        run_judge_data(cfg, tokenizer=tok)


def test_tokenizer_without_chat_template_is_a_clear_error(tmp_path, smollm2_tokenizer_dir):
    plain = tmp_path / "plain-tok"
    shutil.copytree(smollm2_tokenizer_dir, plain)
    (plain / "chat_template.jinja").unlink()
    ann, probs = _write(tmp_path)
    with pytest.raises(StepwiserError, match="plain-tok.*has no chat template"):
        run_judge_data(_cfg(tmp_path, ann, probs, plain))


def test_config_validation():
    with pytest.raises(ValueError, match="unknown label method"):
        JudgeDataConfig(annotations="a", problems="p", out="o", label="abs")
    with pytest.raises(ValueError, match="format must be one of stepwise, disc"):
        JudgeDataConfig(annotations="a", problems="p", out="o", format="prm")
    with pytest.raises(ValueError, match="val_frac"):
        JudgeDataConfig(annotations="a", problems="p", out="o", val_frac=1.0)
    with pytest.raises(ValueError, match="min_tokens <= max_tokens"):
        JudgeDataConfig(annotations="a", problems="p", out="o", min_tokens=10, max_tokens=5)


# --------------------------------------------------------------------------- CLI and manifest (C7)

def test_cli_table_manifest_resume_and_refusals(tmp_path, smollm2_tokenizer_dir, capsys):
    ann, probs = _write(tmp_path)
    out = tmp_path / "cli"
    args = ["judge-data", "--annotations", str(ann), "--problems", str(probs), "--out", str(out),
            "--tokenizer", str(smollm2_tokenizer_dir), "--val-frac", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "class balance" in text and "train (balanced)" in text and "80.0" in text and "50.0" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["stage"] == "judge-data"
    assert manifest["config"]["label"] == "rel_effective" and len(manifest["inputs"]) == 2
    assert manifest["summary"]["train"] == 12
    before = (out / "train.jsonl").read_text()
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out
    assert main(args + ["--seed", "3"]) == 1
    assert "--overwrite" in capsys.readouterr().err and (out / "train.jsonl").read_text() == before
    assert main(args + ["--seed", "3", "--overwrite"]) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 3
    assert main(args[:-2] + ["--val-frac", "1.5"]) == 2
    assert main(args + ["--label", "q"]) == 2
    capsys.readouterr()
    # a folder holding outputs this stage did not write is refused
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train.jsonl").write_text("mine\n")
    assert main(args[:6] + [str(foreign)] + args[7:]) == 1
    assert "without a manifest" in capsys.readouterr().err and (foreign / "train.jsonl").read_text() == "mine\n"


def test_cli_bad_label_type_exits_1_with_message(tmp_path, smollm2_tokenizer_dir, capsys):
    ann, probs = _write(tmp_path, types=("abs_q",))
    rc = main(["judge-data", "--annotations", str(ann), "--problems", str(probs), "--out", str(tmp_path / "o"),
               "--tokenizer", str(smollm2_tokenizer_dir)])
    err = capsys.readouterr().err
    assert rc == 1 and "no 'rel_effective' labels" in err and "abs_q" in err


def test_balance_is_random_over_majority_only():
    rng = random.Random(0)
    ex = [JudgeExample(key=str(i), problem_id="p", chunk_index=i, label=int(rng.random() < 0.7)) for i in range(200)]
    out = balance(ex, seed=4)
    n_neg = sum(1 - e.label for e in ex)
    assert len(out) == 2 * n_neg and sum(e.label for e in out) == n_neg
    assert [e.key for e in out] == [e.key for e in ex if e in out]


def _shared(pid, sid, chunks, labels):
    a = _annotation(pid, sid, labels)
    a.chunks, a.response = list(chunks), "\n".join(f"<chunk>{c}</chunk>" for c in chunks)
    return a


def test_identical_judge_inputs_are_merged_by_majority(tmp_path, tok, smollm2_tokenizer_dir):
    """Samples sharing a prefix give identical judge inputs: one example each, majority label, ties dropped."""
    anns = [_shared("p0", 0, ["x", "y0"], [1, 1]), _shared("p0", 1, ["x", "y1"], [0, 0]),
            _shared("p0", 2, ["x", "y2"], [1, 0]),           # "x" in p0: 1, 0, 1 -> 1 (conflict)
            _shared("p1", 0, ["x", "z0"], [1, 1]), _shared("p1", 1, ["x", "z1"], [0, 1]),  # "x" in p1: tie
            _shared("p2", 0, ["a", "b"], [0, 1]), _shared("p2", 1, ["a", "b"], [0, 1])]   # same sample twice
    ann, probs = tmp_path / "ann.jsonl", tmp_path / "problems.jsonl"
    write_jsonl(ann, anns)
    write_jsonl(probs, [Problem(id=p, problem=f"Problem {p}.", answer="1", source="t") for p in ("p0", "p1", "p2")])
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, val_frac=0, balance=False), tokenizer=tok)
    rows = _read(tmp_path / "jd" / "train.jsonl")
    got = sorted((r.problem_id, tuple(r.history), r.chunk, r.label) for r in rows)
    assert got == sorted([("p0", (), "x", 1), ("p0", ("x",), "y0", 1), ("p0", ("x",), "y1", 0),
                          ("p0", ("x",), "y2", 0), ("p1", ("x",), "z0", 1), ("p1", ("x",), "z1", 1),
                          ("p2", (), "a", 0), ("p2", ("a",), "b", 1)])
    assert s["dedupe"] == {"inputs": 8, "duplicates_merged": 4, "conflicts": 2, "dropped_ties": 2}
    assert s["balance"]["all"]["records"] == 14 and s["balance"]["deduped"]["records"] == 8
    assert len({r.key for r in rows}) == 8


def test_no_training_example_left_is_an_error(tmp_path, tok, smollm2_tokenizer_dir):
    """The token window can empty the train split: an error, not a complete run with no data."""
    from stepwiser.errors import EmptyResultError

    labels = {("p0", 0): [1, 0], ("p1", 0): [1, 0]}
    ann, probs = _write(tmp_path, labels)
    split = split_problems(["p0", "p1"], 0.5, 0)
    train_pid = ({"p0", "p1"} - split).pop()
    write_jsonl(probs, [Problem(id=p, problem=("long " * 300 if p == train_pid else "") + f"Problem {p}.",
                                answer="1", source="t") for p in ("p0", "p1")])
    val_pid = split.pop()
    short = [judge_messages(judge_item({"problem": f"Problem {val_pid}.", "history": h, "chunk": c}))
             for h, c in (([], f"{val_pid} s0 step 0: 0 + 0 = 0"), ([f"{val_pid} s0 step 0: 0 + 0 = 0"],
                                                                   f"{val_pid} s0 step 1: 1 + 1 = 2"))]
    window = max(count_chat_tokens(short, tok, True))
    with pytest.raises(EmptyResultError, match="no training example: all 2 examples in the token window belong"):
        run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, val_frac=0.5, max_tokens=window),
                       tokenizer=tok)


# --------------------------------------------------------------------------- balancing by class and position

def _ex(i, label, n=0):
    return JudgeExample(key=f"k{i}-{label}-{n}", problem_id=f"p{n}", sample_id=0, chunk_index=i, problem="P",
                        history=[], chunk=f"c{i}{n}", label=label, label_type="rel_effective")


def test_position_balancing_exact_counts(tmp_path, tok, smollm2_tokenizer_dir):
    ann, probs = _write(tmp_path)
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, val_frac=0, balance_by="class_position"),
                       tokenizer=tok)
    rows = _read(tmp_path / "jd" / "train.jsonl")
    # chunk index 0: 11 positive / 1 negative, 1: 8 / 3, 2: 4 / 2, 3: 1 / 0 (dropped: one class only)
    assert s["positions"] == {"0": {"positive": 11, "negative": 1, "kept": 2},
                              "1": {"positive": 8, "negative": 3, "kept": 6},
                              "2": {"positive": 4, "negative": 2, "kept": 4},
                              "3": {"positive": 1, "negative": 0, "kept": 0}}
    for i, n in ((0, 1), (1, 3), (2, 2), (3, 0)):
        at = [r.label for r in rows if r.chunk_index == i]
        assert sum(at) == n and len(at) == 2 * n
    assert s["train"] == 12 and s["balance"]["train_balanced"]["positive_pct"] == 50.0
    assert s["position_baseline"] == {"train": None, "train_before_balancing": None}   # no validation split
    # the default (class) leaves the hash of earlier outputs alone: the same output is complete again
    s = run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir, out="jd3", val_frac=0), tokenizer=tok)
    assert "positions" not in s and "balance_by" not in json.loads(
        (tmp_path / "jd3" / "manifest.json").read_text())["config"]


def test_position_balancing_is_seeded_and_needs_both_classes_somewhere():
    from stepwiser.stages.judge_balance import balance_by_position

    exs = [_ex(0, 1, n) for n in range(5)] + [_ex(0, 0, n) for n in range(2)] + [_ex(1, 0, n) for n in range(3)]
    kept, report = balance_by_position(exs, seed=0)
    assert report == {0: {"positive": 5, "negative": 2, "kept": 4}, 1: {"positive": 0, "negative": 3, "kept": 0}}
    assert [e.key for e in kept] == [e.key for e in exs if e in kept]    # file order
    assert kept == balance_by_position(exs, seed=0)[0]
    assert {tuple(e.key for e in balance_by_position(exs, seed=s)[0]) for s in range(6)} != {tuple(e.key for e in kept)}
    with pytest.raises(StepwiserError, match="balance-by class"):
        balance_by_position([_ex(0, 1), _ex(1, 0)], seed=0)


def test_position_only_baseline_is_exact():
    from stepwiser.stages.judge_balance import position_baseline

    # train: index 0 mostly positive, index 1 mostly negative, index 2 a tie (-> the overall majority; 5 / 5 -> 0)
    train = ([_ex(0, 1, n) for n in range(3)] + [_ex(0, 0, 9)] + [_ex(1, 1, 9)] + [_ex(1, 0, n) for n in range(3)]
             + [_ex(2, 1, 8), _ex(2, 0, 8)])
    val = [_ex(0, 1, 20), _ex(0, 1, 21), _ex(1, 0, 20), _ex(1, 0, 21), _ex(0, 0, 22), _ex(7, 1, 20)]
    got = position_baseline(train, val)
    # positives: idx 0, 0 right, idx 7 (unseen -> 0) wrong: 2/3; negatives: idx 1, 1 right, idx 0 wrong: 2/3
    assert got == {"val_balanced_accuracy": round(2 / 3, 4), "predicts": {"0": 1, "1": 0, "2": 0}, "otherwise": 0}
    assert position_baseline(train, [_ex(0, 1, 30), _ex(1, 0, 30)])["val_balanced_accuracy"] == 1.0
    assert position_baseline(train, []) is None


def test_outputs_do_not_depend_on_the_annotation_file_order(tmp_path, tok, smollm2_tokenizer_dir):
    """A resumed `annotate` appends the records it had left in another order: judge-data sorts them first."""
    ann, probs = _write(tmp_path)
    run_judge_data(_cfg(tmp_path, ann, probs, smollm2_tokenizer_dir), tokenizer=tok)
    shuffled = dict(sorted(LABELS.items(), key=lambda kv: (kv[0][1], kv[0][0]), reverse=True))
    ann2, _ = _write(tmp_path, labels=shuffled, name="ann-shuffled.jsonl")
    assert ann2.read_text() != ann.read_text()
    run_judge_data(_cfg(tmp_path, ann2, probs, smollm2_tokenizer_dir, out="jd-shuffled"), tokenizer=tok)
    for split in ("train", "val"):
        assert (tmp_path / "jd" / f"{split}.jsonl").read_text() == \
            (tmp_path / "jd-shuffled" / f"{split}.jsonl").read_text()
