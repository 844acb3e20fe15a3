"""GRPO of the chunk policy (`stepwiser train-policy-grpo`): the outcome reward's exact values, the combined
outcome + process reward on a stub judge, config validation, and short runs of a random micro-1m policy
(outcome; outcome + process with a real micro judge model), resume and the refusal of a changed config."""
from __future__ import annotations

import json
import shutil

import pytest

from stepwiser.cli import main
from stepwiser.data.prompts import policy_messages
from stepwiser.data.synth import generate_problems
from stepwiser.errors import ConfigMismatchError
from stepwiser.io.records import write_jsonl
from stepwiser.judges.base import JudgeItem, Judgment
from stepwiser.train.judge_metrics import read_metrics
from stepwiser.train.policy_grpo import (
    PROCESS_FIELDS,
    OutcomeReward,
    PolicyGRPOConfig,
    outcome_rewards,
    policy_rows,
    reward_functions,
    run_config,
    train_policy_grpo,
)


def cfg(**kw) -> PolicyGRPOConfig:
    base = {"model": "m", "problems": "p.jsonl", "out": "o"}
    return PolicyGRPOConfig(**{**base, **kw})


# --------------------------------------------------------------------------- rewards

def test_outcome_reward_values():
    texts = ["<chunk>6 * 9 = 54, 54 / 9 = 6. The answer is \\boxed{6}.</chunk>",   # right
             "<chunk>6 * 9 = 54. \\boxed{7}</chunk>",                                # wrong
             "<chunk>6 * 9 = 54, and no final answer</chunk>",                      # no answer
             "<chunk>first \\boxed{6}, then \\boxed{5}</chunk>",                     # the last box counts
             "<chunk>\\boxed{6"]                                                     # cut inside the box
    assert outcome_rewards(texts, ["6"] * 5) == [1.0, 0.0, 0.0, 0.0, 0.0]
    logged = []
    reward = OutcomeReward()
    completions = [[{"role": "assistant", "content": t}] for t in texts[:3]]
    got = reward(prompts=[policy_messages("q")] * 3, completions=completions, answer=["6", "6", "54"],
                 log_metric=lambda k, v: logged.append((k, v)))
    assert got == [1.0, 0.0, 0.0]
    assert logged == [("outcome/unparsed", 0.0), ("outcome/unparsed", 0.0), ("outcome/unparsed", 1.0)]
    assert reward.__name__ == "outcome"


class StubJudge:
    """Negative for a chunk holding "bad", else Positive; records what it was asked."""

    def __init__(self):
        self.calls = []

    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]:
        self.calls.append(items)
        return [Judgment(verdicts=[0 if "bad" in it.chunk else 1] * k) for it in items]


def test_outcome_plus_process_reward_on_a_stub_judge():
    stub = StubJudge()
    funcs, weights = reward_functions(cfg(reward="outcome+process", judge="j", process_weight=0.5), stub)
    assert [f.__name__ for f in funcs] == ["outcome", "process_reward"] and weights == [1.0, 0.5]
    texts = ["<chunk>a</chunk><chunk>b \\boxed{3}</chunk>", "<chunk>a</chunk><chunk>bad \\boxed{3}</chunk>",
             "<chunk>bad</chunk><chunk>b \\boxed{4}</chunk>", "no chunks \\boxed{3}"]
    kwargs = {"prompts": [policy_messages("Q")] * 4, "completions": [[{"role": "assistant", "content": t}]
                                                                      for t in texts],
              "problem": ["Q"] * 4, "answer": ["3"] * 4}
    outcome, process = (f(**kwargs) for f in funcs)
    assert outcome == [1.0, 1.0, 0.0, 1.0]
    assert process == [1.0, 0.5, 0.5, 0.0]      # aggregate mean; no chunks: 0
    total = [o + w for o, w in zip(outcome, (0.5 * p for p in process))]
    assert total == [1.5, 1.25, 0.25, 1.0]
    assert len(stub.calls) == 1                  # every chunk of the batch in one judge call
    items = stub.calls[0]
    assert [(it.problem, it.history, it.chunk) for it in items[:2]] == [("Q", [], "a"), ("Q", ["a"], "b \\boxed{3}")]
    funcs, weights = reward_functions(cfg(reward="outcome+process", judge="j", aggregate="min"), stub)
    assert funcs[1](**kwargs) == [1.0, 0.0, 0.0, 0.0] and weights == [1.0, 1.0]
    funcs, weights = reward_functions(cfg(), None)
    assert [f.__name__ for f in funcs] == ["outcome"] and weights == [1.0]


