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


def as_engine(engine_or_factory) -> Engine:
    """Stages accept an Engine or a zero-argument factory, so a model is loaded only when there is
    work to do (and after the inputs were validated)."""
    return engine_or_factory if isinstance(engine_or_factory, Engine) else engine_or_factory()


__all__ = ["as_engine", "Completion", "Engine", "EngineError", "Request", "SamplingParams", "ENGINES", "make_engine"]
