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