def test_rows_prompt_the_policy_as_sample_does():
    problems = generate_problems(3, 1001, 3, 4, 10, max_value=100)
    rows = policy_rows(problems)
    assert [r["prompt"] for r in rows] == [policy_messages(p.problem) for p in problems]
    assert [(r["problem"], r["answer"], r["id"]) for r in rows] == [(p.problem, p.answer, p.id) for p in problems]


def test_a_micro_judge_gives_text_outside_its_vocabulary_an_unparsed_verdict(micro):
    """A sampled completion can hold pieces the micro vocabulary cannot encode (seen: "ships" at a line start from a random
    policy); the judge's engine would refuse the whole batch, the guard marks those chunks unparsed."""
    from stepwiser.engines.hf import HFEngine
    from stepwiser.judges.generative import GenerativeJudge
    from stepwiser.judges.coverage import CoverageGuard, guard_judge

    inner = GenerativeJudge(HFEngine(str(micro / "micro"), batch_size=4), cot=False, max_tokens=2, prompt="compact")
    guard = guard_judge(inner)
    assert isinstance(guard, CoverageGuard) and guard_judge(StubJudge()).__class__ is StubJudge
    p = generate_problems(1, 1001, 3, 4, 10, max_value=100)[0]
    items = [JudgeItem(p.problem, [], "6 * 9 = 54"), JudgeItem(p.problem, [], "6 * 9 = 54 zebra quantum"),
             JudgeItem(p.problem, ["6 * 9 = 54"], "54 + 9 = 63")]
    out = guard.judge(items)
    assert len(out) == 3 and out[1].verdicts == [None] and out[1].texts == []
    assert out[0].texts and out[2].texts and guard.last_share == pytest.approx(1 / 3)


def test_load_judge_guards_a_micro_judge_for_every_stage(micro, capsys):
    """eval labels / processbench / search / select / serve get judges from load_judge: a micro judge comes
    guarded (attributes pass through), and an uncovered chunk is reported on stderr with a running count."""
    from stepwiser.judges.coverage import CoverageGuard
    from stepwiser.judges.load import load_judge

    judge = load_judge(str(micro / "micro"), {"engine": "hf", "batch_size": 4}, cot=False, max_tokens=2)
    assert isinstance(judge, CoverageGuard) and judge.cot is False
    p = generate_problems(1, 1001, 3, 4, 10, max_value=100)[0]
    out = judge.judge([JudgeItem(p.problem, [], "6 * 9 = 54 zebra quantum"), JudgeItem(p.problem, [], "6 * 9 = 54")])
    assert out[0].verdicts == [None] and out[1].texts and (judge.uncovered, judge.seen) == (1, 2)
    assert "1 of 2 chunk(s) hold words the micro vocabulary cannot encode" in capsys.readouterr().err


# --------------------------------------------------------------------------- config

