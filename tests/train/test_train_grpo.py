"""Judge GRPO on TRL (stepwiser.train.grpo), its config (stepwiser.train.judge_config) and `stepwiser train-judge`,
on the tiny random model (CPU)."""
from __future__ import annotations

import json

import pytest

from stepwiser.cli import main
from stepwiser.data.judge_examples import load_judge_examples, shuffled_labels
from stepwiser.errors import ConfigMismatchError, StepwiserError
from stepwiser.io.records import JudgeExample, write_jsonl
from stepwiser.judges.base import JUDGE_META, JudgeItem
from stepwiser.judges.prompts import judge_messages
from stepwiser.train.grpo import (
    JudgeReward,
    grpo_args,
    grpo_rows,
    is_bare_verdict,
    is_well_formed,
    judge_reward,
    nocot_reward,
    train_grpo,
    verdict_reward,
)
from stepwiser.train.judge_config import JudgeTrainConfig
from stepwiser.train.judge_metrics import (
    metrics_record,
    plot_metrics,
    read_metrics,
    trim_metrics,
    verdict_metrics,
)

# the fields every GRPO run must log (metrics.jsonl names)
NAMED = ("reward", "accuracy", "recall_positive", "recall_negative", "unparsed", "completion_length",
         "zero_variance_groups", "entropy", "clip_low", "clip_high", "generation_s", "optimisation_s")


def judge_examples(n=8, label_type="rel_effective"):
    out = []
    for i in range(n):
        wrong = i % 2
        out.append(JudgeExample(key=f"p{i}/0/1", problem_id=f"p{i}", sample_id=0, chunk_index=1,
                                problem=f"Tom has {i + 2} apples and buys 3 more. How many does he have?",
                                history=[f"Tom starts with {i + 2} apples."],
                                chunk=f"He buys 3 more, so {i + 2} + 3 = {i + 5 + wrong}.",
                                label=1 - wrong, label_type=label_type))
    return out


def write_data(tmp_path, examples=None):
    d = tmp_path / "jd"
    write_jsonl(d / "train.jsonl", examples or judge_examples())
    write_jsonl(d / "val.jsonl", judge_examples(4))
    return d


def cfg_for(model, out, **kw):
    base = {"model": str(model), "out": str(out), "lr": 1e-3, "per_device_batch": 4, "grad_accum": 1,
            "optimizer_steps_per_generation": 2, "max_steps": 2, "max_completion_length": 8, "save_steps": 100}
    return JudgeTrainConfig(**{**base, **kw})


def first_token_parity_reward(prompts, completions, completion_ids, **kw):
    """A reward with variance inside groups on a random model (the judge reward is 0 for all of its
    completions, so its advantages vanish): used to exercise clipping."""
    return [float(ids[0] % 2 == 0) for ids in completion_ids]


# --------------------------------------------------------------------------- rewards

@pytest.mark.parametrize("text,label,cot,nocot", [
    ("The step is fine. \\boxed{Positive}", 1, 1.0, -1.0),
    ("The step is fine. \\boxed{Positive}", 0, 0.0, -1.0),
    ("\\boxed{Negative}", 0, 1.0, 1.0),
    ("\\boxed{Negative}", 1, 0.0, 0.0),
    ("  \\boxed{ positive }\n", 1, 1.0, 1.0),
    ("\\boxed{\\text{Negative}}", 0, 1.0, 1.0),
    ("\\boxed{Positive} \\boxed{Negative}", 0, 1.0, -1.0),   # the last verdict counts; two is a format error
    ("no verdict at all", 1, 0.0, -1.0),
    ("no verdict at all", 0, 0.0, -1.0),
    ("\\boxed{Maybe}", 1, 0.0, -1.0),
    ("\\boxed{Positive", 1, 0.0, -1.0),
    ("Positive", 1, 0.0, -1.0),
])
def test_reward_table(text, label, cot, nocot):
    assert verdict_reward(text, label) == cot
    assert nocot_reward(text, label) == nocot
    assert nocot_reward(text, label, penalty=-0.5) == (-0.5 if nocot == -1.0 else nocot)


