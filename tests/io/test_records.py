import json
import os
import subprocess
import sys

import pytest

from stepwiser.errors import ConfigMismatchError, EmptyResultError
from stepwiser.io.records import (
    JsonlWriter,
    Problem,
    RecordError,
    RunManifest,
    Sample,
    iter_jsonl,
    manifest_path,
    parse_record,
    read_records,
    repair_truncated_tail,
    write_jsonl,
)


def key(o):
    return o["id"]


def test_writer_appends_flushes_and_knows_done(tmp_path):
    p = tmp_path / "out.jsonl"
    with JsonlWriter(p, key) as w:
        w.write({"id": "a", "x": 1})
        # flushed: another reader sees it before close
        assert p.read_text().count("\n") == 1
        w.write(Problem(id="b", problem="2+2", answer="4", source="t"))
    w2 = JsonlWriter(p, key)
    assert w2.done == {"a", "b"} and "a" in w2
    with pytest.raises(RecordError, match="already written"):
        w2.write({"id": "a"})
    w2.close()


def test_truncated_last_line_is_dropped_on_resume(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "tru')
    w = JsonlWriter(p, key)
    assert w.dropped_bytes == len('{"id": "c", "tru')
    assert w.done == {"a", "b"}
    w.write({"id": "c", "ok": True})
    w.close()
    lines = p.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["a", "b", "c"]
    assert json.loads(lines[-1])["ok"] is True


def test_truncated_but_parseable_tail_is_also_dropped(tmp_path):
    # cut exactly before the newline: the record may be incomplete in intent; we redo it
    p = tmp_path / "out.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}')
    assert repair_truncated_tail(p) == len('{"id": "b"}')
    assert p.read_text() == '{"id": "a"}\n'
    assert repair_truncated_tail(p) == 0


def test_kill_mid_write_then_resume(tmp_path):
    """A real process killed with SIGKILL while writing: rerun completes with each key exactly once."""
    p = tmp_path / "out.jsonl"
    code = (
        "import sys, time\n"
        "from stepwiser.io.records import JsonlWriter\n"
        f"w = JsonlWriter({str(p)!r}, lambda o: o['id'])\n"
        "for i in range(100000):\n"
        "    k = str(i)\n"
        "    if k in w: continue\n"
        "    w.write({'id': k, 'pad': 'x' * 200})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    import time
    t0 = time.time()
    while (not p.exists() or p.stat().st_size < 200_000) and time.time() - t0 < 30:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    before = p.read_bytes()
    complete = before[: before.rfind(b"\n") + 1]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    after = p.read_bytes()
    assert after.startswith(complete)  # what was written before the kill stays byte-identical
    ids = [json.loads(x)["id"] for x in after.splitlines()]
    assert sorted(ids, key=int) == [str(i) for i in range(100000)]


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"id": "a"}\n\nnot json\n[1]\n')
    with pytest.raises(RecordError, match=r"in.jsonl:3"):
        list(iter_jsonl(p))
    skipped = []
    assert [n for n, _ in iter_jsonl(p, on_error="skip", skipped=skipped)] == [1]
    assert [n for n, _ in skipped] == [3, 4]


def test_missing_field_names_file_and_line(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"problem_id": "p", "sample_id": 0, "response": "r", "chunks": []}) + "\n")
    with pytest.raises(RecordError, match=r"s.jsonl:1: Sample record is missing field\(s\): correct"):
        read_records(p, Sample)


def test_records_keep_extra_fields_roundtrip():
    d = {"id": "x", "problem": "p", "answer": "1", "source": "s", "steps": [1, 2]}
    prob = parse_record(Problem, d)
    assert prob.extra == {"steps": [1, 2]}
    assert prob.to_dict() == {**d, "solution": None}


def test_manifest_same_config_resumes_different_refuses(tmp_path):
    out = tmp_path / "samples.jsonl"
    inp = tmp_path / "problems.jsonl"
    write_jsonl(inp, [{"id": "a"}])
    m = RunManifest.open(out, "sample", {"n": 4, "batch": 8}, [inp], volatile=["batch"])
    assert manifest_path(out).exists() and not m.complete
    out.write_text('{"id": "a"}\n')
    RunManifest.open(out, "sample", {"n": 4, "batch": 16}, [inp], volatile=["batch"])  # volatile: resumes
    with pytest.raises(ConfigMismatchError, match=r"config differs in: n \(4 -> 8\).*--overwrite"):
        RunManifest.open(out, "sample", {"n": 8, "batch": 8}, [inp], volatile=["batch"])
    write_jsonl(inp, [{"id": "b"}])
    with pytest.raises(ConfigMismatchError, match="inputs changed"):
        RunManifest.open(out, "sample", {"n": 4, "batch": 8}, [inp], volatile=["batch"])
    m = RunManifest.open(out, "sample", {"n": 8}, [inp], overwrite=True)
    assert not out.exists() and m.data["config"] == {"n": 8}
    m.finish({"count": 0})
    assert json.loads(manifest_path(out).read_text())["complete"] is True


def test_manifest_for_folder_output(tmp_path):
    d = tmp_path / "judge_data"
    RunManifest.open(d, "judge-data", {"x": 1})
    assert (d / "manifest.json").exists()
    assert os.path.isdir(d)


def test_finish_refuses_a_run_without_records(tmp_path):
    out = tmp_path / "samples.jsonl"
    m = RunManifest.open(out, "sample", {"n": 4})
    with pytest.raises(EmptyResultError, match=r"samples.jsonl: the run produced no records: no problems"):
        m.finish({"samples": 0}, records=0, cause="no problems")
    assert json.loads(manifest_path(out).read_text())["complete"] is False
    d = RunManifest.open(tmp_path / "eval", "eval", {"x": 1})
    with pytest.raises(EmptyResultError, match=r"eval: the run produced no records; nothing is marked"):
        d.finish({}, records=0)
    m.finish({"samples": 3}, records=3)
    assert json.loads(manifest_path(out).read_text())["complete"] is True


def test_an_output_without_records_is_replaced_without_overwrite(tmp_path):
    """A first run that failed before writing a record (e.g. a wrong --policy) does not block the fix."""
    out = tmp_path / "samples.jsonl"
    RunManifest.open(out, "sample", {"policy": "wrong/path"})
    out.write_text("\n")                                        # the writer had opened the file
    m = RunManifest.open(out, "sample", {"policy": "right"})
    assert m.data["config"] == {"policy": "right"} and m.data["resumed"] == 0 and not out.exists()
    out.write_text('{"id": "a"}\n')                               # now it holds a record: refused
    with pytest.raises(ConfigMismatchError, match="policy"):
        RunManifest.open(out, "sample", {"policy": "other"})
    # a folder output with empty files only, and extra outputs
    d = tmp_path / "eval"
    RunManifest.open(d, "eval", {"judge": "wrong"}, outputs=[tmp_path / "side.jsonl"])
    (d / "test.jsonl").write_text("")
    (tmp_path / "side.jsonl").write_text("")
    RunManifest.open(d, "eval", {"judge": "right"}, outputs=[tmp_path / "side.jsonl"])
    assert not (d / "test.jsonl").exists() and not (tmp_path / "side.jsonl").exists()
    (d / "test.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(ConfigMismatchError):
        RunManifest.open(d, "eval", {"judge": "other"})
    (d / "test.jsonl").write_text("")
    (tmp_path / "side.jsonl").write_text('{"id": 1}\n')          # a record in an extra output counts
    with pytest.raises(ConfigMismatchError):
        RunManifest.open(d, "eval", {"judge": "other"}, outputs=[tmp_path / "side.jsonl"])
