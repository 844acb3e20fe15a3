"""SFT on TRL (stepwiser.train.sft) and `stepwiser train-policy`, on the tiny random model (CPU, offline)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepwiser.cli import main
from stepwiser.errors import ConfigMismatchError, StepwiserError
from stepwiser.data.prompts import policy_messages
from stepwiser.io.records import Problem, SFTExample, write_jsonl
from stepwiser.train.sft import (
    SFTTrainConfig,
    learning_curve,
    load_conversations,
    make_trainer,
    record_conversation,
    resolve_grad_accum,
    sft_example_conversation,
    tokenize_multiturn,
    train_sft,
)

END = "<|im_end|>\n"  # what SmolLM2's ChatML template puts after an assistant message


def examples(n=8):
    out = []
    for i in range(n):
        a, b = i + 2, 2 * i + 3
        resp = (f"<chunk>Tom has {a} + {b} = {a + b} apples.</chunk>\n"
                f"<chunk>He eats 1, so {a + b} - 1 = {a + b - 1}. The answer is \\boxed{{{a + b - 1}}}.</chunk>")
        out.append(sft_example_conversation(SFTExample(prompt=f"Tom has {a} apples and gets {b} more. "
                                                              f"He eats one. How many are left?", response=resp)))
    return out


def cfg_for(model, out, **kw):
    base = {"model": str(model), "out": str(out), "lr": 5e-3, "max_steps": 2, "per_device_batch": 2,
            "global_batch": 4, "packing": False, "max_length": 512, "logging_steps": 1, "save_steps": 100, "seed": 0}
    return SFTTrainConfig(**{**base, **kw})


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


# --------------------------------------------------------------------------- config

def test_grad_accum_is_derived_from_the_global_batch():
    assert resolve_grad_accum(32, 8, 1) == 4
    assert resolve_grad_accum(32, 4, 4) == 2
    assert resolve_grad_accum(32, 32, 1) == 1
    assert resolve_grad_accum(None, 4, 2, grad_accum=3) == 3
    assert resolve_grad_accum(24, 4, 2, grad_accum=3) == 3
    with pytest.raises(ValueError, match="not a multiple"):
        resolve_grad_accum(32, 3, 1)
    with pytest.raises(ValueError, match="!= global_batch"):
        resolve_grad_accum(32, 4, 2, grad_accum=3)


@pytest.mark.parametrize("kw, msg", [
    ({"lr": 0}, "lr=0"), ({"epochs": -1}, "epochs"), ({"per_device_batch": 0}, "per_device_batch"),
    ({"scheduler": "cosinus"}, "scheduler must be one of linear, cosine"), ({"warmup_ratio": 1.5}, "warmup_ratio"),
    ({"lora_dropout": 1.0}, "lora_dropout"), ({"max_length": 8}, "max_length"),
    ({"global_batch": None}, "give global_batch"), ({"max_steps": 0}, "max_steps"),
])
def test_config_validation_names_the_bad_setting(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SFTTrainConfig(model="m", out="o", **kw)


# --------------------------------------------------------------------------- data conversion

def test_records_become_policy_conversations(tmp_path):
    resp = "<chunk>2 + 3 = 5. \\boxed{5}</chunk>"
    want = {"prompt": policy_messages("What is 2 + 3?"), "completion": [{"role": "assistant", "content": resp}]}
    assert record_conversation({"prompt": "What is 2 + 3?", "response": resp, "source": "synth"}) == want
    prob = Problem(id="p1", problem="What is 2 + 3?", answer="5", source="synth", solution=resp)
    assert record_conversation(prob.to_dict()) == want
    assert record_conversation(want) == want
    msgs = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "+"}]}
    assert record_conversation(msgs) == msgs
    with pytest.raises(StepwiserError, match="f.jsonl:3: not a training record"):
        record_conversation({"question": "?"}, "f.jsonl:3")
    with pytest.raises(StepwiserError, match="no `solution`"):
        record_conversation({"id": "p", "problem": "?", "answer": "1", "solution": None})
    write_jsonl(tmp_path / "probs.jsonl", [prob])
    assert load_conversations(tmp_path / "probs.jsonl") == [want]


# --------------------------------------------------------------------------- loss masks

def _labelled_text(tok, row):
    return tok.decode([t for t in row["labels"] if t != -100])


def test_loss_mask_is_exactly_the_completion(tiny_model_dir, tmp_path):
    exs = examples(4)
    trainer = make_trainer(cfg_for(tiny_model_dir, tmp_path), exs)
    tok, ds = trainer.processing_class, trainer.train_dataset
    assert len(ds) == len(exs)
    prompts = {tok.apply_chat_template(e["prompt"], add_generation_prompt=True, tokenize=False) for e in exs}
    got = sorted(_labelled_text(tok, row) for row in ds)
    assert got == sorted(e["completion"][0]["content"] + END for e in exs)
    for row in ds:  # the trained tokens are one block at the end: the prompt is entirely masked
        first = next(i for i, t in enumerate(row["labels"]) if t != -100)
        assert all(t != -100 for t in row["labels"][first:])
        assert row["labels"][first:] == row["input_ids"][first:]
        assert tok.decode(row["input_ids"][:first]) in prompts  # exactly the policy prompt, all masked


def test_packed_rows_keep_the_completion_masks(tiny_model_dir, tmp_path):
    exs = examples(6)
    trainer = make_trainer(cfg_for(tiny_model_dir, tmp_path, packing=True, max_length=600), exs)
    tok, ds = trainer.processing_class, trainer.train_dataset
    assert len(ds) < len(exs)  # several examples share a row
    docs = []
    for row in ds:
        start = 0
        for n in row["seq_lengths"]:
            docs.append(_labelled_text(tok, {"labels": row["labels"][start:start + n]}))
            start += n
    assert sorted(docs) == sorted(e["completion"][0]["content"] + END for e in exs)


def test_multiturn_trains_only_assistant_turns(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    msgs = [{"role": "system", "content": "Judge each step."}, {"role": "user", "content": "Step 1: 2+2=4"},
            {"role": "assistant", "content": "+"}, {"role": "user", "content": "Step 2: 4*3=13"},
            {"role": "assistant", "content": "-"}]
    out = tokenize_multiturn(tok, msgs)
    assert out["input_ids"] == tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    pieces, cur = [], []
    for t in out["labels"] + [-100]:
        if t != -100:
            cur.append(t)
        elif cur:
            pieces.append(tok.decode(cur))
            cur = []
    assert pieces == ["+" + END, "-" + END]
    with pytest.raises(StepwiserError, match="no assistant turn"):
        tokenize_multiturn(tok, msgs[:2])


# --------------------------------------------------------------------------- training runs

def test_full_fine_tuning_writes_a_plain_model_that_changed(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = train_sft(cfg_for(tiny_model_dir, tmp_path / "run"), examples())
    assert final == tmp_path / "run" / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.config.num_hidden_layers == 2
    tok = AutoTokenizer.from_pretrained(final)
    assert "<|im_start|>" in tok.chat_template
    before, after = weights(tiny_model_dir), weights(final)
    assert before.keys() == after.keys()
    assert any(not (before[k] == after[k]).all() for k in before)
    curve = learning_curve(tmp_path / "run")
    assert [c["step"] for c in curve] == [1, 2] and all(c["loss"] > 0 for c in curve)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["summary"]["steps"] == 2
    # same config again: the finished run is returned without training
    stamp = (final / "model.safetensors").stat().st_mtime_ns
    assert train_sft(cfg_for(tiny_model_dir, tmp_path / "run"), examples()) == final
    assert (final / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigMismatchError, match="lr"):
        train_sft(cfg_for(tiny_model_dir, tmp_path / "run", lr=1e-3), examples())


def test_lora_is_merged_into_a_plain_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    final = train_sft(cfg_for(tiny_model_dir, tmp_path / "lora", lora=True, lora_r=4, lr=5e-2), examples())
    assert not (final / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(final)
    before, after = weights(tiny_model_dir), weights(final)
    assert before.keys() == after.keys()  # no lora_A/lora_B tensors left
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert changed and all("proj" in k for k in changed)  # only the adapted linear layers moved


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):  # killed after step 3 was logged, checkpoint-2 being the last one
        def on_log(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    cfg = cfg_for(tiny_model_dir, tmp_path / "r", max_steps=4, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train_sft(cfg, examples(), callbacks=[Crash()])
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (tmp_path / "r" / "final").exists()
    assert [c["step"] for c in learning_curve(tmp_path / "r")] == [1, 2, 3]
    train_sft(cfg, examples())
    summary = json.loads((tmp_path / "r" / "manifest.json").read_text())["summary"]
    assert summary["steps"] == 4 and summary["resumed_from"].endswith("checkpoint-2")
    assert [c["step"] for c in learning_curve(tmp_path / "r")] == [1, 2, 3, 4]  # step 3 once: redone


# --------------------------------------------------------------------------- CLI

def test_cli_trains_on_synth_problems_with_recipe_and_flag_overrides(tiny_model_dir, tmp_path, capsys):
    probs = [Problem(id=f"p{i}", problem=f"What is {i} + 2?", answer=str(i + 2), source="synth",
                     solution=f"<chunk>{i} + 2 = {i + 2}. The answer is \\boxed{{{i + 2}}}.</chunk>") for i in range(4)]
    write_jsonl(tmp_path / "problems.jsonl", probs)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"train_policy:\n  model: {tiny_model_dir}\n  data: {tmp_path / 'problems.jsonl'}\n"
                      f"  lr: 1.0e-3\n  global_batch: 2\n  per_device_batch: 2\n  packing: false\n"
                      f"  max_length: 256\n  logging_steps: 1\n")
    rc = main(["train-policy", "--config", str(recipe), "-o", str(tmp_path / "out"), "--max-steps", "1",
               "--lr", "2e-3"])
    assert rc == 0
    assert capsys.readouterr().out.strip().endswith("final")
    cfg = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]
    assert cfg["lr"] == 2e-3 and cfg["global_batch"] == 2 and cfg["max_steps"] == 1 and not cfg["packing"]
    assert (tmp_path / "out" / "final" / "config.json").exists()


def test_cli_errors(tiny_model_dir, tmp_path, capsys):
    assert main(["train-policy", "--model", str(tiny_model_dir), "-o", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "?"}\n')
    assert main(["train-policy", "--model", str(tiny_model_dir), "--data", str(bad), "-o", str(tmp_path / "o")]) == 1
    assert "not a training record" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    write_jsonl(good, [SFTExample(prompt="1+1?", response="<chunk>\\boxed{2}</chunk>")])
    assert main(["train-policy", "--model", str(tiny_model_dir), "--data", str(good), "-o", str(tmp_path / "o"),
                 "--global-batch", "3", "--per-device-batch", "2"]) == 1
    assert "not a multiple" in capsys.readouterr().err


@pytest.mark.parametrize("packing", [False, True])
def test_cpu_loss_equals_trl_loss_and_gradients(tiny_model_dir, tmp_path, packing):
    import torch
    from trl import SFTTrainer

    from stepwiser.train.cpu_loss import CPUSFTTrainer

    trainer = make_trainer(cfg_for(tiny_model_dir, tmp_path, packing=packing, per_device_batch=4), examples(4))
    assert isinstance(trainer, CPUSFTTrainer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    model = trainer.model.train()
    grads = []
    for compute in (SFTTrainer.compute_loss, CPUSFTTrainer.compute_loss):
        model.zero_grad()
        loss = compute(trainer, model, dict(batch))
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (ref, g_ref), (got, g_got) = grads
    assert got == pytest.approx(ref, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_ref, g_got))
    assert trainer._metrics["train"]["mean_token_accuracy"]  # the CPU path logs TRL's metrics too
