"""The discriminative baseline: its training mask, disc-SFT runs and DiscriminativeJudge (P(+) scores)."""
from __future__ import annotations

import json
import math

import pytest

from stepwiser.errors import StepwiserError
from stepwiser.io.records import write_jsonl
from stepwiser.judges.base import JUDGE_META, JudgeItem
from stepwiser.judges.discriminative import (
    DiscriminativeJudge,
    answer_token_ids,
    disc_prompt_messages,
    plus_probability,
)
from stepwiser.judges.load import load_judge
from stepwiser.judges.prompts import DISC_SYSTEM, disc_messages
from stepwiser.stages.train_judge import train_judge
from stepwiser.train.disc import disc_conversations, load_disc_records
from stepwiser.train.judge_config import JudgeTrainConfig
from stepwiser.train.sft import tokenize_multiturn


def disc_records(n=4):
    out = []
    for i in range(n):
        a = i + 2
        chunks = [f"Tom has {a} apples.", f"He buys 3, so {a} + 3 = {a + 3 + i % 2}.", f"The answer is {a + 3}."]
        out.append({"problem_id": f"p{i}", "sample_id": 0, "problem": f"Tom has {a} apples and buys 3. How many?",
                    "chunks": chunks, "labels": [1, 1 - i % 2, 1 - i % 2], "label_type": "rel_effective"})
    return out


def test_mask_covers_exactly_the_assistant_answers(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    rec = disc_records(2)[1]
    (conv,) = disc_conversations([rec])
    enc = tokenize_multiturn(tok, conv["messages"])
    ids, labels = enc["input_ids"], enc["labels"]
    assert ids == tok.apply_chat_template(conv["messages"], tokenize=True, return_dict=True)["input_ids"]
    spans, cur = [], []
    for i, y in zip(ids, labels):
        if y == -100:
            if cur:
                spans.append(cur)
            cur = []
        else:
            assert y == i
            cur.append(i)
    if cur:
        spans.append(cur)
    # one span per assistant turn: the answer and the template's end of turn, nothing of the user turns
    assert [tok.decode(s) for s in spans] == [f"{a}<|im_end|>\n" for a in ("+", "-", "-")]
    assert len(spans) == len(rec["chunks"]) and sum(y != -100 for y in labels) == 3 * len(spans)


def test_prompt_messages_answer_the_history_with_plus():
    msgs = disc_prompt_messages(JudgeItem("P?", ["a", "b"], "c"))
    assert msgs == disc_messages("P?", ["a", "b", "c"], [1, 1, 1])[:-1]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"] == DISC_SYSTEM and msgs[2]["content"] == msgs[4]["content"] == "+"
    assert msgs[-1]["content"] == "Step 3:\nc"


def test_answer_tokens_and_plus_probability(smollm2_tokenizer_dir):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    pos, neg = answer_token_ids(tok)
    assert tok.decode([pos]) == "+" and tok.decode([neg]) == "-"
    logits = torch.zeros(2, 10)
    logits[0, 3], logits[0, 5] = 2.0, 0.0
    logits[1, 3], logits[1, 5] = -1.0, 1.0
    p = plus_probability(logits, 3, 5).tolist()
    assert p[0] == pytest.approx(1 / (1 + math.exp(-2))) and p[1] == pytest.approx(1 / (1 + math.exp(2)))


def test_bad_disc_records(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"problem": "p", "chunks": ["a", "b"], "labels": [1]}])
    with pytest.raises(StepwiserError, match="same length"):
        load_disc_records(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"problem": "p", "chunks": ["a"]}])
    with pytest.raises(StepwiserError, match="judge-data --format disc"):
        load_disc_records(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"problem": "p", "chunks": ["a"], "labels": [0.5]}])
    with pytest.raises(StepwiserError, match="0 or 1"):
        load_disc_records(tmp_path)


def test_disc_sft_run_and_discriminative_judge(tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "jd" / "train.jsonl", disc_records())
    cfg = JudgeTrainConfig(model=str(tiny_model_dir), out=str(tmp_path / "run"), method="disc-sft",
                           data=str(tmp_path / "jd"), lr=1e-3, max_steps=2, per_device_batch=2, global_batch=2,
                           max_length=512, save_steps=100)
    final = train_judge(cfg, show=False)
    meta = json.loads((final / JUDGE_META).read_text())
    assert meta["kind"] == "discriminative" and meta["method"] == "disc-sft" and meta["label_type"] == "rel_effective"
    items = [JudgeItem("Tom has 2 apples and buys 3. How many?", ["Tom has 2 apples."][:i], f"chunk {i}")
             for i in range(2)] + [JudgeItem("A much longer problem " * 5, ["x", "y", "z"], "2 + 2 = 5")]
    judge = load_judge(str(final), engine_opts={"device": "cpu"})
    assert isinstance(judge, DiscriminativeJudge)
    out = judge.judge(items, k=2)
    scores = [j.score for j in out]
    assert all(0 <= s <= 1 for s in scores)
    assert [j.verdicts for j in out] == [[int(s >= 0.5)] * 2 for s in scores]
    one_by_one = DiscriminativeJudge(str(final), batch_size=1, device="cpu").scores(items)
    assert one_by_one == pytest.approx(scores, abs=1e-5)   # left padding does not change a score
    median = sorted(scores)[1]
    strict = DiscriminativeJudge(str(final), threshold=median, device="cpu").judge(items)
    assert [j.verdict for j in strict] == [int(s >= median) for s in scores]
    with pytest.raises(ValueError, match="threshold"):
        DiscriminativeJudge(str(final), threshold=1.5)
