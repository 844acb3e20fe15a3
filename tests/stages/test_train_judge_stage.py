"""The train-judge stage and its config without training: deprecated option names, manifests of earlier runs,
the SFT settings of the judge methods, and what runs on which rank under several processes."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from test_train_grpo import judge_examples, write_data

import stepwiser.io.config as config_module
import stepwiser.stages.train_judge as stage
from stepwiser.cli import cli
from stepwiser.data.judge_examples import data_file
from stepwiser.errors import StepwiserError
from stepwiser.io.records import RunManifest
from stepwiser.train import dist, grpo
from stepwiser.train.judge_config import LATER_FIELDS, JudgeTrainConfig, manifest_config
from stepwiser.train.judge_sft import sft_config
from stepwiser.train.rft import rft_conversations
from stepwiser.train.sft import SFTTrainConfig

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "judge-grpo-micro.yaml"


@pytest.fixture
def seen(monkeypatch):
    """Run `stepwiser train-judge` up to the stage: the config it would train with."""
    got = {}
    monkeypatch.setattr(config_module, "_WARNED", set())
    monkeypatch.setattr(stage, "train_judge", lambda cfg, **kw: got.update(cfg=cfg) or Path(cfg.out))
    return got


def invoke(args):
    return CliRunner().invoke(cli, ["train-judge", *args])


def test_new_names_on_the_command_line(seen, tmp_path):
    data = write_data(tmp_path)
    r = invoke(["--data", str(data), "--model", "m", "-o", str(tmp_path / "o"), "--format-warmup-steps", "3",
                "--format-warmup-lr", "2e-4", "--optimizer-steps-per-generation", "2", "--grad-accum", "3"])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.format_warmup_steps, cfg.format_warmup_lr, cfg.optimizer_steps_per_generation) == (3, 2e-4, 2)
    assert cfg.trl_steps_per_generation == 6


def test_old_flags_still_work_with_one_warning(seen, tmp_path):
    data = write_data(tmp_path)
    args = ["--data", str(data), "--model", "m", "-o", str(tmp_path / "o"), "--warmup-steps", "3",
            "--warmup-lr", "2e-4", "--steps-per-generation", "2"]
    with pytest.warns(FutureWarning) as got:
        r = invoke(args)
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.format_warmup_steps, cfg.format_warmup_lr, cfg.optimizer_steps_per_generation) == (3, 2e-4, 2)
    texts = sorted(str(w.message) for w in got if "deprecated" in str(w.message))
    assert len(texts) == 3 and "--warmup-steps is deprecated" in " ".join(texts)
    assert "use --optimizer-steps-per-generation" in " ".join(texts)
    with no_deprecation_warning():   # once per process
        assert invoke(args).exit_code == 0
    r = invoke(["--data", str(data), "--model", "m", "-o", "o", "--warmup-steps", "3", "--format-warmup-steps", "4"])
    assert r.exit_code == 2 and "not both" in r.output


@contextlib.contextmanager
def no_deprecation_warning():
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        yield
    assert not [w for w in got if "deprecated" in str(w.message)]


def test_old_yaml_keys_still_work_and_flags_win(seen, tmp_path):
    data = write_data(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"train_judge:\n  model: m\n  out: {tmp_path / 'o'}\n  data: {data}\n  warmup_steps: 5\n"
                      "  warmup_lr: 3.0e-4\n  steps_per_generation: 3\n")
    with pytest.warns(FutureWarning, match="warmup_steps is deprecated"):
        r = invoke(["--config", str(recipe)])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.format_warmup_steps, cfg.format_warmup_lr, cfg.optimizer_steps_per_generation) == (5, 3e-4, 3)
    assert invoke(["--config", str(recipe), "--format-warmup-steps", "7"]).exit_code == 0
    assert seen["cfg"].format_warmup_steps == 7


def test_the_micro_recipe_uses_the_new_names(seen):
    r = invoke(["--config", str(RECIPE), "--data", str(RECIPE.parent)])
    assert r.exit_code == 0, r.output
    assert seen["cfg"].format_warmup_steps == 40 and seen["cfg"].format_warmup_lr == 1e-4


def test_help_of_the_training_commands_works_without_a_model():
    for cmd in ("train-judge", "train-policy"):
        r = CliRunner().invoke(cli, [cmd, "--help"])
        assert r.exit_code == 0 and "--config" in r.output
    r = CliRunner().invoke(cli, ["train-judge", "--help"])
    assert "--format-warmup-steps" in r.output and "--warmup-steps" not in r.output


# --------------------------------------------------------------------------- manifests and SFT settings

def test_a_run_started_before_the_renaming_resumes(tmp_path, tiny_model_dir):
    data = write_data(tmp_path)
    cfg = JudgeTrainConfig(model=str(tiny_model_dir), out=str(tmp_path / "run"), data=str(data), format_warmup_steps=2)
    old = dataclasses.asdict(cfg)   # what stepwiser 0.1 recorded: the fields under their old names
    for name in LATER_FIELDS:       # and none of the fields added since (at their defaults)
        old.pop(name)
    old["warmup_steps"], old["warmup_lr"] = old.pop("format_warmup_steps"), old.pop("format_warmup_lr")
    old["init_model"] = None
    assert manifest_config(cfg, init_model=None) == old
    RunManifest.open(cfg.out, "train-judge", old, inputs=[data_file(cfg.data)],
                     volatile=JudgeTrainConfig.VOLATILE).finish({"steps": 1})
    final = Path(cfg.out) / "final"
    final.mkdir()
    (final / "config.json").write_text("{}")
    assert grpo.train_grpo(cfg, judge_examples(), show=False) == final   # finished: returned, not retrained


def test_sft_settings_of_a_judge_method_copy_every_shared_field(tmp_path):
    cfg = JudgeTrainConfig(model="m", out="o", method="rft", epochs=2.0, per_device_batch=64, global_batch=8,
                           packing=True, max_length=999, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.1,
                           lora_target_modules=["q_proj"], bf16=True, seed=3, lr_warmup_ratio=0.1, weight_decay=0.01,
                           gradient_checkpointing=True, logging_steps=2, save_steps=7, save_total_limit=1,
                           resume=False, num_threads=1, max_steps=5, grad_accum=4)
    got = sft_config(cfg, tmp_path / "out", tmp_path / "d.jsonl")
    want = SFTTrainConfig(
        model="m", out=str(tmp_path / "out"), data=str(tmp_path / "d.jsonl"), lr=1e-5, epochs=2.0, max_steps=5,
        per_device_batch=8, grad_accum=None, global_batch=8, packing=True, max_length=999, lora=True, lora_r=4,
        lora_alpha=8, lora_dropout=0.1, lora_target_modules=["q_proj"], bf16=True, seed=3, warmup_ratio=0.1,
        scheduler="cosine", weight_decay=0.01, gradient_checkpointing=True, logging_steps=2, save_steps=7,
        save_total_limit=1, resume=False, num_threads=1)
    assert got == want
    warm = sft_config(cfg, tmp_path, tmp_path / "d.jsonl", lr=1e-4, max_steps=2)
    assert (warm.lr, warm.max_steps) == (1e-4, 2)


def test_rft_samples_in_another_order_are_an_error_not_an_assert():
    exs = judge_examples(2)
    samples = [{"key": e.key, "label": e.label, "texts": ["\\boxed{Positive}"]} for e in exs]
    with pytest.raises(StepwiserError, match="order of the examples"):
        rft_conversations(exs, samples[::-1])
    with pytest.raises(StepwiserError, match="1 sample records for 2 examples"):
        rft_conversations(exs, samples[:1])


# --------------------------------------------------------------------------- several processes

@pytest.fixture
def ranks(monkeypatch):
    """Pretend to be one of 2 processes; record the barriers."""
    waits = []
    monkeypatch.setattr(dist, "barrier", lambda: waits.append(1))
    monkeypatch.setattr(stage, "barrier", lambda: waits.append(1))
    monkeypatch.setattr(grpo, "barrier", lambda: waits.append(1))
    monkeypatch.setenv("WORLD_SIZE", "2")

    def be(rank):
        monkeypatch.setenv("RANK", str(rank))
        return waits
    return be


@pytest.mark.parametrize("rank", [0, 1])
def test_overwrite_deletes_the_run_on_rank_0_only_then_waits(tmp_path, monkeypatch, ranks, rank):
    waits = ranks(rank)
    data = write_data(tmp_path)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    trained = []
    monkeypatch.setattr(stage, "train_grpo", lambda cfg, examples, **kw: trained.append(out.exists()) or out)
    stage.train_judge(JudgeTrainConfig(model="m", out=str(out), data=str(data)), overwrite=True, show=False)
    assert out.exists() == (rank == 1)          # only rank 0 deletes
    assert waits == [1] and trained == [rank == 1]   # every rank waits for it before training


@pytest.mark.parametrize("rank", [0, 1])
def test_validation_runs_on_rank_0_while_the_others_wait(tmp_path, monkeypatch, ranks, rank):
    import stepwiser.train.judge_metrics as jm

    waits = ranks(rank)
    data = write_data(tmp_path)
    cfg = JudgeTrainConfig(model="m", out=str(tmp_path / "run"), data=str(data), eval_steps=2)
    got = {}

    class Stop(Exception):
        pass

    def fake_trainer(cfg, base, rows, reward, callbacks):
        got["callbacks"] = callbacks
        raise Stop

    monkeypatch.setattr(grpo, "make_grpo_trainer", fake_trainer)
    from stepwiser.models import loading
    monkeypatch.setattr(loading, "resolve_model", lambda m: m)
    with pytest.raises(Stop):
        grpo.train_grpo(cfg, judge_examples(), show=False)
    metrics = got["callbacks"][0]
    assert len(metrics.val_examples) == 4        # validation stays on with several processes
    validated = []
    monkeypatch.setattr(jm, "validate", lambda *a, **kw: validated.append(1) or {"n": 4, "accuracy": 0.5})
    waits.clear()
    state = SimpleNamespace(global_step=0, is_world_process_zero=rank == 0, max_steps=4)
    model = SimpleNamespace(device=SimpleNamespace(type="cpu"))
    metrics.on_train_begin(SimpleNamespace(bf16=False), state, None, model=model, processing_class=None)
    assert validated == ([1] if rank == 0 else []) and waits == [1]
    if rank == 0:
        rows = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] == 0 and rows[-1]["val_accuracy"] == 0.5


def test_sharded_weights_turn_validation_off_with_a_warning(monkeypatch, ranks):
    ranks(0)
    callbacks = grpo.metrics_callbacks(Path("unused"), False, judge_examples(2), eval_steps=1)
    plugin = SimpleNamespace(zero_stage=3)
    trainer = SimpleNamespace(is_fsdp_enabled=False, is_deepspeed_enabled=True,
                              accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)))
    with pytest.warns(UserWarning, match="validation .* is OFF: under DeepSpeed ZeRO-3"):
        grpo.check_sharding(trainer, callbacks)
    assert callbacks[0].val_examples == []
    kept = grpo.metrics_callbacks(Path("unused"), False, judge_examples(2), eval_steps=1)
    plugin.zero_stage = 2
    grpo.check_sharding(trainer, kept)
    assert len(kept[0].val_examples) == 2
