"""`eval processbench --critic`: the whole-solution critic protocol for any chat model."""
import re

import pytest
from eval_data import ITEMS, records, write_bench
from fakes import FakeEngine

from stepwiser.judges.critic import Critic, critic_messages, critic_vote, parse_index
from stepwiser.data.bench import BenchItem
from stepwiser.stages.eval_processbench import ProcessBenchConfig, run_processbench


def test_prompt_shows_every_step_as_a_numbered_paragraph():
    body = critic_messages("What is 2 + 3?", ["2 + 3 = 6.", "So \\boxed{6}."])[0]["content"]
    assert "<paragraph_0>\n2 + 3 = 6.\n</paragraph_0>\n\n<paragraph_1>\nSo \\boxed{6}.\n</paragraph_1>" in body
    assert body.index("What is 2 + 3?") < body.index("<paragraph_0>")
    low = body.lower()
    assert "numbered from 0" in low and "earliest error" in low and "-1" in low and "\\boxed{}" in low


@pytest.mark.parametrize("text, n, expected", [
    ("The error is in paragraph 2. \\boxed{2}", 4, 2),
    ("No error. \\boxed{-1}", 4, -1),
    ("first \\boxed{1} then \\boxed{3}", 4, 3),             # the last box decides
    ("\\boxed{\\text{paragraph\\_2}}", 4, 2),
    ("\\boxed{ 0. }", 4, 0),
    ("\\boxed{4}", 4, None),                               # names no paragraph of a 4-step solution
    ("\\boxed{-2}", 4, None),
    ("\\boxed{two}", 4, None),
    ("paragraph 2 is wrong", 4, None),
])
def test_parse_index(text, n, expected):
    assert parse_index(text, n) == expected


def test_vote():
    assert critic_vote([2, 2, -1]) == 2
    assert critic_vote([-1, -1, 3]) == -1
    assert critic_vote([3, 1, None]) == 1          # tie: the earliest error
    assert critic_vote([-1, 2]) == 2               # tie between no error and an error: the error
    assert critic_vote([None, -1]) == -1
    assert critic_vote([None, None]) is None


def answer_from_problem(prompt, rng, req):
    """Problem B -> 1, C -> 0, A -> -1, D -> unparsed."""
    letter = re.search(r"### Problem\nProblem (\w)", prompt).group(1)
    return {"A": "\\boxed{-1}", "B": "see \\boxed{1}", "C": "\\boxed{0}", "D": "hmm"}[letter]


def test_critic_batches_items_and_scores(tmp_path):
    data = write_bench(tmp_path / "bench", {"s": ITEMS})
    engine = FakeEngine(answer_from_problem)
    cfg = ProcessBenchConfig(mode="critic", model="fake", data=str(data), out=str(tmp_path / "o"), bootstrap=0)
    summary = run_processbench(cfg, engine, progress=False)
    assert engine.calls == [4]
    recs = records(tmp_path / "o" / "s.jsonl")
    assert {k: r["prediction"] for k, r in recs.items()} == {"a": -1, "b": 1, "c": 0, "d": None}
    assert recs["b"]["indices"] == [1] and recs["b"]["analyses"] == ["see \\boxed{1}"] and recs["d"]["unparsed"]
    assert summary["subsets"]["s"]["f1"] == 80.0 and summary["subsets"]["s"]["unparsed"] == 1


def test_critic_maj_k_samples_per_item():
    engine = FakeEngine(lambda prompt, rng, req: f"\\boxed{{{rng.choice([0, 0, 1])}}}")
    item = BenchItem("s", "x", "Problem X", ("s0", "s1"), 0)
    ((_, rec),) = list(Critic(engine).predict([item], k=5))
    assert len(rec["indices"]) == 5 and rec["prediction"] == critic_vote(rec["indices"])
    assert engine.calls == [1]
