"""The micro ProcessBench from policy samples: exact labels on hand-made solutions with known first errors."""
from __future__ import annotations

import pytest

from stepwiser.data.policy_bench import build_policy_bench, label_sample
from stepwiser.data.synth import generate_problems
from stepwiser.errors import StepwiserError
from stepwiser.io.records import Sample

P = generate_problems(2, 0)[0]   # 13 * 12 = 156, 156 * 2 = 312, 312 + 3 = 315, 315 - 9 = 306, 306 / 2 = 153
GOLD = ["The garden has 13 * 12 = 156 apple trees.", "She gets 156 * 2 = 312 apples.",
        "That gives her 312 + 3 = 315 apples.", "315 - 9 = 306 apples are good.",
        "She fills 306 / 2 = 153 bags. The answer is \\boxed{153}."]
assert P.solution.count("<chunk>") == 5 and "156 * 2 = 312" in P.solution


def sample(chunks, correct, sid=0, pid=None):
    return Sample(problem_id=pid or P.id, sample_id=sid, response="\n".join(chunks), chunks=list(chunks),
                  correct=correct, sampling={"model": "micro"})


def test_gold_solution_is_clean():
    assert label_sample(sample(GOLD, True), P) == (-1, "none")


@pytest.mark.parametrize("i,bad,kind", [
    (0, "The garden has 13 * 12 = 146 apple trees.", "arithmetic"),
    (1, "She gets 156 + 2 = 158 apples.", "operation"),
    (3, "315 - 2 = 313 apples are good.", "quantity"),
])
def test_first_wrong_chunk_is_the_label(i, bad, kind):
    chunks = GOLD[:i] + [bad] + GOLD[i + 1:]
    assert label_sample(sample(chunks, False), P) == (i, kind)


def test_a_later_error_after_a_first_one_keeps_the_first():
    chunks = [GOLD[0], "She gets 156 * 2 = 300 apples.", "That gives her 300 + 3 = 304 apples.", *GOLD[3:]]
    assert label_sample(sample(chunks, False), P)[0] == 1


def test_wrong_answer_without_a_step_error_and_no_chunks_have_no_label():
    assert label_sample(sample(GOLD[:4], False), P) == (None, "wrong_answer_without_step_error")
    assert label_sample(sample([], False), P) == (None, "no_chunks")


def test_build_splits_by_problem_and_keeps_the_proportion():
    problems = generate_problems(40, 3)
    samples = []
    for p in problems:
        gold = [c for c in p.solution.replace("</chunk>", "").split("<chunk>") if c.strip()]
        gold = [c.strip() for c in gold]
        bad = list(gold)
        bad[0] = bad[0].replace("=", "= 1 +", 1) if "=" in bad[0] else bad[0]
        samples += [sample(gold, True, 0, p.id), sample(gold, True, 1, p.id),   # a duplicate response
                    sample(bad, False, 2, p.id)]
    test, dev, stats = build_policy_bench(samples, problems, n_test=20, n_dev=8, seed=1, clean_share=0.5)
    assert len(test) == 20 and len(dev) == 8
    assert sum(it["label"] == -1 for it in test) == 10 and sum(it["label"] == -1 for it in dev) == 4
    assert not {it["problem_id"] for it in test} & {it["problem_id"] for it in dev}
    assert all(len([it for it in test if it["problem_id"] == pid]) == 1 for pid in {i["problem_id"] for i in test})
    assert stats.skipped["duplicate_response"] == 40
    assert {"id", "problem", "steps", "label", "final_answer_correct"} <= set(test[0])
    again = build_policy_bench(samples, problems, n_test=20, n_dev=8, seed=1, clean_share=0.5)
    assert again[0] == test and again[1] == dev


def test_samples_of_other_problems_are_a_clear_error():
    with pytest.raises(StepwiserError, match="no bench item from 1 samples"):
        build_policy_bench([sample(GOLD, True, pid="elsewhere-1")], [P], n_test=5, n_dev=0)


def test_cli_builds_the_bench_from_samples(tmp_path, capsys):
    import json

    from stepwiser.cli import main
    from stepwiser.io.records import write_jsonl

    problems = generate_problems(30, 5)
    samples = []
    for p in problems:
        gold = [c.strip() for c in p.solution.replace("</chunk>", "").split("<chunk>") if c.strip()]
        bad = [gold[0].replace("=", "= 1 +", 1), *gold[1:]]
        samples += [sample(gold, True, 0, p.id), sample(bad, False, 1, p.id)]
    write_jsonl(tmp_path / "p.jsonl", problems)
    write_jsonl(tmp_path / "s.jsonl", samples)
    out = tmp_path / "bench"
    args = ["data", "synth-bench", "--n", "8", "--from-samples", str(tmp_path / "s.jsonl"),
            "--problems", str(tmp_path / "p.jsonl"), "-o", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    test = json.loads((out / "test.json").read_text())
    dev = json.loads((out / "dev.json").read_text())
    assert len(test) == 8 and len(dev) == 2 and sum(it["label"] == -1 for it in test) == 4
    assert all(it["label"] in (-1, 0) for it in test + dev)
    assert main(["data", "synth-bench", "--n", "8", "--problems", str(tmp_path / "p.jsonl"), "-o",
                 str(tmp_path / "b2")]) == 2
