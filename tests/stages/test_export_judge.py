"""`stepwiser export-judge`: train-judge checkpoints as judge folders (stepwiser.stages.export_judge), tiny model, CPU."""
from __future__ import annotations

import json
import shutil

import pytest
from test_disc import disc_records
from test_train_grpo import cfg_for, first_token_parity_reward, judge_examples, write_data

from stepwiser.cli import main
from stepwiser.errors import StepwiserError
from stepwiser.io.records import write_jsonl
from stepwiser.judges.base import JUDGE_META
from stepwiser.judges.discriminative import DiscriminativeJudge
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.load import load_judge
from stepwiser.stages.export_judge import checkpoints_of, export_checkpoint, run_meta
from stepwiser.stages.train_judge import train_judge
from stepwiser.train.grpo import train_grpo
from stepwiser.train.judge_config import JudgeTrainConfig


def tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def same_tensors(a, b) -> bool:
    return set(a) == set(b) and all((a[k] == b[k]).all() for k in a)


@pytest.fixture(scope="module")
def grpo_run(tiny_model_dir, tmp_path_factory):
    """A 2-step GRPO run (stand-in reward so the weights move) with checkpoints at steps 1 and 2."""
    tmp = tmp_path_factory.mktemp("grpo")
    cfg = cfg_for(tiny_model_dir, tmp / "run", lr=0.05, max_steps=2, save_steps=1, max_completion_length=4,
                  data=str(write_data(tmp)))
    train_grpo(cfg, judge_examples(), reward=first_token_parity_reward, show=False)
    return tmp / "run"


def test_grpo_run_writes_its_meta_first_and_exports_every_checkpoint(grpo_run, tmp_path, capsys):
    meta = json.loads((grpo_run / JUDGE_META).read_text())
    assert meta == json.loads((grpo_run / "final" / JUDGE_META).read_text())
    assert meta["method"] == "grpo" and meta["label_type"] == "rel_effective"
    rc = main(["export-judge", str(grpo_run), "-o", str(tmp_path / "x")])
    assert rc == 0, capsys.readouterr().err
    outs = capsys.readouterr().out.split()
    assert outs == [str(tmp_path / "x" / "checkpoint-1"), str(tmp_path / "x" / "checkpoint-2")]
    for n, out in ((1, tmp_path / "x" / "checkpoint-1"), (2, tmp_path / "x" / "checkpoint-2")):
        got = json.loads((out / JUDGE_META).read_text())
        assert got == {**meta, "checkpoint": str(grpo_run / "checkpoints" / f"checkpoint-{n}"), "step": n,
                       "tokenizer_from": got["tokenizer_from"]}
        assert same_tensors(tensors(out), tensors(grpo_run / "checkpoints" / f"checkpoint-{n}"))
        assert not (out / "optimizer.pt").exists() and not (out / "trainer_state.json").exists()
    # the last checkpoint is the final model; the first differs from it (the export is not a copy of final)
    assert same_tensors(tensors(tmp_path / "x" / "checkpoint-2"), tensors(grpo_run / "final"))
    assert not same_tensors(tensors(tmp_path / "x" / "checkpoint-1"), tensors(grpo_run / "final"))
    judge = load_judge(str(tmp_path / "x" / "checkpoint-1"), engine_opts={"engine": "hf", "device": "cpu"},
                       max_tokens=4)
    assert isinstance(judge, GenerativeJudge) and judge.cot is True
    # rerunning is a no-op; another checkpoint into an existing export is refused unless --overwrite
    assert main(["export-judge", str(grpo_run), "-o", str(tmp_path / "x")]) == 0
    with pytest.raises(StepwiserError, match="not an export of"):
        export_checkpoint(grpo_run / "checkpoints" / "checkpoint-1", tmp_path / "x" / "checkpoint-2")
    export_checkpoint(grpo_run / "checkpoints" / "checkpoint-1", tmp_path / "x" / "checkpoint-2", overwrite=True)
    assert json.loads((tmp_path / "x" / "checkpoint-2" / JUDGE_META).read_text())["step"] == 1
    assert not (tmp_path / "x" / "checkpoint-2.tmp").exists()


