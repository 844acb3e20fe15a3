"""SIGKILL `stepwiser annotate` mid-run (real CLI, real hf engine with a tiny model), rerun: every
annotation exactly once, and the records written before the kill byte-identical."""
import json
import os
import signal
import subprocess
import sys
import time

from stepwiser.core.chunks import parse_chunks
from stepwiser.io.records import Sample, write_jsonl
from stepwiser.data.synth import generate_problems


def test_sigkill_then_rerun_completes_exactly_once(tmp_path, tiny_model_dir):
    problems = generate_problems(10, 3, min_steps=3, max_steps=3)
    write_jsonl(tmp_path / "problems.jsonl", problems)
    write_jsonl(tmp_path / "samples.jsonl", [
        Sample(problem_id=p.id, sample_id=0, response=p.solution, chunks=parse_chunks(p.solution), correct=True)
        for p in problems])
    out = tmp_path / "ann.jsonl"
    cmd = [sys.executable, "-m", "stepwiser", "annotate", "--policy", str(tiny_model_dir),
           "--samples", str(tmp_path / "samples.jsonl"), "--problems", str(tmp_path / "problems.jsonl"),
           "-o", str(out), "--rollouts", "2", "--max-tokens", "4", "--target-sequences", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120:
        if out.exists() and out.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = out.read_bytes()
    assert 2 <= before.count(b"\n") < 10, "the kill should land mid-run"
    kept = before[: before.rfind(b"\n") + 1]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = out.read_bytes()
    assert after.startswith(kept)
    keys = [(o["problem_id"], o["sample_id"]) for o in map(json.loads, after.decode().splitlines())]
    assert sorted(keys) == sorted((p.id, 0) for p in problems)


def test_killed_and_resumed_writes_the_records_of_an_uninterrupted_run(tmp_path, tiny_model_dir):
    """With blocks (here 3 problems), the unfinished block is redone from its start after the kill, so the
    resumed file holds the same records as a run that was never killed (C7: same tables after a crash)."""
    problems = generate_problems(8, 4, min_steps=3, max_steps=3)
    write_jsonl(tmp_path / "problems.jsonl", problems)
    write_jsonl(tmp_path / "samples.jsonl", [
        Sample(problem_id=p.id, sample_id=0, response=p.solution, chunks=parse_chunks(p.solution), correct=True)
        for p in problems])

    def cmd(out):
        return [sys.executable, "-m", "stepwiser", "annotate", "--policy", str(tiny_model_dir),
                "--samples", str(tmp_path / "samples.jsonl"), "--problems", str(tmp_path / "problems.jsonl"),
                "-o", str(out), "--rollouts", "3", "--max-tokens", "4", "--target-sequences", "8",
                "--block-problems", "3", "--temperature", "1.0"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, killed = tmp_path / "whole.jsonl", tmp_path / "killed.jsonl"
    assert subprocess.run(cmd(whole), env=env, capture_output=True, timeout=300).returncode == 0
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and not (killed.exists() and killed.read_text().count("\n") >= 4):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= killed.read_text().count("\n") < 8, "the kill should land mid-run"
    assert subprocess.run(cmd(killed), env=env, capture_output=True, timeout=300).returncode == 0

    def records(path):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return sorted(rows, key=lambda o: (o["problem_id"], o["sample_id"]))

    assert records(killed) == records(whole)


def test_resume_queue_redoes_whole_unfinished_blocks():
    from stepwiser.stages.annotate_queue import problem_blocks, resume_queue

    groups = {p: [f"{p}/0", f"{p}/1"] for p in "abcdefg"}
    written = {"a/0", "a/1", "b/0", "b/1", "c/0", "d/0", "d/1", "g/0", "g/1"}
    block = problem_blocks(list(groups), 3)
    assert block == {"a": 0, "b": 0, "c": 0, "d": 1, "e": 1, "f": 1, "g": 2}
    # block 0 misses c/1 (redo a, b, c), block 1 misses e and f (redo d, e, f), block 2 is done
    assert resume_queue(groups, block, written.__contains__) == list("abcdef")
    free = problem_blocks(list(groups), 0)
    assert set(free.values()) == {-1}
    assert resume_queue(groups, free, written.__contains__) == list("cef")
