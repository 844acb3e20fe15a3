"""`stepwiser init-model`: a random micro model folder that every loader and the hf engine accept,
deterministic from its seed, refused into a non-empty folder, with a tokenizer checked for coverage."""
from __future__ import annotations

import json
import time

import pytest

from stepwiser.errors import StepwiserError
from stepwiser.models.micro import CoverageError, build_tokenizer, init_model, parameter_count
from stepwiser.stages.init_model import InitModelConfig, run_init_model

N = 100  # problems per corpus setting (the vocabulary saturates well before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "m"
    summary = run_init_model(InitModelConfig(out=str(out), size="micro-1m", seed=0, vocab_problems=N))
    return out, summary


def test_folder_and_summary(model_dir):
    out, s = model_dir
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja", "manifest.json"} <= names
    v = s["vocab_size"]
    assert 550 < v < 700
    assert s["parameters"] == 128 * v + 4 * (4 * 128 * 128 + 3 * 128 * 512 + 2 * 128) + 128
    assert (s["size"], s["seed"], s["max_positions"], s["corpus_problems"]) == ("micro-1m", 0, 1024, 4 * N)
    assert 300 < s["longest_judge_prompt_tokens"] < 1024
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"], config["tie_word_embeddings"], config["vocab_size"],
            config["max_position_embeddings"]) == ("llama", 128, 4, 4, 512, True, v, 1024)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "init-model" and manifest["complete"] and manifest["summary"] == s


def test_micro_6m_shape(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir[0]))
    v = len(tok)
    model = init_model("micro-6m", tok, seed=0)
    assert parameter_count(model) == 256 * v + 6 * (4 * 256 * 256 + 3 * 256 * 1024 + 2 * 256) + 256
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.intermediate_size) == (256, 6, 1024)


def test_same_seed_same_bytes(model_dir, tmp_path):
    out, _ = model_dir
    run_init_model(InitModelConfig(out=str(tmp_path / "a"), seed=0, vocab_problems=N))
    run_init_model(InitModelConfig(out=str(tmp_path / "b"), seed=1, vocab_problems=N))
    weights = (out / "model.safetensors").read_bytes()
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == weights
    assert (tmp_path / "b" / "model.safetensors").read_bytes() != weights
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()


def test_loads_and_generates_through_the_engine(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stepwiser.data.prompts import policy_messages
    from stepwiser.engines import Request, SamplingParams, make_engine

    out, s = model_dir
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert parameter_count(model) == s["parameters"]
    assert AutoTokenizer.from_pretrained(str(out)).eos_token == "<|end|>"
    engine = make_engine("hf", str(out), device="cpu")
    assert engine.max_model_len == 1024
    request = Request(messages=policy_messages("Tom has 3 pencils. He buys 4 more. How many pencils does he have?"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: extra threads only contend on a loaded machine
    try:
        engine.generate([request], SamplingParams(n=1, temperature=0, max_tokens=2))  # warm-up
        t0 = time.perf_counter()
        outs = engine.generate([request], SamplingParams(n=4, temperature=1.0, max_tokens=8, seed=3))
        elapsed = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    assert len(outs[0]) == 4 and all(1 <= c.completion_tokens <= 8 for c in outs[0])
    assert elapsed < 1.0
    again = engine.generate([request], SamplingParams(n=4, temperature=1.0, max_tokens=8, seed=3))
    assert [c.text for c in again[0]] == [c.text for c in outs[0]]


def test_non_empty_folder_refused_without_overwrite(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(StepwiserError, match="is not empty; use a new folder, or --overwrite to replace it"):
        run_init_model(InitModelConfig(out=str(out), vocab_problems=N))
    assert (out / "notes.txt").read_text() == "keep me"
    run_init_model(InitModelConfig(out=str(out), vocab_problems=N), overwrite=True)
    assert not (out / "notes.txt").exists() and (out / "model.safetensors").is_file()
    (tmp_path / "f").write_text("x")
    with pytest.raises(StepwiserError, match="is a file"):
        run_init_model(InitModelConfig(out=str(tmp_path / "f"), vocab_problems=N))


def test_reused_tokenizer_is_checked_at_start(model_dir, tmp_path):
    out, s = model_dir
    again = run_init_model(InitModelConfig(out=str(tmp_path / "six"), size="micro-6m", tokenizer=str(out),
                                           vocab_problems=N))
    assert again["vocab_size"] == s["vocab_size"]
    assert (tmp_path / "six" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    small = tmp_path / "small"
    build_tokenizer(["Tom has 3 pencils.\n<chunk>3 + 4 = 7.</chunk>"]).save_pretrained(str(small))
    with pytest.raises(CoverageError, match=r"^the micro domain's texts \(tokenizer .*small\) outside the micro "
                                            r"tokenizer's vocabulary: \d+ unknown piece"):
        run_init_model(InitModelConfig(out=str(tmp_path / "x"), tokenizer=str(small), vocab_problems=N))
    assert not (tmp_path / "x").exists()


def test_tokenizer_folder_must_hold_a_micro_tokenizer(model_dir, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    with pytest.raises(StepwiserError, match="no tokenizer.json; give a folder written by `stepwiser init-model`"):
        run_init_model(InitModelConfig(out=str(tmp_path / "x"), tokenizer=str(tmp_path), vocab_problems=N))
    backend = AutoTokenizer.from_pretrained(str(model_dir[0])).backend_tokenizer
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(str(tmp_path / "plain"))
    with pytest.raises(StepwiserError, match='not a micro tokenizer .*lacks "stepwiser_micro": true'):
        run_init_model(InitModelConfig(out=str(tmp_path / "x"), tokenizer=str(tmp_path / "plain"), vocab_problems=N))


def test_too_short_context_refused(tmp_path):
    with pytest.raises(StepwiserError, match=r"the longest judge prompt of the micro domain is \d+ tokens, "
                                             r"more than --max-positions 64"):
        run_init_model(InitModelConfig(out=str(tmp_path / "m"), max_positions=64, vocab_problems=N))
    assert not (tmp_path / "m").exists()


def test_cli(tmp_path, capsys):
    from stepwiser.cli import main

    out = tmp_path / "m"
    args = ["init-model", "--size", "micro-1m", "--seed", "2", "-o", str(out), "--vocab-problems", "20"]
    assert main(args) == 0
    assert "parameters" in capsys.readouterr().out
    assert main(args) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert main(["init-model", "--size", "micro-2m", "-o", str(tmp_path / "n")]) == 2
    assert main(["init-model", "--seed", "1"]) == 2  # -o is required
