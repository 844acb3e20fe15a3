"""The judge's SFT methods (stepwiser.train.warmup, .rft, .judge_sft): format warm-up, RFT, and warm-up before GRPO."""
from __future__ import annotations

import json

import pytest
from fakes import FakeEngine
from test_train_grpo import judge_examples, write_data

from stepwiser.core.verdict import parse_verdict
from stepwiser.errors import StepwiserError
from stepwiser.io.records import JudgeExample
from stepwiser.judges.base import JUDGE_META, JudgeItem
from stepwiser.judges.prompts import judge_messages
from stepwiser.stages.train_judge import train_judge
from stepwiser.train.grpo import is_bare_verdict
from stepwiser.train.judge_config import JudgeTrainConfig
from stepwiser.train.judge_metrics import read_metrics
from stepwiser.train.rft import rft_conversations, rft_sample, train_rft
from stepwiser.train.warmup import warmup_completion, warmup_conversations, warmup_verdict


def sft_cfg(model, out, data, **kw):
    base = {"model": str(model), "out": str(out), "data": str(data), "lr": 1e-3, "format_warmup_lr": 1e-3,
            "max_steps": 1, "per_device_batch": 2, "global_batch": 2, "max_length": 512, "save_steps": 100,
            "max_completion_length": 8, "optimizer_steps_per_generation": 1, "num_generations": 2}
    return JudgeTrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- format warm-up

def test_warmup_ignores_labels_and_draws_verdicts_at_chance():
    exs = judge_examples(8)
    flipped = [JudgeExample(**{**e.to_dict(), "label": 1 - e.label}) for e in exs]
    assert warmup_conversations(exs, True, seed=3) == warmup_conversations(flipped, True, seed=3)
    items = [JudgeItem(f"Problem {i}", [], f"Step {i}: {i} + 1 = {i + 1}.") for i in range(400)]
    share = sum(warmup_verdict(it, 0) for it in items) / len(items)
    assert 0.43 < share < 0.57
    assert [warmup_verdict(it, 0) for it in items] != [warmup_verdict(it, 1) for it in items]  # the seed matters


def test_warmup_completions_have_the_judge_format():
    item = JudgeItem("Tom has 5 apples and buys 3. How many?", ["Tom has 5 apples."],
                     "He buys 3 more, so 5 + 3 = 8. Then he has 8 apples.")
    text = warmup_completion(item, cot=True, seed=0)
    assert parse_verdict(text) == warmup_verdict(item, 0)
    assert text.startswith(("Goal of the new chunk: He buys 3 more, so 5 + 3 = 8.",
                            "The new chunk aims to continue with: He buys", "What the new chunk does: He buys"))
    assert "Results it states: 8." in text and "It follows 1 previous step." in text
    assert "8 + " not in text  # stated results are quoted, never recomputed
    bare = warmup_completion(item, cot=False, seed=0)
    assert is_bare_verdict(bare) and parse_verdict(bare) == warmup_verdict(item, 0)
    ex = judge_examples(1)[0]
    row = warmup_conversations([ex], cot=False)[0]
    assert row["prompt"] == judge_messages(JudgeItem(ex.problem, ex.history, ex.chunk), False)
    assert row["completion"][0]["role"] == "assistant"


def test_warmup_then_grpo_chains_the_models(tiny_model_dir, tmp_path):
    data = write_data(tmp_path)
    cfg = sft_cfg(tiny_model_dir, tmp_path / "run", data, method="grpo-nocot", format_warmup_steps=1)
    final = train_judge(cfg, show=False)
    warm = tmp_path / "run" / "warmup" / "final"
    assert json.loads((warm / JUDGE_META).read_text())["method"] == "warmup"
    assert json.loads((warm / JUDGE_META).read_text())["cot"] is False
    meta = json.loads((final / JUDGE_META).read_text())
    assert meta["method"] == "grpo-nocot" and meta["cot"] is False and meta["warmup"] is True
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["init_model"] == str(warm)
    assert {"format_failure", "clip_high"} <= set().union(*read_metrics(cfg.out))


def test_warmup_method_is_the_control(tiny_model_dir, tmp_path):
    data = write_data(tmp_path)
    final = train_judge(sft_cfg(tiny_model_dir, tmp_path / "run", data, method="warmup", format_warmup_steps=1), show=False)
    meta = json.loads((final / JUDGE_META).read_text())
    assert meta == {**meta, "kind": "generative", "method": "warmup", "cot": True, "label_agnostic": True}
    rows = [json.loads(x) for x in (tmp_path / "run" / "warmup_data.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(parse_verdict(r["completion"][0]["content"]) is not None for r in rows)


# --------------------------------------------------------------------------- rejection sampling

def verdict_engine():
    """Each sample is a short analysis ending in a random verdict, sometimes none."""
    def fn(text, rng, request):
        return rng.choice(["ok \\boxed{Positive}", "bad \\boxed{Negative}", "hmm", "fine. \\boxed{Positive}"])
    return FakeEngine(fn)


def test_rft_keeps_only_judgments_that_match_the_label(tmp_path):
    from stepwiser.judges.generative import GenerativeJudge

    exs = judge_examples(16)
    engine = verdict_engine()
    judge = GenerativeJudge(engine, cot=True, temperature=1.0)
    samples = rft_sample(exs, judge, 4, tmp_path / "s.jsonl", show=False)
    assert [s["key"] for s in samples] == [e.key for e in exs] and all(len(s["texts"]) == 4 for s in samples)
    rows, stats = rft_conversations(exs, samples, balance=False)
    matching = sum(len({t for t in s["texts"] if parse_verdict(t) == e.label}) for e, s in zip(exs, samples))
    assert len(rows) == matching == stats["kept_positive"] + stats["kept_negative"] > 0
    by_prompt = {json.dumps(judge_messages(JudgeItem(e.problem, e.history, e.chunk))): e.label for e in exs}
    for r in rows:
        assert parse_verdict(r["completion"][0]["content"]) == by_prompt[json.dumps(r["prompt"])]
    assert stats["kept_positive"] > stats["kept_negative"] > 0
    balanced, bstats = rft_conversations(exs, samples, balance=True)
    labels = [by_prompt[json.dumps(r["prompt"])] for r in balanced]
    assert labels.count(1) == labels.count(0) == stats["kept_negative"] == bstats["trained"] // 2
    # resumed sampling does not call the engine again
    calls = len(engine.calls)
    assert rft_sample(exs, judge, 4, tmp_path / "s.jsonl", show=False) == samples and len(engine.calls) == calls


def test_rft_trains_on_kept_judgments(tiny_model_dir, tmp_path):
    data = write_data(tmp_path)
    cfg = sft_cfg(tiny_model_dir, tmp_path / "run", data, method="rft", rft_k=4)
    final = train_judge(cfg, engine=verdict_engine(), show=False)
    meta = json.loads((final / JUDGE_META).read_text())
    assert meta["method"] == "rft" and meta["kind"] == "generative" and meta["rft"]["trained"] > 0

    def never(text, rng, request):
        return "no verdict"
    with pytest.raises(StepwiserError, match="kept no judgment"):
        train_rft(sft_cfg(tiny_model_dir, tmp_path / "none", data, method="rft"), judge_examples(), FakeEngine(never),
                  show=False)
