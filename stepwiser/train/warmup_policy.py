"""The chunk policy's own steps for the policy-written format warm-up (`warmup_analysis: policy`).

For a judge example (problem, history, chunk) the policy is prompted exactly as in sampling
(`policy_messages(problem)`) and continued from the accepted history (`continuation_prefix`, the prefix
the annotate stage's rollouts continue); its next chunk (generation stops at `</chunk>`) is its own step
from the same point. `warmup_policy_samples` steps are drawn per example with a seed derived from the
example's text (results do not depend on batching); the distinct non-empty ones are kept, in order.

Nothing but the policy's text goes into a step: no reference answer, label, Q-value or value computed
here. A step is the chunk's inner text on one line, with any `\\boxed{X}` written as `X` (and an unclosed
`\\boxed{` dropped), so that the judgment's only box is its verdict.

The steps are written to `policy_steps.jsonl` in the warm-up folder (one record per example: its id,
the prefix, the policy's raw texts and the steps), which is also a cache: a rerun with the same policy
settings draws only the examples that are missing.
"""
from __future__ import annotations

import re
from pathlib import Path

from stepwiser.core.boxed import unwrap
from stepwiser.core.chunks import CLOSE, continuation_prefix, parse_chunks, strip_tags
from stepwiser.data.prompts import policy_messages
from stepwiser.engines import Engine, Request, SamplingParams, as_engine, make_engine
from stepwiser.io.records import content_hash, iter_jsonl, request_seed, write_jsonl
from stepwiser.judges.base import JudgeItem

STEPS_FILE = "policy_steps.jsonl"
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{((?:[^{}]|\{[^{}]*\})*)\}")


def unbox(text: str) -> str:
    """`text` with every `\\boxed{X}` replaced by X."""
    prev = None
    while prev != text:
        prev, text = text, _BOX.sub(lambda m: unwrap(m.group(1)), text)
    return text


def policy_step(text: str, style: str = "tags") -> str:
    """The policy's next step in a generated continuation: its first chunk (or, without chunk tags, the
    text itself), boxes unwrapped, on one line; '' when there is none."""
    chunks = parse_chunks(text, style)
    step = chunks[0] if chunks else strip_tags(text)
    step = re.sub(r"\\(?:boxed|fbox)\s*\{?", "", unbox(step))   # an unclosed box too: the verdict's is the only one
    return re.sub(r"\s+", " ", step).strip()


def generation_settings(cfg) -> dict:
    """The settings that decide the drawn steps (a JudgeTrainConfig's warm-up policy fields)."""
    return {"policy": cfg.warmup_policy, "n": cfg.warmup_policy_samples, "temperature": cfg.warmup_policy_temperature,
            "max_tokens": cfg.warmup_policy_max_tokens, "seed": cfg.seed}


def step_id(settings: dict, item: JudgeItem, style: str) -> str:
    return content_hash([settings, item.problem, list(item.history), item.chunk, style], 16)


def policy_request(item: JudgeItem, style: str, seed: int) -> Request:
    """The policy's request for `item`: the sampling prompt, continued from the item's history."""
    prefix = continuation_prefix(list(item.history), style)
    return Request(messages=policy_messages(item.problem), prefix=prefix,
                   seed=request_seed(seed, "warmup-policy", item.problem, prefix))


def distinct(steps: list[str]) -> list[str]:
    return [s for i, s in enumerate(steps) if s and s not in steps[:i]]


def draw_steps(engine, items: list[JudgeItem], styles: list[str], settings: dict) -> list[dict]:
    """One record per item: id, prefix, the policy's raw texts and its distinct steps."""
    params = SamplingParams(n=settings["n"], temperature=settings["temperature"], max_tokens=settings["max_tokens"],
                            stop=[CLOSE], seed=settings["seed"])
    reqs = [policy_request(it, st, settings["seed"]) for it, st in zip(items, styles)]
    outs = engine.generate(reqs, params) if reqs else []
    return [{"id": step_id(settings, it, st), "prefix": r.prefix, "texts": [c.text for c in cs],
             "steps": distinct([policy_step(c.text, st) for c in cs])}
            for it, st, r, cs in zip(items, styles, reqs, outs)]


def policy_steps(cfg, items: list[JudgeItem], styles: list[str], out: Path, engine=None) -> list[list[str]]:
    """The policy's distinct steps for each item, drawn with `engine` (an Engine, left open; or a factory,
    whose engine is closed after drawing; default: an hf engine on `cfg.warmup_policy`) for the items not in
    out/policy_steps.jsonl yet; the file is then rewritten with this run's items."""
    settings = generation_settings(cfg)
    path = out / STEPS_FILE
    cached = {r["id"]: r for _, r in iter_jsonl(path)} if path.exists() else {}
    ids = [step_id(settings, it, st) for it, st in zip(items, styles)]
    first: dict[str, int] = {}
    for i, x in enumerate(ids):
        first.setdefault(x, i)
    todo = [i for x, i in first.items() if x not in cached]
    if todo:
        built = not isinstance(engine, Engine)   # built here (or by a factory): closed after drawing
        eng = make_engine("hf", cfg.warmup_policy) if engine is None else as_engine(engine)
        try:
            cached.update((r["id"], r) for r in draw_steps(eng, [items[i] for i in todo],
                                                           [styles[i] for i in todo], settings))
        finally:
            if built:
                eng.close()
    write_jsonl(path, [cached[x] for x in dict.fromkeys(ids)])
    return [cached[x]["steps"] for x in ids]
