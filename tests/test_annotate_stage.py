import json

import pytest
from fakes import FakeEngine

from stepwiser.stages.annotate import AnnotateConfig, run_annotate
from stepwiser.errors import StepwiserError
from stepwiser.core.labels import label_chunks
from stepwiser.io.records import Annotation, Problem, Sample, read_records, write_jsonl
from stepwiser.stages.relabel import merge, relabel


def policy(text, rng, req):
    """Success 0.8 from a clean prefix, 0 once a chunk marked BAD is in the prefix, 0.3 after 'MEH'."""
    p = 0.0 if "BAD" in req.prefix else 0.3 if "MEH" in req.prefix else 0.8
    ans = 10 if rng.random() < p else 11
    return f"<chunk>finish</chunk>\n<chunk>so \\boxed{{{ans}}}</chunk>"


def _inputs(tmp_path, n_problems=4):
    probs, samples = [], []
    for i in range(n_problems):
        probs.append(Problem(id=f"p{i}", problem=f"problem {i}", answer="10", source="t"))
        chunk_sets = [["a", "b", "c", "so \\boxed{10}"], ["a", "BAD b", "c", "so \\boxed{11}"],
                      ["MEH a", "b", "so \\boxed{10}"], ["so \\boxed{10}"]]
        for j, ch in enumerate(chunk_sets):
            samples.append(Sample(problem_id=f"p{i}", sample_id=j, response="\n".join(f"<chunk>{c}</chunk>" for c in ch),
                                  chunks=ch, correct=ch[-1].endswith("{10}"),
                                  sampling={"model": "fake", "temperature": 1.0, "top_p": 1.0, "max_tokens": 512}))
    pp, sp = tmp_path / "problems.jsonl", tmp_path / "samples.jsonl"
    write_jsonl(pp, probs)
    write_jsonl(sp, samples)
    return pp, sp


def _cfg(tmp_path, pp, sp, name="ann.jsonl", **kw):
    return AnnotateConfig(policy="fake", samples=str(sp), problems=str(pp), out=str(tmp_path / name),
                          rollouts=8, **kw)


def _rows(path):
    return {(o["problem_id"], o["sample_id"]): o for o in map(json.loads, open(path))}


def test_annotation_records_follow_c2(tmp_path):
    pp, sp = _inputs(tmp_path)
    summary = run_annotate(_cfg(tmp_path, pp, sp), FakeEngine(policy), progress=False)
    anns = read_records(tmp_path / "ann.jsonl", Annotation)
    assert len(anns) == 16
    for a in anns:
        H = len(a.chunks)
        assert len(a.successes) == len(a.rollouts) == H and len(a.q) == H + 1 and len(a.labels["abs_q"]) == H
        assert a.rollouts[-1] == 0 and a.successes[-1] == int(a.correct) and a.q[-1] == float(a.correct)
        assert all(m == 8 for m in a.rollouts[:-1]) and a.q0 == {**a.q0, "rollouts": 8, "source": "rollouts"}
        assert a.q == pytest.approx([a.q0["successes"] / 8] + [k / 8 for k in a.successes[:-1]] + [a.q[-1]])
        for t in ("abs_q", "rel_ratio", "rel_effective"):
            assert a.labels[t] == label_chunks(a.q, t, 0.8, 0.4, 4)
        assert a.early_stop["mode"] == "off" and a.label_params == {"gamma": 0.8, "alpha": 0.4, "n": 4}
        if "BAD b" in a.chunks:
            assert a.q[2] == 0.0 and a.labels["abs_q"][1] == 0
    # Q_0 is shared by the samples of a problem and costs M once per problem
    q0s = {(a.problem_id, a.q0["successes"]) for a in anns}
    assert len(q0s) == 4
    assert summary["full_M_budget"] == 4 * (8 * (3 + 3 + 2 + 0) + 8)
    assert summary["rollout_ratio"] == 1.0


def test_exact_early_stop_gives_identical_labels_with_fewer_rollouts(tmp_path):
    pp, sp = _inputs(tmp_path)
    run_annotate(_cfg(tmp_path, pp, sp, "off.jsonl", round_size=2), FakeEngine(policy), progress=False)
    s = run_annotate(_cfg(tmp_path, pp, sp, "exact.jsonl", round_size=2, early_stop="exact", labels=("abs_q",)),
                     FakeEngine(policy), progress=False)
    off, ex = _rows(tmp_path / "off.jsonl"), _rows(tmp_path / "exact.jsonl")
    assert off.keys() == ex.keys()
    for k in off:
        assert ex[k]["labels"]["abs_q"] == off[k]["labels"]["abs_q"]
        assert ex[k]["labels"]["rel_ratio"] is None
    assert s["rollout_ratio"] < 0.8


