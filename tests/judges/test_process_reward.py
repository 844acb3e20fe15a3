"""The judge as a TRL process reward (stepwiser.judges.process_reward) with a FakeEngine judge, and once
inside a real TRL GRPOTrainer step on the tiny random model (CPU)."""
from __future__ import annotations

import re

import pytest

from stepwiser.judges.base import Judgment
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.process_reward import (
    ProcessReward,
    completion_text,
    extra_problem,
    problem_from_prompt,
    prompt_problem,
    response_from_query,
    score_responses,
)
from fakes import FakeEngine


def chunk_of(prompt: str) -> str:
    return re.search(r"### New chunk\n(.*?)\n\n### End of input", prompt, re.DOTALL).group(1)


def fake_verdict(prompt: str, rng=None, req=None) -> str:
    """Negative for chunks saying WRONG, no verdict for chunks saying ???, else Positive."""
    c = chunk_of(prompt)
    if "WRONG" in c:
        return "The step is wrong. \\boxed{Negative}"
    if "???" in c:
        return "I cannot tell."
    return "Fine. \\boxed{Positive}"


def fake_judge(**kw):
    return GenerativeJudge(FakeEngine(fake_verdict), cot=True, max_tokens=64, **kw)


def tags(*chunks):
    return "\n".join(f"<chunk>{c}</chunk>" for c in chunks)


GOOD = tags("Let x = 2.", "Then 2x = 4.", "So \\boxed{4}.")
BAD2 = tags("Let x = 2.", "Then 2x = 5. WRONG", "So \\boxed{5}.")
UNP = tags("Let x = 2.", "??? hmm", "So \\boxed{4}.")


def test_score_responses_judges_all_chunks_in_one_call_with_histories():
    judge = fake_judge()
    out = score_responses(judge, [("p1", GOOD), ("p2", BAD2), ("p3", "no tags at all"), ("p4", UNP)], "mean")
    assert judge.engine.calls == [9]               # 3 + 3 + 0 + 3 chunks, one engine call
    assert [r.verdicts for r in out] == [[1, 1, 1], [1, 0, 1], [], [1, None, 1]]
    assert [r.score for r in out] == [1.0, pytest.approx(2 / 3), 0.0, pytest.approx(2 / 3)]
    assert out[1].to_json()["verdicts"] == ["Positive", "Negative", "Positive"]
    assert out[3].to_json()["verdicts"] == ["Positive", None, "Positive"]
    # chunk i's history is the chunks before it, and the problem is the response's own
    third = judge.engine.prompts[5]
    assert "### Problem\np2" in third and "Step 1: Let x = 2.\nStep 2: Then 2x = 5. WRONG" in third


def test_blank_style_and_k_samples():
    judge = fake_judge()
    out = score_responses(judge, [("p", "Let x = 2.\n\nThen 2x = 5. WRONG\n\nSo 5.")], "first-negative",
                          chunk_style="blank", k=3)
    assert out[0].chunks == ["Let x = 2.", "Then 2x = 5. WRONG", "So 5."]
    assert out[0].score == pytest.approx(1 / 3)


@pytest.mark.parametrize("aggregate,unparsed,expected", [
    ("min", "negative", [1.0, 0.0, 0.0, 0.0]),
    ("min", "skip", [1.0, 0.0, 1.0, 0.0]),
    ("mean", "positive", [1.0, pytest.approx(2 / 3), 1.0, 0.0]),
    ("first-negative", "negative", [1.0, pytest.approx(1 / 3), pytest.approx(1 / 3), 0.0]),
])
def test_reward_function_plain_completions(aggregate, unparsed, expected):
    reward = ProcessReward(fake_judge(), aggregate=aggregate, unparsed=unparsed)
    got = reward(prompts=["q"] * 4, completions=[GOOD, BAD2, UNP, "nothing"], problem=["a", "b", "c", "d"])
    assert got == expected
    s = reward.last_stats
    assert (s.responses, s.chunks, s.positive, s.unparsed, s.no_chunks) == (4, 9, 7, 1, 1)