@pytest.mark.parametrize("text,label,truncated,cot,nocot", [
    ("The step is right. \\boxed{Positive}", 1, False, 1.0, -1.0),      # right verdict
    ("The step is right. \\boxed{Positive}", 0, False, 0.0, -1.0),      # wrong verdict
    ("\\boxed{Negative}", 0, False, 1.0, 1.0),
    ("\\boxed{Negative}", 1, False, 0.0, 0.0),
    ("\\boxed{Negative}\n", 0, False, 1.0, 1.0),                         # whitespace after the box
    ("The step is right.", 1, False, -1.0, -1.0),                          # unparsed
    ("\\boxed{Maybe}", 1, False, -1.0, -1.0),
    ("\\boxed{Positive} \\boxed{Negative}", 0, False, -1.0, -1.0),     # two boxes
    ("x \\boxed{Positive} so \\boxed{Positive}", 1, False, -1.0, -1.0),
    ("\\boxed{Negative \\boxed{Negative}", 0, False, -1.0, -1.0),      # the drift seen at micro scale
    ("Fine. \\boxed{Positive}.", 1, False, -1.0, -1.0),                  # trailing text
    ("\\boxed{Positive} because 2 + 2 = 4", 1, False, -1.0, -1.0),
    ("Fine. \\boxed{Positive}", 1, True, -1.0, -1.0),                    # cut at max_completion_length
    ("\\boxed{Positive}", 1, True, -1.0, -1.0),
])
def test_judge_reward_with_format_term(text, label, truncated, cot, nocot):
    assert judge_reward(text, label, cot=True, truncated=truncated) == cot
    assert judge_reward(text, label, cot=False, truncated=truncated) == nocot
    assert judge_reward(text, label, cot=True, penalty=-0.5, truncated=truncated) == (-0.5 if cot == -1.0 else cot)
    assert is_well_formed(text, True, truncated) == (cot != -1.0)


def test_reward_function_penalises_completions_cut_without_eos():
    logged = {}
    reward = JudgeReward(cot=True, format_penalty=-1.0, eos_token_ids=[7])
    comps = ["ok \\boxed{Positive}", "ok \\boxed{Positive}", "ok \\boxed{Negative}", "ok \\boxed{Negative}"]
    ids = [[3, 4, 7], [3, 4, 5], [3, 4, 7], []]   # ended, cut, ended, empty
    out = reward(prompts=[None] * 4, completions=comps, label=[1, 1, 1, 0], completion_ids=ids,
                 log_metric=lambda k, v: logged.setdefault(k, []).append(v))
    assert out == [1.0, -1.0, 0.0, -1.0]
    assert logged["judge/format_failure"] == [0.0, 1.0, 0.0, 1.0]
    assert JudgeReward(cot=True)(prompts=[None], completions=["\\boxed{Positive}"], label=[1],
                                 completion_ids=[[3]]) == [1.0]   # no EOS ids known: not judged truncated


def test_bare_verdict():
    assert is_bare_verdict("\\boxed{Positive}") and is_bare_verdict(" \\boxed{NEGATIVE} ")
    assert not is_bare_verdict("So \\boxed{Positive}") and not is_bare_verdict("\\boxed{Positive}.")


