import json

from fakes import FakeEngine

from stepwiser.io.records import Problem, Sample, SFTExample, read_records, write_jsonl
from stepwiser.stages.segment import SegmentConfig, clean_teacher_output, run_segment, select_responses

ORIG = "First 3 * 4 = 12.\nThen 12 + 1 = 13.\n\nSo the answer is \\boxed{13}."


def _inputs(tmp_path):
    probs = tmp_path / "p.jsonl"
    write_jsonl(probs, [Problem(id=f"p{i}", problem=f"problem {i}", answer="13", source="t") for i in range(3)])
    samples = tmp_path / "s.jsonl"
    rows = []
    for i in range(3):
        for j in range(6):
            rows.append(Sample(problem_id=f"p{i}", sample_id=j, response=ORIG + ("" if i < 2 else f" v{j}"),
                               chunks=[], correct=j != 1))
    write_jsonl(samples, rows)
    return probs, samples


def teacher(text, rng, req):
    original = text.split("Solution to segment:\n")[1].split("\n<|assistant|>")[0].rstrip("\n")
    if "problem 0" in text:  # always exact
        a, b = original.split("\n\n")
        return f"<chunk>{a}</chunk>\n\n<chunk>{b}</chunk>"
    if "problem 1" in text:  # changes a character unless lucky
        return f"```\n<chunk>{original}</chunk>\n```" if rng.random() < 0.4 else f"<chunk>{original}!</chunk>"
    return f"<chunk>{original.replace('12', '13')}</chunk>"  # never exact


def test_segment_accepts_only_exact_reconstructions(tmp_path):
    probs, samples = _inputs(tmp_path)
    out = tmp_path / "sft.jsonl"
    cfg = SegmentConfig(teacher="fake", samples=str(samples), problems=str(probs), out=str(out), attempts=8,
                        max_per_problem=4)
    summary = run_segment(cfg, FakeEngine(teacher), progress=False)
    ok = read_records(out, SFTExample)
    failed = [json.loads(x) for x in open(str(out) + ".failed.jsonl")]
    assert summary["responses"] == 12  # 4 correct per problem
    assert {e.problem_id for e in ok} >= {"p0"}
    assert all(e.problem_id != "p2" for e in ok)
    assert {f["problem_id"] for f in failed} >= {"p2"}
    for e in ok:
        assert e.source == "segment" and e.response.startswith("<chunk>")
        assert e.response.replace("<chunk>", "").replace("</chunk>", "").replace("\n", "") == \
            ORIG.replace("\n", "")
    p0 = [e for e in ok if e.problem_id == "p0"]
    assert all(e.extra["n_chunks"] == 2 and e.extra["attempt"] == 1 for e in p0)
    assert summary["acceptance_rate_pct"] == round(100 * len(ok) / 12, 2)
    # a rerun does nothing new
    eng = FakeEngine(teacher)
    run_segment(cfg, eng, progress=False)
    assert eng.calls == []


def test_select_responses_caps_per_problem():
    rows = [Sample(problem_id="a", sample_id=j, response="r", chunks=[], correct=j % 2 == 0) for j in range(10)]
    chosen = select_responses(rows, 2)
    assert [s.sample_id for s in chosen] == [0, 2]


def test_clean_teacher_output_strips_fence_only():
    assert clean_teacher_output("```\n<chunk>a</chunk>\n```") == "<chunk>a</chunk>"
    assert clean_teacher_output("<chunk>a</chunk>") == "<chunk>a</chunk>"


def test_nothing_to_segment_is_an_error(tmp_path):
    import pytest

    from stepwiser.errors import EmptyResultError

    _, samples = _inputs(tmp_path)
    other = tmp_path / "other.jsonl"
    write_jsonl(other, [Problem(id="q", problem="q", answer="1", source="t")])
    cfg = SegmentConfig(teacher="fake", samples=str(samples), problems=str(other), out=str(tmp_path / "o.jsonl"))
    with pytest.raises(EmptyResultError, match=r"no response to segment \(18 samples, 15 correct, 0 of those with "
                                               r"their problem in .*other.jsonl\); give the problems file"):
        run_segment(cfg, FakeEngine(teacher), progress=False)
    # the teacher fails on every response: not a complete run
    only_p2 = tmp_path / "p2.jsonl"
    write_jsonl(only_p2, [Problem(id="p2", problem="problem 2", answer="13", source="t")])
    cfg = SegmentConfig(teacher="fake", samples=str(samples), problems=str(only_p2), out=str(tmp_path / "f.jsonl"),
                        attempts=2)
    with pytest.raises(EmptyResultError, match=r"f.jsonl: the run produced no records: the teacher failed on all 4"):
        run_segment(cfg, FakeEngine(teacher), progress=False)
