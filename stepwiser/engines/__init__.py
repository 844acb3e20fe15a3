"""Generation engines (contract C5): one interface, several backends.

Use `make_engine(name, model, **options)`; backends are imported lazily so that the package works
without vLLM or a server.
"""
from __future__ import annotations

from collections.abc import Mapping

from stepwiser.engines.base import Completion, Engine, EngineError, Request, SamplingParams
from stepwiser.engines.options import ENGINES, EngineOptions


def make_engine(engine: str, model: str, **options) -> Engine:
    """Build the engine `engine` (one of ENGINES) for `model` (C5 model string)."""
    if engine == "hf":
        from stepwiser.engines.hf import HFEngine
        return HFEngine(model, **options)
    if engine == "vllm":
        from stepwiser.engines.vllm import VLLMEngine
        return VLLMEngine(model, **options)
    if engine == "openai":
        from stepwiser.engines.openai import OpenAIEngine
        return OpenAIEngine(model, **options)
    raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")


def as_engine(engine_or_factory) -> Engine:
    """Stages accept an Engine or a zero-argument factory, so a model is loaded only when there is
    work to do (and after the inputs were validated)."""
    return engine_or_factory if isinstance(engine_or_factory, Engine) else engine_or_factory()


def engine_kwargs(opts: EngineOptions | Mapping | None) -> dict:
    """The keyword arguments of `make_engine` for the chosen backend (others are dropped); `opts` holds
    the engine options of the command line (EngineOptions, or a mapping of some of its fields)."""
    return EngineOptions.of(opts).kwargs()


def build_engine(model: str, opts: EngineOptions | Mapping | None) -> Engine:
    opts = EngineOptions.of(opts)
    return make_engine(opts.engine, model, **opts.kwargs())


class LazyEngine:
    """A context manager giving a zero-argument engine factory: the model is loaded only if the stage
    has work to do, after its inputs were validated; closed on exit."""

    def __init__(self, model: str, opts: EngineOptions | Mapping | None):
        self.model, self.opts, self.engine = model, opts, None

    def __call__(self):
        if self.engine is None:
            self.engine = build_engine(self.model, self.opts)
        return self.engine

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.engine is not None:
            self.engine.close()


__all__ = ["build_engine", "engine_kwargs", "LazyEngine", "as_engine", "Completion", "Engine", "EngineError", "Request", "SamplingParams", "ENGINES", "EngineOptions", "make_engine"]