def test_reward_function_logs_accuracy_recall_and_unparsed():
    logged = {}

    def log_metric(name, value):
        logged.setdefault(name, []).append(value)

    comps = [[{"role": "assistant", "content": t}] for t in
             ("\\boxed{Positive}", "x \\boxed{Negative}", "nothing", "\\boxed{Negative}")]
    labels = [1, 1, 0, 0]
    rewards = JudgeReward(cot=True)(prompts=[None] * 4, completions=comps, label=labels, log_metric=log_metric)
    assert rewards == [1.0, 0.0, -1.0, 1.0]
    assert logged["judge/accuracy"] == [1.0, 0.0, 0.0, 1.0]
    assert logged["judge/unparsed"] == [0.0, 0.0, 1.0, 0.0]
    assert logged["judge/recall_positive"] == [1.0, 0.0] and logged["judge/recall_negative"] == [0.0, 1.0]
    nocot = JudgeReward(cot=False)(prompts=[None] * 4, completions=comps, label=labels, log_metric=log_metric)
    assert nocot == [1.0, -1.0, -1.0, 1.0]
    assert logged["judge/format_failure"] == [0.0, 0.0, 1.0, 0.0] + [0.0, 1.0, 1.0, 0.0]


# --------------------------------------------------------------------------- config and data

def test_grpo_args_follow_the_paper_and_our_conventions(tmp_path):
    cfg = JudgeTrainConfig(model="m", out=str(tmp_path), per_device_batch=8, grad_accum=2)
    args = grpo_args(cfg)
    assert (args.learning_rate, args.num_generations, args.epsilon, args.epsilon_high) == (1e-6, 4, 0.2, 0.28)
    assert (args.beta, args.loss_type, args.scale_rewards, args.temperature) == (0.0, "dapo", "group", 1.0)
    assert args.steps_per_generation == 4 * 2 and args.gradient_accumulation_steps == 2
    assert args.generation_batch_size == 8 * 4 * 2   # completions per generation batch = 16 prompts x 4
    assert not args.use_vllm and args.lr_scheduler_type.value == "constant"
    v = grpo_args(JudgeTrainConfig(model="m", out=str(tmp_path), use_vllm=True, vllm_mode="server",
                                   vllm_server_base_url="http://localhost:8000"))
    assert v.use_vllm and v.vllm_mode == "server" and v.vllm_server_base_url == "http://localhost:8000"


