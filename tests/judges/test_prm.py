"""`eval processbench --prm`: Qwen2.5-Math-PRM-style step rewards, on tiny local models of the architecture."""
import json

import pytest
from eval_data import records, write_bench

from stepwiser.cli import main
from stepwiser.errors import StepwiserError
from stepwiser.data.bench import BenchItem
from stepwiser.judges.prm import PRM_SYSTEM, STEP_TOKEN, ProcessRewardModel, first_below, prm_class

ITEMS = [BenchItem("s", "a", "What is 2 + 3?", ("2 + 3 = 5.", "So the answer is \\boxed{5}."), -1),
         BenchItem("s", "b", "A longer problem: what is 4 * 6 - 1?", ("4 * 6 = 24.", "24 - 1 = 22.", "\\boxed{22}"), 1),
         BenchItem("s", "c", "Q?", ("One step only.",), 0)]


def _tiny(out, tokenizer_dir, arch: str):
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForTokenClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_tokens([STEP_TOKEN], special_tokens=True)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, num_labels=2,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = prm_class()(cfg) if arch == "prm" else Qwen2ForTokenClassification(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory, smollm2_tokenizer_dir):
    return _tiny(tmp_path_factory.mktemp("tiny-prm"), smollm2_tokenizer_dir, "prm")


def official_step_rewards(model_dir, item):
    """The model card's recipe, one unpadded sequence at a time (make_step_rewards)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from stepwiser.judges.prm import load_prm_model

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = load_prm_model(str(model_dir), device="cpu")
    messages = [{"role": "system", "content": PRM_SYSTEM}, {"role": "user", "content": item.problem},
                {"role": "assistant", "content": STEP_TOKEN.join(item.steps) + STEP_TOKEN}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    input_ids = tok.encode(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
    token_masks = input_ids == tok.encode(STEP_TOKEN)[0]
    probabilities = F.softmax(logits, dim=-1) * token_masks.unsqueeze(-1)
    sample = probabilities[0]
    return sample[sample != 0].view(-1, 2)[:, 1].tolist()


def test_weight_names_are_those_of_the_published_checkpoints(prm_dir):
    from safetensors import safe_open

    with safe_open(str(prm_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias", "model.embed_tokens.weight"} <= keys
    assert json.loads((prm_dir / "config.json").read_text())["architectures"] == ["Qwen2ForProcessRewardModel"]


def test_step_scores_match_the_official_recipe_with_batching(prm_dir):
    prm = ProcessRewardModel(str(prm_dir), batch_size=2, device="cpu")
    got = prm.step_scores(ITEMS)
    for item, scores in zip(ITEMS, got):
        assert len(scores) == len(item.steps)
        assert scores == pytest.approx(official_step_rewards(prm_dir, item), abs=1e-5)


def test_threshold_decides_the_first_negative_step(prm_dir):
    assert first_below([0.9, 0.4, 0.1], 0.5) == 1 and first_below([0.9, 0.8], 0.5) == -1
    prm = ProcessRewardModel(str(prm_dir), device="cpu")
    scores = prm.step_scores(ITEMS)
    for threshold, expected in ((0.0, [-1, -1, -1]), (1.0, [0, 0, 0])):
        prm.threshold = threshold
        assert [f["prediction"] for _, f in prm.predict(ITEMS)] == expected
    mid = sorted(p for s in scores for p in s)[len(ITEMS)]
    prm.threshold = mid
    out = {it.id: f for it, f in prm.predict(ITEMS)}
    for it, s in zip(ITEMS, scores):
        assert out[it.id]["prediction"] == first_below(s, mid)
        assert out[it.id]["step_verdicts"] == [int(p >= mid) for p in s]


def test_token_classification_stand_in_and_errors(tmp_path, smollm2_tokenizer_dir, tiny_model_dir):
    tc = _tiny(tmp_path / "tc", smollm2_tokenizer_dir, "token-classification")
    assert [len(s) for s in ProcessRewardModel(str(tc), device="cpu").step_scores(ITEMS)] == [2, 3, 1]
    with pytest.raises(StepwiserError, match="does not encode the step token"):
        ProcessRewardModel(str(tiny_model_dir), device="cpu")       # SmolLM2 tokenizer: no <extra_0>
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "causal")
    shutil.copy(tc / "tokenizer.json", tmp_path / "causal" / "tokenizer.json")
    shutil.copy(tc / "tokenizer_config.json", tmp_path / "causal" / "tokenizer_config.json")
    with pytest.raises(StepwiserError, match="not a supported PRM"):
        ProcessRewardModel(str(tmp_path / "causal"), device="cpu")
    prm = ProcessRewardModel(str(tc), device="cpu")
    with pytest.raises(StepwiserError, match="2 step tokens for 1 steps"):
        prm.step_scores([BenchItem("s", "x", "Q", (f"a {STEP_TOKEN} b",), 0)])


def test_cli_prm_writes_scores(tmp_path, prm_dir):
    data = write_bench(tmp_path / "bench", {"s": [{"id": it.id, "problem": it.problem, "steps": list(it.steps),
                                                    "label": it.label} for it in ITEMS]})
    out = tmp_path / "out"
    assert main(["eval", "processbench", "--prm", str(prm_dir), "--data", str(data), "-o", str(out),
                 "--threshold", "0", "--device", "cpu", "--bootstrap", "0"]) == 0
    recs = records(out / "s.jsonl")
    assert [len(recs[i]["scores"]) for i in "abc"] == [2, 3, 1] and {r["prediction"] for r in recs.values()} == {-1}
    s = json.loads((out / "summary.json").read_text())
    assert s["meta"]["mode"] == "prm" and s["subsets"]["s"]["correct_acc"] == 100.0