@pytest.mark.parametrize("kw, msg", [
    ({"reward": "process"}, "reward must be one of outcome, outcome\\+process; got 'process'"),
    ({"reward": "outcome+process"}, "reward outcome\\+process needs judge"),
    ({"aggregate": "max"}, "aggregate must be one of min, mean, first-negative"),
    ({"unparsed": "drop"}, "unparsed must be one of negative, positive, skip"),
    ({"loss_type": "ppo"}, "loss_type must be one of"),
    ({"num_generations": 1, "per_device_batch": 4}, "num_generations must be at least 2"),
    ({"per_device_batch": 12}, "must be a multiple of num_generations"),
    ({"process_weight": -1.0}, "process_weight must be >= 0"),
    ({"lr": 0.0}, "must be positive numbers: lr=0.0"),
    ({"max_completion_length": 0}, "max_completion_length=0"),
    ({"model": ""}, "model, problems and out are required"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        cfg(**kw)


def test_defaults_and_the_manifest_config():
    c = cfg()
    assert (c.reward, c.aggregate, c.process_weight, c.num_generations, c.max_completion_length, c.temperature,
            c.beta, c.lr, c.per_device_batch) == ("outcome", "mean", 1.0, 8, 160, 1.0, 0.0, 1e-4, 64)
    assert not set(PROCESS_FIELDS) & set(run_config(c))          # an outcome run ignores the judge settings
    assert run_config(cfg(judge="runs/j")) == run_config(c)
    full = run_config(cfg(reward="outcome+process", judge="runs/j"))
    assert set(PROCESS_FIELDS) <= set(full) and full["judge"] == "runs/j"


# --------------------------------------------------------------------------- runs on a random micro policy

@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from stepwiser.stages.init_model import InitModelConfig, run_init_model

    root = tmp_path_factory.mktemp("pgrpo")
    run_init_model(InitModelConfig(out=str(root / "micro"), size="micro-1m", seed=0, vocab_problems=20))
    write_jsonl(root / "problems.jsonl", generate_problems(8, 1001, 3, 4, 10, max_value=100))
    return root


RUN = ["--per-device-batch", "4", "--num-generations", "2", "--max-steps", "2", "--max-completion-length", "8",
       "--save-steps", "1", "--lr", "1e-3", "--num-threads", "1"]
KEYS = {"step", "outcome_reward", "reward", "zero_variance_groups", "completion_length", "step_s", "generation_s",
        "answer_unparsed", "loss"}


def test_outcome_run_writes_the_policy_metrics_and_manifest(micro, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    args = ["train-policy-grpo", "--model", str(micro / "micro"), "--problems", str(micro / "problems.jsonl"),
            "-o", str(out), *RUN]
    assert main(args) == 0, capsys.readouterr().err
    final = out / "final"
    assert capsys.readouterr().out.strip().endswith(str(final))
    AutoModelForCausalLM.from_pretrained(final)
    assert AutoTokenizer.from_pretrained(final).chat_template
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(KEYS <= set(r) for r in rows), [KEYS - set(r) for r in rows]
    assert all(r["outcome_reward"] == r["reward"] == 0.0 and r["zero_variance_groups"] == 1.0 for r in rows)
    assert not any("process_reward" in r for r in rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "train-policy-grpo" and manifest["complete"]
    assert manifest["summary"]["steps"] == 2 and "mean_step_s" in manifest["summary"]
    assert manifest["config"]["reward"] == "outcome" and "judge" not in manifest["config"]
    # the same run again returns at once (volatile settings may change); another config is refused
    assert main([*args, "--save-steps", "5", "--judge", "ignored-by-an-outcome-run"]) == 0
    assert read_metrics(out) == rows
    assert main([*args, "--lr", "2e-3"]) == 1
    assert "different run" in capsys.readouterr().err
    with pytest.raises(ConfigMismatchError, match="different run"):
        train_policy_grpo(cfg(model=str(micro / "micro"), problems=str(micro / "problems.jsonl"), out=str(out),
                              per_device_batch=4, num_generations=2, max_steps=3, max_completion_length=8))


def test_outcome_plus_process_run_with_a_micro_judge(micro, tmp_path):
    judge = tmp_path / "judge"
    shutil.copytree(micro / "micro", judge)
    (judge / "stepwiser_judge.json").write_text(json.dumps({"kind": "generative", "cot": False,
                                                            "prompt": "compact"}))
    c = cfg(model=str(micro / "micro"), problems=str(micro / "problems.jsonl"), out=str(tmp_path / "run"),
            reward="outcome+process", judge=str(judge), judge_max_tokens=4, chunk_style="blank",
            process_weight=0.5, per_device_batch=4, num_generations=2, max_steps=2, max_completion_length=8,
            save_steps=1, lr=1e-3, num_threads=1)
    final = train_policy_grpo(c, judge_engine={"engine": "hf", "batch_size": 8}, show=False)
    assert (final / "config.json").exists()
    rows = read_metrics(c.out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert KEYS | {"process_reward", "judge_positive_share", "judge_unparsed", "judge_s", "judge_uncovered"} <= set(r)
        assert r["reward"] == pytest.approx(r["outcome_reward"] + 0.5 * r["process_reward"])
        assert r["judge_s"] > 0     # every completion has a chunk (blank style): the judge was asked
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["judge"] == str(judge) and manifest["config"]["process_weight"] == 0.5
    with pytest.raises(ConfigMismatchError):
        train_policy_grpo(PolicyGRPOConfig(**{**c.__dict__, "aggregate": "min"}), judge=StubJudge(), show=False)