def test_reward_function_conversational_problem_from_prompt_and_log_metric():
    judge = fake_judge()
    logged = {}
    prompts = [[{"role": "system", "content": "Solve."}, {"role": "user", "content": "  What is 2+2?  "}]] * 2
    completions = [[{"role": "assistant", "content": GOOD}],
                   [{"role": "assistant", "content": [{"type": "text", "text": BAD2}]}]]
    reward = ProcessReward(judge, empty=None)
    got = reward(prompts=prompts, completions=completions, completion_ids=[[1], [2]],
                 log_metric=lambda name, value: logged.setdefault(name, value), trainer_state=None)
    assert got == [1.0, 0.0]
    assert "### Problem\nWhat is 2+2?\n" in judge.engine.prompts[0]
    assert logged["process_reward/positive_share"] == pytest.approx(5 / 6)
    assert logged["process_reward/unparsed_share"] == 0.0
    assert reward(prompts=["x"], completions=["no chunks"]) == [None]     # empty=None: no reward


def test_outcome_combination():
    def outcome(prompts, completions, answer, **kw):
        return [float("\\boxed{" + a + "}" in c) for c, a in zip(completions, answer)]

    comps = [GOOD, BAD2, GOOD]
    times = ProcessReward(fake_judge(), outcome=outcome, combine="times")
    assert times(prompts=["p"] * 3, completions=comps, answer=["4", "5", "7"]) == [1.0, 0.0, 0.0]
    plus = ProcessReward(fake_judge(), aggregate="mean", outcome=outcome, combine="plus")
    assert plus(prompts=["p"] * 3, completions=comps, answer=["4", "5", "7"]) == [2.0, pytest.approx(5 / 3), 1.0]


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="aggregate must be one of min, mean, first-negative"):
        ProcessReward(fake_judge(), aggregate="max")
    with pytest.raises(ValueError, match="chunk_style must be one of tags, blank"):
        ProcessReward(fake_judge(), chunk_style="lines")
    with pytest.raises(ValueError, match="k must be >= 1"):
        ProcessReward(fake_judge(), k=0)


def test_a_judge_returning_too_few_judgments_is_an_error():
    class Short:
        def judge(self, items, k=1):
            return [Judgment(verdicts=[1])]
    with pytest.raises(RuntimeError, match="1 judgments for 3 chunks"):
        score_responses(Short(), [("p", GOOD)])


def test_text_helpers():
    chatml = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert problem_from_prompt(chatml) == "What is 2+2?"
    llama3 = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHow many?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert problem_from_prompt(llama3) == "How many?"
    assert problem_from_prompt("  plain problem ") == "plain problem"
    assert response_from_query(chatml + GOOD + "<|im_end|>", chatml) == GOOD
    assert response_from_query("<pad>" + chatml + "answer</s>", chatml) == "answer"
    with pytest.raises(ValueError, match="not a prefix"):
        response_from_query("something else", chatml)
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"},
                            {"role": "assistant", "content": "b"}]) == "ab"
    assert prompt_problem([{"role": "user", "content": "x"}]) == "x"
    with pytest.raises(ValueError, match="without a user message"):
        prompt_problem([{"role": "system", "content": "x"}])
    assert extra_problem({"question": "q"}) == "q"
    with pytest.raises(ValueError, match="extra_info\\['problem'\\]"):
        extra_problem({"index": 3})


def test_inside_a_real_trl_grpo_step(tiny_model_dir, tmp_path):
    """One GRPOTrainer step of the tiny random policy with ProcessReward as one of its reward functions."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    judge = fake_judge()
    reward = ProcessReward(judge, aggregate="mean", chunk_style="blank")
    seen = {}

    def outcome(prompts, completions, problem, **kw):
        seen["problem"] = problem
        return [0.0] * len(completions)

    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "problem": f"P{i}"}
                            for i in range(2)])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, max_steps=1, learning_rate=1e-6, report_to="none", use_cpu=True,
                      logging_steps=1, save_strategy="no", dataloader_num_workers=0, seed=0)
    trainer = GRPOTrainer(model=str(tiny_model_dir), reward_funcs=[reward, outcome], args=args, train_dataset=ds)
    trainer.train()
    assert judge.engine.calls and reward.last_stats.responses == 4
    assert set(seen["problem"]) <= {"P0", "P1"}
    assert any(judge.engine.prompts[0].find(f"### Problem\nP{i}\n") >= 0 for i in range(2))
    logged = {k for row in trainer.state.log_history for k in row}
    assert "rewards/process_reward/mean" in logged and "process_reward/positive_share" in logged