def test_resume_after_truncation_equals_uninterrupted(tmp_path):
    pp, sp = _inputs(tmp_path)
    run_annotate(_cfg(tmp_path, pp, sp, "full.jsonl", target_sequences=8), FakeEngine(policy), progress=False)
    cfg = _cfg(tmp_path, pp, sp, "part.jsonl", target_sequences=8)
    run_annotate(cfg, FakeEngine(policy), progress=False)
    path = tmp_path / "part.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + lines[5][:30])
    kept = "".join(lines[:5])
    run_annotate(cfg, FakeEngine(policy), progress=False)
    assert path.read_text().startswith(kept)
    assert _rows(path) == _rows(tmp_path / "full.jsonl")
    assert len(path.read_text().splitlines()) == 16


def test_shards_merge_to_the_unsharded_result(tmp_path):
    pp, sp = _inputs(tmp_path, 6)
    run_annotate(_cfg(tmp_path, pp, sp, "all.jsonl"), FakeEngine(policy), progress=False)
    parts = []
    for i in range(3):
        run_annotate(_cfg(tmp_path, pp, sp, f"s{i}.jsonl", shard=f"{i}/3"), FakeEngine(policy), progress=False)
        parts.append(str(tmp_path / f"s{i}.jsonl"))
    by_problem = [{k[0] for k in _rows(p)} for p in parts]
    assert sum(len(b) for b in by_problem) == 6 and not (by_problem[0] & by_problem[1])
    merge(parts, str(tmp_path / "merged.jsonl"), str(sp))
    assert _rows(tmp_path / "merged.jsonl") == _rows(tmp_path / "all.jsonl")
    with pytest.raises(StepwiserError, match="missing"):
        merge(parts[:2], str(tmp_path / "m2.jsonl"), str(sp))
    with pytest.raises(StepwiserError, match="appears in both"):
        merge([parts[0], parts[0]], str(tmp_path / "m3.jsonl"))


def test_relabel_from_counts_and_refusal_for_early_stop(tmp_path):
    pp, sp = _inputs(tmp_path)
    run_annotate(_cfg(tmp_path, pp, sp), FakeEngine(policy), progress=False)
    relabel(str(tmp_path / "ann.jsonl"), str(tmp_path / "re.jsonl"), gamma=1.2, alpha=0.8)
    for a in read_records(tmp_path / "re.jsonl", Annotation):
        assert a.labels["rel_ratio"] == label_chunks(a.q, "rel_ratio", gamma=1.2)
        assert a.labels["rel_effective"] == label_chunks(a.q, "rel_effective", alpha=0.8)
        assert a.label_params["gamma"] == 1.2
    run_annotate(_cfg(tmp_path, pp, sp, "ex.jsonl", early_stop="exact"), FakeEngine(policy), progress=False)
    with pytest.raises(StepwiserError, match="biased"):
        relabel(str(tmp_path / "ex.jsonl"), str(tmp_path / "re2.jsonl"))


def test_q0_from_samples_requires_matching_settings(tmp_path):
    pp, sp = _inputs(tmp_path)
    s = run_annotate(_cfg(tmp_path, pp, sp, q0="samples"), FakeEngine(policy), progress=False)
    a = read_records(tmp_path / "ann.jsonl", Annotation)[0]
    assert a.q0 == {"successes": 3, "rollouts": 4, "source": "samples"}
    assert s["full_M_budget"] == 4 * 8 * 8
    with pytest.raises(ValueError, match="temperature"):
        run_annotate(_cfg(tmp_path, pp, sp, "b.jsonl", q0="samples", temperature=0.7), FakeEngine(policy),
                     progress=False)


def test_bad_samples_are_skipped_and_counted(tmp_path):
    pp, sp = _inputs(tmp_path, 2)
    rows = [json.loads(x) for x in open(sp)]
    rows.append({**rows[0], "sample_id": 10, "response": "", "chunks": []})
    rows.append({**rows[0], "sample_id": 11, "response": "no tags \\boxed{10}", "chunks": []})
    rows.append({**rows[0], "problem_id": "p9", "sample_id": 0})
    write_jsonl(sp, rows)
    probs = [json.loads(x) for x in open(pp)] + [{"id": "p9", "problem": "x", "answer": "", "source": "t"}]
    write_jsonl(pp, probs)
    s = run_annotate(_cfg(tmp_path, pp, sp), FakeEngine(policy), progress=False)
    assert s["skipped"] == {"empty response": 1, "no chunks": 1, "reference answer cannot be parsed": 1}
    assert s["annotations"] == 8
