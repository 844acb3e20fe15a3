import json

import pytest
from fakes import FakeEngine

from stepwiser.stages.annotate import AnnotateConfig, run_annotate
from stepwiser.errors import StepwiserError
from stepwiser.core.labels import label_chunks
from stepwiser.io.records import Annotation, Problem, Sample, manifest_path, read_records, write_jsonl
from stepwiser.stages.merge import merge
from stepwiser.stages.relabel import relabel


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
    # samples 0 and 1 share their first chunk "a": that Q slot is rolled out once (1 of 8 slots saved)
    assert summary["q_slots"] == 4 * 8 and summary["distinct_q_slots"] == 4 * 7
    assert summary["saved_by_sharing"] == 0.125 and summary["saved_by_early_stop"] == 0.0
    assert summary["rollouts_spent"] == 4 * (8 * 7 + 8) and summary["rollout_ratio"] == round(64 / 72, 3)


def _prefix_rollouts(engine, prefix):
    return sum(1 for text in engine.prompts if text.endswith(prefix))


def test_identical_prefixes_share_one_q_estimate_and_no_rollout_is_spent_twice(tmp_path):
    pp, sp = _inputs(tmp_path, n_problems=2)
    eng = FakeEngine(policy)
    run_annotate(_cfg(tmp_path, pp, sp), eng, progress=False)
    rows = _rows(tmp_path / "ann.jsonl")
    for pid in ("p0", "p1"):
        a, b = rows[(pid, 0)], rows[(pid, 1)]          # both start with chunk "a"
        assert a["q"][1] == b["q"][1] and a["successes"][0] == b["successes"][0] and a["rollouts"][0] == 8
        assert a["draws"]["chunks"][0] == b["draws"]["chunks"][0] and len(a["draws"]["chunks"][0]) == 8
        assert a["prefix_sharing"] is True
    # one request per distinct (problem, prefix): "<chunk>a</chunk>" once per problem, not twice
    assert _prefix_rollouts(eng, "<chunk>a</chunk>\n") == 2


def test_without_sharing_every_sample_rolls_out_its_own_prefixes(tmp_path):
    pp, sp = _inputs(tmp_path, n_problems=2)
    eng = FakeEngine(policy)
    s = run_annotate(_cfg(tmp_path, pp, sp, share_prefixes=False), eng, progress=False)
    assert _prefix_rollouts(eng, "<chunk>a</chunk>\n") == 4
    assert s["rollout_ratio"] == 1.0 and s["saved_by_sharing"] == 0.0 and s["distinct_q_slots"] == s["q_slots"]


def test_runs_from_before_prefix_sharing_resume_with_it_off(tmp_path):
    import dataclasses

    from stepwiser.io.records import RunManifest, manifest_path

    pp, sp = _inputs(tmp_path, n_problems=1)
    cfg = _cfg(tmp_path, pp, sp, share_prefixes=False)
    old = dataclasses.asdict(cfg)
    for key in ("share_prefixes", "relabel", "merge"):   # the config as a run of the previous version recorded it
        old.pop(key)
    RunManifest.open(cfg.out, "annotate", old, [cfg.samples, cfg.problems], volatile=AnnotateConfig.VOLATILE)
    run_annotate(cfg, FakeEngine(policy), progress=False)   # resumes: same hash
    assert json.loads(manifest_path(cfg.out).read_text())["resumed"] == 1
    with pytest.raises(StepwiserError, match="share_prefixes"):
        run_annotate(_cfg(tmp_path, pp, sp), FakeEngine(policy), progress=False)


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
    # the merged file's own manifest: complete, the shards' shared config (what later stages read)
    made = json.loads(manifest_path(tmp_path / "merged.jsonl").read_text())
    whole = json.loads(manifest_path(tmp_path / "all.jsonl").read_text())["config"]
    assert made["complete"] and made["summary"]["annotations"] == len(_rows(tmp_path / "all.jsonl")) and made["summary"]["shards"] == 3
    assert made["config"] == {k: v for k, v in whole.items() if k not in ("shard", "out")}
    shard_s = [json.loads(manifest_path(p).read_text())["summary"]["seconds"] for p in parts]
    assert made["summary"]["seconds"] == pytest.approx(sum(shard_s), abs=0.11)
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


def _erring_verifier(monkeypatch, marker="ERR"):
    """check_batch that answers status "error" for rollouts whose text holds `marker`."""
    from stepwiser.core import verify
    from stepwiser.core.verify import VerifyResult

    real = verify.check_batch

    def check_batch(pairs, *a, **kw):
        pairs = list(pairs)
        out = real(pairs, *a, **kw)
        return [VerifyResult("error", None, "worker died twice") if marker in resp else r
                for (resp, _), r in zip(pairs, out)]
    monkeypatch.setattr(verify, "check_batch", check_batch)


def erring_policy(text, rng, req):
    """Like `policy`, but one rollout in ten cannot be verified (its text holds ERR)."""
    if rng.random() < 0.1:
        return "<chunk>ERR \\boxed{10}</chunk>"
    return policy(text, rng, req)


