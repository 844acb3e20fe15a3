"""Test doubles: deterministic engines whose output is a function of (prompt, seed, sample index)."""
from __future__ import annotations

import random

from stepwiser.engines.base import Completion, Engine, Request, SamplingParams


class FakeEngine(Engine):
    """`fn(prompt_text, rng, request) -> str`; rng is seeded per (request seed, sample index), so the
    output does not depend on batch composition (like a seeded engine with per-request seeds)."""

    name = "fake"

    def __init__(self, fn, model="fake"):
        self.fn, self.model = fn, model
        self.calls: list[int] = []  # requests per generate call
        self.prompts: list[str] = []

    def apply_chat_template(self, messages, add_generation_prompt=True):
        body = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages)
        return body + ("<|assistant|>" if add_generation_prompt else "")

    def generate(self, requests: list[Request], params: SamplingParams):
        self.calls.append(len(requests))
        out = []
        for r in requests:
            text = self.prompt_text(r)
            self.prompts.append(text)
            seed = r.seed if r.seed is not None else params.seed
            comps = []
            for j in range(params.n):
                rng = random.Random(f"{seed}-{j}-{text}")
                t = self.fn(text, rng, r)
                stop_hit = [t.index(s) for s in params.stop if s in t]
                finish = "stop"
                if stop_hit:
                    t = t[: min(stop_hit)]
                toks = t.split()
                if len(toks) > params.max_tokens:
                    t, finish = " ".join(toks[: params.max_tokens]), "length"
                comps.append(Completion(text=t, prompt_tokens=len(text.split()),
                                        completion_tokens=max(1, len(t.split())), finish_reason=finish))
            out.append(comps)
        return out
