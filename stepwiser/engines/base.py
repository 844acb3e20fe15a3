"""The engine interface shared by every backend (C5).

A `Request` is either a chat (`messages`, optionally continued from an assistant-side `prefix`, as
rollouts need) or a raw text prompt (`text`, template already applied). Every backend takes the same
`SamplingParams` and returns, per request, `params.n` `Completion`s with text, token counts and the
finish reason.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field


class EngineError(RuntimeError):
    """A generation backend failed in a way the user can act on (message says what to do)."""


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict:
        return {"n": self.n, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens, "stop": list(self.stop), "seed": self.seed}


@dataclass
class Request:
    """One prompt. Give `messages` (chat; the engine applies the chat template with a generation
    prompt and appends `prefix`), or `text` (a raw prompt used as is). `seed` overrides the
    sampling seed for this request (stages derive it from the record key, so results do not depend
    on batch composition)."""
    messages: list[dict] | None = None
    prefix: str = ""
    text: str | None = None
    seed: int | None = None

    def __post_init__(self):
        if (self.messages is None) == (self.text is None):
            raise ValueError("a Request needs exactly one of `messages` or `text`")


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


class Engine(abc.ABC):
    """A text generator. Subclasses implement `generate` and `apply_chat_template`."""

    name: str = "base"
    model: str

    @abc.abstractmethod
    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        """Return, for each request in order, `params.n` completions."""

    @abc.abstractmethod
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text the model sees for `messages` (raises EngineError if impossible)."""

    def prompt_text(self, request: Request) -> str:
        if request.text is not None:
            return request.text
        return self.apply_chat_template(request.messages) + request.prefix

    def close(self) -> None:  # pragma: no cover - backends override when they hold resources
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