def test_verifier_errors_are_neither_successes_nor_failures(tmp_path, monkeypatch):
    _erring_verifier(monkeypatch)
    pp, sp = _inputs(tmp_path)
    s = run_annotate(_cfg(tmp_path, pp, sp, max_verify_error_share=0.5, share_prefixes=False), FakeEngine(erring_policy), progress=False)
    anns = read_records(tmp_path / "ann.jsonl", Annotation)
    errors = 0
    for a in anns:
        errs = a.extra["verify_errors"]
        assert len(errs["chunks"]) == len(a.chunks) - 1
        errors += sum(errs["chunks"])
        # errors are redrawn: every chunk still has M verified rollouts, its draws hold no error
        assert all(m == 8 for m in a.rollouts[:-1]) and a.q0["rollouts"] == 8
        assert [len(d) for d in a.extra["draws"]["chunks"]] == a.rollouts[:-1]
        assert a.successes[:-1] == [sum(d) for d in a.extra["draws"]["chunks"]]
        if "BAD b" in a.chunks:  # an ERR rollout answers 10: counted as a success it would show here
            assert a.successes[2] == 0
    errors += sum({a.problem_id: a.extra["verify_errors"]["q0"] for a in anns}.values())
    assert errors > 0 and s["verify_errors_this_run"] == errors


def test_too_many_verifier_errors_stop_the_run(tmp_path, monkeypatch):
    _erring_verifier(monkeypatch)
    pp, sp = _inputs(tmp_path)
    cfg = _cfg(tmp_path, pp, sp)   # default share 0.05, the policy errs on ~10%
    with pytest.raises(StepwiserError, match=r"verifier failed .* above --max-verify-error-share 0.05"):
        run_annotate(cfg, FakeEngine(erring_policy), progress=False)
    manifest = json.loads((tmp_path / "ann.jsonl.manifest.json").read_text())
    assert manifest["complete"] is False
    with pytest.raises(ValueError, match="max_verify_error_share"):
        _cfg(tmp_path, pp, sp, max_verify_error_share=1.5)


def test_a_chunk_that_never_verifies_stops_the_run(tmp_path, monkeypatch):
    _erring_verifier(monkeypatch, marker="BAD")
    pp, sp = _inputs(tmp_path)
    with pytest.raises(StepwiserError, match=r"verifier failed .* rollouts of problem p\d sample 1 chunk"):
        run_annotate(_cfg(tmp_path, pp, sp, max_verify_error_share=1.0), FakeEngine(policy), progress=False)


def test_max_verify_error_share_keeps_the_config_hash(tmp_path):
    """Runs made before the field existed still resume (it is not hashed)."""
    import dataclasses

    from stepwiser.io.records import RunManifest
    pp, sp = _inputs(tmp_path)
    new = dataclasses.asdict(_cfg(tmp_path, pp, sp, max_verify_error_share=0.2))
    old = {k: v for k, v in new.items() if k != "max_verify_error_share"}
    assert RunManifest.config_hash(old, AnnotateConfig.VOLATILE) == RunManifest.config_hash(new, AnnotateConfig.VOLATILE)


def test_samples_of_another_problems_file_are_an_error(tmp_path):
    """Every sample skipped (its problem is not in --problems): an error naming the cause, no manifest."""
    from stepwiser.errors import EmptyResultError
    from stepwiser.io.records import manifest_path

    pp, sp = _inputs(tmp_path)
    other = tmp_path / "other.jsonl"
    write_jsonl(other, [Problem(id="q0", problem="x", answer="1", source="t")])
    cfg = AnnotateConfig(policy="fake", samples=str(sp), problems=str(other), out=str(tmp_path / "a.jsonl"))
    with pytest.raises(EmptyResultError, match=r"nothing to annotate: every sample was skipped \(problem not in "
                                               r"--problems: 16\); give the problems file"):
        run_annotate(cfg, FakeEngine(policy), progress=False)
    assert not manifest_path(tmp_path / "a.jsonl").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(EmptyResultError, match="empty.jsonl: no samples"):
        run_annotate(AnnotateConfig(policy="fake", samples=str(empty), problems=str(pp),
                                    out=str(tmp_path / "b.jsonl")), FakeEngine(policy), progress=False)
    # all skipped later (no usable reference answer): the run is not marked complete
    write_jsonl(pp, [Problem(id=f"p{i}", problem=f"problem {i}", answer="", source="t") for i in range(4)])
    with pytest.raises(EmptyResultError, match="reference answer cannot be parsed: 16"):
        run_annotate(_cfg(tmp_path, pp, sp, "c.jsonl"), FakeEngine(policy), progress=False)
    assert json.loads(manifest_path(tmp_path / "c.jsonl").read_text())["complete"] is False


def test_an_empty_shard_completes(tmp_path):
    pp, sp = _inputs(tmp_path, 1)
    parts = [run_annotate(_cfg(tmp_path, pp, sp, f"s{i}.jsonl", shard=f"{i}/2"), FakeEngine(policy), progress=False)
             for i in range(2)]
    assert sorted(p["annotations"] for p in parts) == [0, 4]
