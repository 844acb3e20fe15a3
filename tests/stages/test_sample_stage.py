import json

import pytest
from fakes import FakeEngine

from stepwiser.errors import ConfigMismatchError
from stepwiser.io.records import Problem, Sample, read_records, write_jsonl
from stepwiser.stages.sample import SampleConfig, run_sample


def _problems(tmp_path, k=5):
    p = tmp_path / "problems.jsonl"
    write_jsonl(p, [Problem(id=f"p{i}", problem=f"What is {i} + {i}?", answer=str(2 * i), source="t")
                    for i in range(k)])
    return p


def policy(text, rng, req):
    i = int(text.split("What is ")[1].split(" ")[0])
    ans = 2 * i if rng.random() < 0.5 else 2 * i + 1
    return f"<chunk>{i} + {i} = {ans}</chunk>\n<chunk>So \\boxed{{{ans}}}</chunk>"


def test_sample_writes_verified_chunked_records(tmp_path):
    probs = _problems(tmp_path)
    out = tmp_path / "samples.jsonl"
    cfg = SampleConfig(policy="fake", problems=str(probs), out=str(out), n=4, batch_problems=2,
                       filtered_out=str(tmp_path / "filtered.jsonl"))
    summary = run_sample(cfg, FakeEngine(policy), progress=False)
    samples = read_records(out, Sample)
    assert len(samples) == 20
    for s in samples:
        ans = int(s.response.split("\\boxed{")[1].split("}")[0])
        i = int(s.problem_id[1:])
        assert s.correct == (ans == 2 * i)
        assert len(s.chunks) == 2 and s.chunks[1].startswith("So ")
        assert s.sampling["temperature"] == 1.0 and s.sampling["model"] == "fake"
    assert summary["samples"] == 20
    assert summary["pass@1"] == pytest.approx(100 * sum(s.correct for s in samples) / 20, abs=0.01)
    mixed = {s.problem_id for s in samples if s.correct} & {s.problem_id for s in samples if not s.correct}
    assert {p.id for p in read_records(tmp_path / "filtered.jsonl", Problem)} == mixed


def test_sample_resume_equals_uninterrupted(tmp_path):
    probs = _problems(tmp_path, 6)
    full = tmp_path / "full.jsonl"
    run_sample(SampleConfig(policy="fake", problems=str(probs), out=str(full), n=3), FakeEngine(policy),
               progress=False)
    part = tmp_path / "part.jsonl"
    cfg = SampleConfig(policy="fake", problems=str(probs), out=str(part), n=3, batch_problems=2)
    run_sample(cfg, FakeEngine(policy), progress=False)
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:7]) + lines[7][:10])  # killed mid-record
    eng = FakeEngine(policy)
    run_sample(cfg, eng, progress=False)
    assert sum(eng.calls) == 4  # only problems with missing samples were regenerated
    key = lambda o: (o["problem_id"], o["sample_id"])
    a = sorted((json.loads(x) for x in full.read_text().splitlines()), key=key)
    b = sorted((json.loads(x) for x in part.read_text().splitlines()), key=key)
    assert a == b


def test_sample_refuses_changed_config(tmp_path):
    probs = _problems(tmp_path, 2)
    out = tmp_path / "s.jsonl"
    run_sample(SampleConfig(policy="fake", problems=str(probs), out=str(out), n=2), FakeEngine(policy),
               progress=False)
    with pytest.raises(ConfigMismatchError, match="n"):
        run_sample(SampleConfig(policy="fake", problems=str(probs), out=str(out), n=3), FakeEngine(policy),
                   progress=False)


def test_empty_problems_file_is_an_error_not_a_complete_run(tmp_path):
    from stepwiser.errors import EmptyResultError
    from stepwiser.io.records import manifest_path

    probs = tmp_path / "problems.jsonl"
    probs.write_text("")
    out = tmp_path / "samples.jsonl"
    with pytest.raises(EmptyResultError, match="problems.jsonl: no problems, nothing to sample"):
        run_sample(SampleConfig(policy="fake", problems=str(probs), out=str(out)), FakeEngine(policy), progress=False)
    assert not manifest_path(out).exists()


def test_a_failed_first_run_does_not_block_the_corrected_rerun(tmp_path):
    """A wrong --policy fails before any record: the rerun with the right one needs no --overwrite."""
    from stepwiser.errors import StepwiserError

    probs = _problems(tmp_path, 2)
    out = tmp_path / "samples.jsonl"

    def wrong_policy():
        raise StepwiserError("wrong/path: model not found")
    with pytest.raises(StepwiserError, match="model not found"):
        run_sample(SampleConfig(policy="wrong/path", problems=str(probs), out=str(out)), wrong_policy,
                   progress=False)
    s = run_sample(SampleConfig(policy="fake", problems=str(probs), out=str(out), n=2), FakeEngine(policy),
                   progress=False)
    assert s["samples"] == 4 and len(read_records(out, Sample)) == 4
    with pytest.raises(ConfigMismatchError):   # once it holds records, another config is refused
        run_sample(SampleConfig(policy="other", problems=str(probs), out=str(out), n=2), FakeEngine(policy),
                   progress=False)
