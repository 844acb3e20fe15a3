"""The compact judge prompt (`judge_prompt: compact`): exact text, recorded in a trained judge's metadata and
followed by `load_judge`."""
import json

import pytest

from stepwiser.judges.base import JUDGE_META, JudgeItem
from stepwiser.judges.prompts import JUDGE_PROMPTS, judge_messages

ITEM = JudgeItem(problem="Ann has 3 apples and buys 4. How many?", history=["She has 3 apples."],
                 chunk="She has 3 + 4 = 7 apples.")


def test_compact_prompt_exact_text():
    body = judge_messages(ITEM, cot=False, prompt="compact")[0]["content"]
    assert body == ("Judge the new chunk only (assume the previous reasoning as given).\n\n"
                    "### Problem\nAnn has 3 apples and buys 4. How many?\n\n"
                    "### Previous reasoning\nStep 1: She has 3 apples.\n\n"
                    "### New chunk\nShe has 3 + 4 = 7 apples.\n\n### End of input")
    cot = judge_messages(ITEM, cot=True, prompt="compact")[0]["content"]
    assert cot.startswith("First analyse the new chunk step by step, then give your judgment.\n\n### Problem\n")


def test_compact_is_shorter_and_full_is_the_default():
    full = judge_messages(ITEM, cot=False)[0]["content"]
    assert full == judge_messages(ITEM, cot=False, prompt="full")[0]["content"]
    assert len(judge_messages(ITEM, cot=False, prompt="compact")[0]["content"]) < len(full) / 2
    assert JUDGE_PROMPTS == ("full", "compact")
    with pytest.raises(ValueError, match="full, compact"):
        judge_messages(ITEM, prompt="short")


def test_load_judge_follows_the_recorded_prompt(tmp_path, monkeypatch):
    from stepwiser.judges import load

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / JUDGE_META).write_text(json.dumps({"kind": "generative", "cot": False, "prompt": "compact"}))
    monkeypatch.setattr("stepwiser.engines.build_engine", lambda model, opts: object())
    judge = load.load_judge(str(tmp_path))
    assert judge.prompt == "compact" and judge.cot is False