def test_older_grpo_run_meta_from_the_manifest_and_tokenizer_from_the_start_model(grpo_run, tiny_model_dir,
                                                                                  tmp_path):
    """A stopped run of an earlier version: no run-level meta, no final/, a checkpoint without tokenizer."""
    run = tmp_path / "run"
    shutil.copytree(grpo_run, run)
    (run / JUDGE_META).unlink()
    shutil.rmtree(run / "final")
    ck = run / "checkpoints" / "checkpoint-1"
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (ck / f).unlink(missing_ok=True)
    meta = run_meta(run)
    assert meta == {**meta, "kind": "generative", "method": "grpo", "cot": True, "label_type": "rel_effective"}
    out = export_checkpoint(ck, tmp_path / "judge")
    got = json.loads((out / JUDGE_META).read_text())
    assert got["tokenizer_from"] == str(tiny_model_dir)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template == AutoTokenizer.from_pretrained(str(tiny_model_dir)).chat_template
    # no meta anywhere and a manifest that names no GRPO method: a clear error
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"].pop("method")
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StepwiserError, match="cannot tell which judge"):
        export_checkpoint(ck, tmp_path / "judge2")
    assert not (tmp_path / "judge2").exists()


def test_lora_checkpoint_is_merged_into_a_plain_model(tiny_model_dir, tmp_path):
    cfg = cfg_for(tiny_model_dir, tmp_path / "run", lr=0.05, lora=True, lora_r=4, max_steps=1, save_steps=1,
                  max_completion_length=4)
    final = train_grpo(cfg, judge_examples(), reward=first_token_parity_reward, show=False)
    ck = tmp_path / "run" / "checkpoints" / "checkpoint-1"
    assert (ck / "adapter_config.json").exists()
    out = export_checkpoint(ck, tmp_path / "judge")
    assert not (out / "adapter_config.json").exists()
    got, merged = tensors(out), tensors(final)
    assert set(got) == set(tensors(tiny_model_dir))
    assert all(got[k].allclose(merged[k], atol=1e-6) for k in got)   # the one checkpoint = the final model


def test_disc_sft_checkpoint_exports_a_discriminative_judge(tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "jd" / "train.jsonl", disc_records())
    cfg = JudgeTrainConfig(model=str(tiny_model_dir), out=str(tmp_path / "run"), method="disc-sft",
                           data=str(tmp_path / "jd"), lr=1e-3, max_steps=2, per_device_batch=2, global_batch=2,
                           max_length=512, save_steps=1, save_total_limit=5)
    train_judge(cfg, show=False)
    [c1, c2] = checkpoints_of(tmp_path / "run")
    out = export_checkpoint(c1, tmp_path / "judge")
    meta = json.loads((out / JUDGE_META).read_text())
    assert meta["kind"] == "discriminative" and meta["method"] == "disc-sft" and meta["step"] == 1
    assert meta["tokenizer_from"] == str(c1)
    assert isinstance(load_judge(str(out), engine_opts={"device": "cpu"}), DiscriminativeJudge)


def test_bad_sources_are_clear_errors(grpo_run, tmp_path, capsys):
    with pytest.raises(StepwiserError, match="not a training checkpoint"):
        export_checkpoint(grpo_run / "final", tmp_path / "a")
    with pytest.raises(StepwiserError, match="has no checkpoints"):
        checkpoints_of(tmp_path)
    empty = tmp_path / "run" / "checkpoints" / "checkpoint-3"
    empty.mkdir(parents=True)
    shutil.copy(grpo_run / "manifest.json", tmp_path / "run" / "manifest.json")
    shutil.copy(grpo_run / JUDGE_META, tmp_path / "run" / JUDGE_META)
    with pytest.raises(StepwiserError, match="no full model weights.*zero_to_fp32"):
        export_checkpoint(empty, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    # two runs whose checkpoints share a name cannot go into one --out
    assert main(["export-judge", str(grpo_run), str(grpo_run), "-o", str(tmp_path / "c")]) == 2
    assert "two sources have checkpoint-1" in capsys.readouterr().err