@pytest.mark.parametrize("kw,msg", [
    ({"method": "ppo"}, "method must be one of grpo, grpo-nocot"), ({"loss_type": "x"}, "loss_type must be one of"),
    ({"num_generations": 1}, "at least 2"), ({"lr": 0}, "positive"),
    ({"vllm_mode": "remote"}, "vllm_mode must be one of"), ({"use_vllm": True, "vllm_mode": "server"}, "base_url"),
    ({"method": "grpo", "cot": False}, "only the warmup method"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        JudgeTrainConfig(model="m", out="o", **kw)


@pytest.mark.parametrize("name", ["micro", "1.5b", "7b"])
def test_recipes_build_configs_with_several_optimiser_steps_per_generation(name):
    from pathlib import Path

    from stepwiser.cli.options import make_config

    recipe = Path(__file__).resolve().parents[2] / "recipes" / f"judge-grpo-{name}.yaml"
    cfg = make_config(JudgeTrainConfig, str(recipe), "train_judge", {"lr": 3e-6} if name == "micro" else {})
    assert cfg.method == "grpo" and cfg.trl_steps_per_generation == 4 * cfg.grad_accum
    assert (cfg.epsilon, cfg.epsilon_high, cfg.beta, cfg.loss_type) == (0.2, 0.28, 0.0, "dapo")
    assert cfg.learning_rate == (3e-6 if name == "micro" else 1e-6)
    if name != "micro":   # the paper's batch: 1024 completions (256 prompts x 4) per optimiser step on 8 GPUs
        assert cfg.per_device_batch * cfg.grad_accum * 8 == 1024 and cfg.use_vllm


def test_rows_are_conversational_prompts_with_labels():
    exs = judge_examples(2)
    rows = grpo_rows(exs, cot=True)
    assert rows[0]["prompt"] == judge_messages(JudgeItem(exs[0].problem, exs[0].history, exs[0].chunk))
    assert [r["label"] for r in rows] == [1, 0]
    assert "Answer with the judgment only" in grpo_rows(exs, cot=False)[0]["prompt"][0]["content"]


def test_bad_judge_data(tmp_path):
    with pytest.raises(StepwiserError, match="not found"):
        load_judge_examples(tmp_path)
    bad = judge_examples(2)
    bad[0].label = 2
    write_jsonl(tmp_path / "train.jsonl", bad)
    with pytest.raises(StepwiserError, match="0 or 1"):
        load_judge_examples(tmp_path)
    mixed = judge_examples(2)
    mixed[1].label_type = "abs_q"
    write_jsonl(tmp_path / "train.jsonl", mixed)
    with pytest.raises(StepwiserError, match="mixes label types"):
        load_judge_examples(tmp_path)


def test_metrics_record_names_and_trim(tmp_path):
    rec = metrics_record(3, {"reward": 0.5, "clip_ratio/high_mean": 0.1, "time/generation": 2.0,
                             "frac_reward_zero_std": 0.25, "judge/accuracy": 0.5}, step_s=5.0)
    assert rec["clip_high"] == 0.1 and rec["zero_variance_groups"] == 0.25 and rec["accuracy"] == 0.5
    assert rec["generation_s"] == 2.0 and rec["optimisation_s"] == 3.0
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    trim_metrics(p, 2)
    assert [json.loads(x)["step"] for x in p.read_text().splitlines()] == [1, 2]


def test_verdict_metrics_are_exact():
    m = verdict_metrics([1, 1, 1, 0, 0], [1, 0, None, 0, 1])
    assert m["recall_positive"] == pytest.approx(1 / 3) and m["recall_negative"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert m["accuracy"] == 0.4 and m["unparsed"] == 0.2 and m["n"] == 5
    assert verdict_metrics([1, 1], [1, None]) == {"n": 2, "accuracy": 0.5, "unparsed": 0.5, "recall_positive": 0.5,
                                                  "balanced_accuracy": 0.5}
    with pytest.raises(ValueError):
        verdict_metrics([1], [])


def test_shuffled_labels_keep_the_inputs_and_the_class_balance():
    exs = judge_examples(40)
    sh = shuffled_labels(exs, seed=0)
    assert [(e.key, e.chunk) for e in sh] == [(e.key, e.chunk) for e in exs]
    assert sorted(e.label for e in sh) == sorted(e.label for e in exs)
    assert [e.label for e in sh] != [e.label for e in exs]
    assert [e.label for e in exs] == [1 - i % 2 for i in range(40)]  # the originals are not modified


def test_plot_metrics(tmp_path):
    rows = [{"step": 1, "reward": 0.2, "clip_high": 0.0}, {"step": 2, "clip_high": 0.01},
            {"step": 2, "val_balanced_accuracy": 0.6}]
    assert plot_metrics(rows, tmp_path / "m.png").stat().st_size > 1000
    assert plot_metrics([], tmp_path / "none.png") is None


# --------------------------------------------------------------------------- runs

def test_cli_grpo_run_logs_every_metric_and_writes_a_judge(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    data, out = write_data(tmp_path), tmp_path / "run"
    rc = main(["train-judge", "--method", "grpo", "--data", str(data), "--model", str(tiny_model_dir), "-o", str(out),
               "--lr", "1e-3", "--per-device-batch", "4", "--optimizer-steps-per-generation", "2", "--max-steps", "3",
               "--max-completion-length", "8", "--save-steps", "2", "--eval-steps", "2"])
    assert rc == 0, capsys.readouterr().err
    final = out / "final"
    assert capsys.readouterr().out.strip().endswith(str(final))
    val = [r for r in read_metrics(out) if "val_balanced_accuracy" in r]
    assert [r["step"] for r in val] == [0, 2, 3] and all(r["val_n"] == 4 for r in val)
    assert all(r["val_unparsed"] == 1.0 and r["val_balanced_accuracy"] == 0.0 for r in val)
    assert (out / "metrics.png").exists()
    rows = [r for r in read_metrics(out) if "val_n" not in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    seen = set().union(*rows)
    assert set(NAMED) <= seen, set(NAMED) - seen
    assert rows[0]["unparsed"] == 1.0 and rows[0]["reward"] == -1.0   # a random model never gives a verdict: format penalty
    assert rows[0]["clip_high"] == 0.0 and rows[0]["clip_low"] == 0.0  # first step of a batch: on-policy
    assert "generation_s" in rows[2] and "generation_s" not in rows[1]  # batches generated at steps 1 and 3
    AutoModelForCausalLM.from_pretrained(final)
    meta = json.loads((final / JUDGE_META).read_text())
    assert meta["kind"] == "generative" and meta["cot"] is True and meta["method"] == "grpo"
    assert meta["label_type"] == "rel_effective"
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["summary"]["steps"] == 3
    # the same command again returns the finished run; another config into the same folder is refused
    rc = main(["train-judge", "--data", str(data), "--model", str(tiny_model_dir), "-o", str(out), "--lr", "1e-3",
               "--per-device-batch", "4", "--steps-per-generation", "2", "--max-steps", "3",
               "--max-completion-length", "8", "--save-steps", "5", "--eval-steps", "1"])  # volatile settings
    assert rc == 0
    with pytest.raises(ConfigMismatchError):
        train_grpo(cfg_for(tiny_model_dir, out, max_steps=4), judge_examples())


def test_high_clip_fraction_is_nonzero_off_policy(tiny_model_dir, tmp_path):
    """4 optimiser steps per generation batch with a large lr: the policy moves between steps, so the
    ratio leaves [1 - eps, 1 + eps_high] on later steps (the first step of a batch is on-policy)."""
    cfg = cfg_for(tiny_model_dir, tmp_path / "run", lr=0.05, optimizer_steps_per_generation=4, max_steps=4)
    train_grpo(cfg, judge_examples(), reward=first_token_parity_reward, show=False)
    rows = read_metrics(cfg.out)
    assert rows[0]["clip_high"] == 0.0 and rows[0]["clip_low"] == 0.0
    assert max(r["clip_high"] for r in rows[1:]) > 0
    assert all(0 < r["reward"] < 1 for r in rows if "reward" in r)


def test_lora_grpo_is_merged_into_a_plain_model(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    cfg = cfg_for(tiny_model_dir, tmp_path / "run", lr=0.05, lora=True, lora_r=4, max_steps=2)
    final = train_grpo(cfg, judge_examples(), reward=first_token_parity_reward, show=False)
    assert not (final / "adapter_config.json").exists()
    merged, base = load_file(str(final / "model.safetensors")), load_file(str(tiny_model_dir / "model.safetensors"))
    assert set(merged) == set(base)
    assert any(not (merged[k] == base[k]).all() for k in base)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    cfg = cfg_for(tiny_model_dir, out, lr=0.05, max_steps=2, save_steps=1, max_completion_length=4)
    train_grpo(cfg, judge_examples(), reward=first_token_parity_reward, show=False)
    full = [r["step"] for r in read_metrics(out)]
    # simulate a kill after the first checkpoint: the second checkpoint, the final model and completion are lost
    import shutil
    shutil.rmtree(out / "checkpoints" / "checkpoint-2")
    shutil.rmtree(out / "final")
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    final = train_grpo(cfg, judge_examples(), reward=first_token_parity_reward, show=False)
    assert [r["step"] for r in read_metrics(out)] == full == [1, 2]   # step 2 again, not twice
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["summary"]["resumed_from"].endswith("checkpoint-1")
    assert (final / JUDGE_META).exists()


def test_a_model_without_chat_template_is_a_clear_error(tiny_model_dir, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink()
    with pytest.raises(StepwiserError, match="no chat template"):
        train_grpo(cfg_for(plain, tmp_path / "run"), judge_examples(), show=False)
    from stepwiser.judges.discriminative import DiscriminativeJudge
    with pytest.raises(StepwiserError, match="no chat template"):
        DiscriminativeJudge(str(plain))


def test_bf16_generates_and_validates_under_autocast(tiny_model_dir, tmp_path, monkeypatch):
    """--bf16 on CPU: generation (TRL's generate) and validation both run under bf16 autocast."""
    import torch
    from transformers import LlamaForCausalLM

    seen = []
    real = LlamaForCausalLM.generate

    def spy(self, *a, **kw):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(self, *a, **kw)

    monkeypatch.setattr(LlamaForCausalLM, "generate", spy)
    calls = []
    import stepwiser.train.judge_metrics as jm
    real_validate = jm.validate
    monkeypatch.setattr(jm, "validate", lambda *a, **kw: calls.append(torch.is_autocast_enabled("cpu"))
                        or real_validate(*a, **kw))
    val = tmp_path / "val.jsonl"
    write_jsonl(val, judge_examples())
    cfg = cfg_for(tiny_model_dir, tmp_path / "run", bf16=True, max_steps=1, eval_steps=1, val_data=str(val))
    train_grpo(cfg, judge_examples(), show=False)
    assert seen and all(seen)            # TRL's generation: autocast on
    assert calls == [True, True]         # validation before step 1 and after it


def constant_reward(prompts, completions, **kw):
    """Every completion the same reward: every group has zero variance (a collapsed run)."""
    return [0.0] * len(completions)


def test_collapse_watch_stops_cleanly_with_the_final_model(tiny_model_dir, tmp_path):
    from stepwiser.stages.train_judge import run_summary

    cfg = cfg_for(tiny_model_dir, tmp_path / "run", max_steps=6, optimizer_steps_per_generation=1,
                  collapse_threshold=0.9, collapse_action="stop")
    with pytest.warns(UserWarning, match="zero reward variance.*stopping"):
        final = train_grpo(cfg, judge_examples(), reward=constant_reward, show=False)
    rows = [r for r in read_metrics(cfg.out) if "val_n" not in r]
    assert [r["step"] for r in rows] == [1, 2, 3]   # stopped after the 3rd generation batch (the window)
    assert all(r["zero_variance_groups"] == 1.0 for r in rows)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["summary"]["steps"] == 3
    assert manifest["summary"]["stopped"].startswith("collapse: 1.00 of the prompt groups") and "step 3" in \
        manifest["summary"]["stopped"]
    assert (final / "config.json").exists() and (final / JUDGE_META).exists()
    assert run_summary(cfg)["stopped"] == manifest["summary"]["stopped"]


def test_collapse_watch_warns_and_goes_on(tiny_model_dir, tmp_path):
    cfg = cfg_for(tiny_model_dir, tmp_path / "run", max_steps=4, optimizer_steps_per_generation=1,
                  collapse_threshold=0.9)
    with pytest.warns(UserWarning, match="zero reward variance") as seen:
        train_grpo(cfg, judge_examples(), reward=constant_reward, show=False)
    assert len([w for w in seen if "collapse" in str(w.message)]) == 2   # steps 3 and 4
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["summary"]["steps"] == 4 and "stopped" not in manifest["summary"]


def test_fields_added_later_keep_the_config_hash_at_their_defaults(tmp_path):
    from stepwiser.train.judge_config import manifest_config

    cfg = JudgeTrainConfig(model="m", out=str(tmp_path))
    config = manifest_config(cfg)
    assert "collapse_threshold" not in config and "collapse_action" not in config
    assert manifest_config(JudgeTrainConfig(model="m", out=str(tmp_path), collapse_threshold=0.9))[
        "collapse_threshold"] == 0.9
    with pytest.raises(ValueError, match="collapse_threshold"):
        JudgeTrainConfig(model="m", out="o", collapse_threshold=1.5)
    with pytest.raises(ValueError, match="collapse_action must be one of"):
        JudgeTrainConfig(model="m", out="o", collapse_action="widen")
