"""Argument handling shared by the benchmark scripts (engine selection, CPU threads)."""
from __future__ import annotations

import importlib.util


def pick_engines(spec: str | None, base_url: str | None) -> list[str]:
    """The engines to measure: `spec` (comma-separated), or every available one (hf; vllm when
    installed; openai when a server URL is given)."""
    if spec:
        return spec.split(",")
    return ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else []) + (["openai"] if base_url else [])


def set_threads(threads: int | None) -> None:
    """torch.set_num_threads when asked (1 thread is much faster on a shared, loaded CPU)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
