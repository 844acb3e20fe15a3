"""Generation engines (contract C5): one interface, several backends.

Use `make_engine(name, model, **options)`; backends are imported lazily so that the package works
without vLLM or a server.
"""
from __future__ import annotations

from .base import Completion, Engine, EngineError, Request, SamplingParams

ENGINES = ("hf", "vllm", "openai")


def make_engine(engine: str, model: str, **options) -> Engine:
    """Build the engine `engine` (one of ENGINES) for `model` (C5 model string)."""
    if engine == "hf":
        from .hf import HFEngine
        return HFEngine(model, **options)
    if engine == "vllm":
        from .vllm import VLLMEngine
        return VLLMEngine(model, **options)
    if engine == "openai":
        from .openai import OpenAIEngine
        return OpenAIEngine(model, **options)
    raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")


__all__ = ["Completion", "Engine", "EngineError", "Request", "SamplingParams", "ENGINES", "make_engine"]
