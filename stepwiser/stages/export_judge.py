"""A training checkpoint as a judge folder (`stepwiser export-judge`): for checkpoint selection on a dev split.

`train-judge` writes `RUN/final/` (a plain HF model, its tokenizer and ``stepwiser_judge.json``) only at the
end, while `RUN/checkpoints/checkpoint-N/` hold the intermediate models in the Trainer's own layout: GRPO
checkpoints have no tokenizer, LoRA checkpoints only an adapter, none has the judge metadata. Exporting makes
each of them a folder that `load_judge`, every engine and `stepwiser eval` take like `final/`:

    RUN/checkpoints/checkpoint-N  ->  OUT/{config.json, model.safetensors, tokenizer..., stepwiser_judge.json}

The metadata is the run's (``RUN/stepwiser_judge.json``, written when training starts; else
``RUN/final/stepwiser_judge.json``; else, for GRPO runs made before the run-level file existed, rebuilt from
the run's manifest) plus ``checkpoint`` and ``step``. The tokenizer comes from the checkpoint when it has one,
else from the model the run started from (for GRPO: the warm-up model, as its trainer loaded it).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.io.config import option
from stepwiser.judges.base import JUDGE_META, judge_meta, write_judge_meta
from stepwiser.io.records import manifest_path

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


@dataclass
class ExportJudgeConfig:
    sources: list[str] = option(help="`train-judge` run folders (all of their checkpoints) or checkpoint folders "
                                     "(RUN/checkpoints/checkpoint-N).", path="dir")
    out: str = option(help="Parent folder: each checkpoint is written to OUT/checkpoint-N.", short="-o")


def checkpoint_step(checkpoint: str | Path) -> int:
    """N of `.../checkpoints/checkpoint-N`; a clear error for any other folder."""
    p = Path(checkpoint)
    m = _CHECKPOINT.fullmatch(p.name)
    if not m or p.parent.name != "checkpoints":
        raise StepwiserError(f"{p} is not a training checkpoint: give RUN/checkpoints/checkpoint-N of a "
                             "`train-judge` run (RUN/final is already a judge folder)")
    if not p.is_dir():
        raise StepwiserError(f"checkpoint {p} not found")
    return int(m.group(1))


def run_config(run: Path) -> dict:
    path = manifest_path(run)
    if not path.exists():
        raise StepwiserError(f"{run} has no manifest.json: not a `train-judge` run folder")
    return json.loads(path.read_text()).get("config", {})


def run_meta(run: Path) -> dict:
    """The judge metadata of the run that wrote `run/checkpoints` (see the module docstring)."""
    for folder in (run, run / "final"):
        if meta := judge_meta(str(folder)):
            return meta
    cfg = run_config(run)
    method = cfg.get("method")
    if method not in ("grpo", "grpo-nocot"):
        raise StepwiserError(f"cannot tell which judge {run} trains: it has no {JUDGE_META} (runs of this version "
                             "write one when training starts) and its manifest names no GRPO method")
    from stepwiser.data.judge_examples import label_type_of, load_judge_examples

    data = cfg.get("data")
    label_type = label_type_of(load_judge_examples(data)) if data and Path(data).exists() else None
    return {"kind": "generative", "cot": cfg.get("cot", method == "grpo"), "method": method,
            "label_type": label_type, "base_model": cfg.get("model"), "warmup": cfg.get("init_model") is not None,
            "shuffled_labels": bool(cfg.get("shuffle_labels", False)), "prompt": cfg.get("judge_prompt", "full")}


def _start_model(run: Path) -> str:
    from stepwiser.models.loading import resolve_model

    cfg = run_config(run)
    name = cfg.get("init_model") or cfg.get("model")
    if not name:
        raise StepwiserError(f"{manifest_path(run)} names no model the run started from")
    return resolve_model(name)


def _copy(src: Path, dst: Path, names) -> list[str]:
    copied = [n for n in names if (src / n).exists()]
    for n in copied:
        shutil.copy2(src / n, dst / n)
    for shard in sorted(src.glob("model-*-of-*.safetensors")):
        shutil.copy2(shard, dst / shard.name)
        copied.append(shard.name)
    return copied


def _write_weights(checkpoint: Path, run: Path, dst: Path) -> None:
    if (checkpoint / "adapter_config.json").exists():   # LoRA: merge into the model the run started from
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(_start_model(run), dtype=torch.float32)
        PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload().save_pretrained(str(dst))
        return
    copied = _copy(checkpoint, dst, MODEL_FILES)
    if "config.json" not in copied or not any(n.endswith(".safetensors") for n in copied):
        raise StepwiserError(f"{checkpoint} holds no full model weights (config.json + *.safetensors); a DeepSpeed "
                             f"ZeRO-3 checkpoint needs its weights gathered first ({checkpoint}/zero_to_fp32.py)")


def _write_tokenizer(checkpoint: Path, run: Path, dst: Path) -> str:
    if (checkpoint / "tokenizer_config.json").exists():
        _copy(checkpoint, dst, TOKENIZER_FILES)
        return str(checkpoint)
    from transformers import AutoTokenizer

    source = _start_model(run)
    AutoTokenizer.from_pretrained(source).save_pretrained(str(dst))
    return source


def export_checkpoint(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write `checkpoint` (RUN/checkpoints/checkpoint-N) as a judge folder `out`; return `out`.

    Written to `out.tmp` and renamed, so `out` is either complete or absent. An existing `out` is refused
    unless `overwrite`, or returned as it is when it is already this checkpoint's export."""
    checkpoint, out = Path(checkpoint), Path(out)
    step = checkpoint_step(checkpoint)
    run = checkpoint.parent.parent
    meta = run_meta(run)
    if out.exists() and not overwrite:
        done = out / JUDGE_META
        if done.exists() and json.loads(done.read_text()).get("checkpoint") == str(checkpoint):
            return out   # exported before (rerunning a selection loop)
        raise StepwiserError(f"{out} exists and is not an export of {checkpoint}; give another -o or --overwrite")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_weights(checkpoint, run, tmp)
        tokenizer = _write_tokenizer(checkpoint, run, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info = {k: v for k, v in meta.items() if k != "kind"}
    write_judge_meta(tmp, meta.get("kind", "generative"),
                     **{**info, "checkpoint": str(checkpoint), "step": step, "tokenizer_from": tokenizer})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def checkpoints_of(path: str | Path) -> list[Path]:
    """`path` itself when it is a checkpoint, else the checkpoints of the run folder `path`, in step order."""
    p = Path(path)
    if _CHECKPOINT.fullmatch(p.name):
        checkpoint_step(p)
        return [p]
    found = [c for c in (p / "checkpoints").glob("checkpoint-*") if _CHECKPOINT.fullmatch(c.name) and c.is_dir()]
    if not found:
        raise StepwiserError(f"{p} has no checkpoints (looked for {p}/checkpoints/checkpoint-N)")
    return sorted(found, key=checkpoint_step)
