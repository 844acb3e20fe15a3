"""`load_judge`: the judge for a model folder, of the kind its `stepwiser_judge.json` records."""
from __future__ import annotations

from dataclasses import dataclass

from stepwiser.io.config import option
from stepwiser.judges.base import StepJudge, final_dir, judge_meta
from stepwiser.judges.generative import GenerativeJudge

JUDGE_KINDS = ("auto", "generative", "discriminative")


@dataclass(kw_only=True)
class JudgeOptions:
    """How a stage that uses a judge loads and asks it (shared by search and select)."""

    judge_kind: str = option("auto", "Judge kind (auto: from the judge folder's stepwiser_judge.json).",
                             choices=JUDGE_KINDS)
    cot: bool | None = option(None, "Generative judge: with or without analysis (default: as trained).")
    judge_max_tokens: int | None = option(None, "Most tokens per judgment (default: 1024 with CoT, 32 without).")
    threshold: float = option(0.5, "Discriminative judge: a chunk is Negative when P(positive) is below it (the "
                                   "score is P(positive) either way).")

def load_judge(model: str, engine_opts: dict | None = None, kind: str = "auto", cot: bool | None = None,
               max_tokens: int | None = None, seed: int = 0, threshold: float = 0.5) -> StepJudge:
    """A judge for `model`: the kind recorded in its folder (`stepwiser_judge.json`), or `kind`.

    generative: any chat model on any engine (engine_opts as built by the CLI; default hf);
    discriminative: a disc-SFT model scored by P(+) on transformers (threshold for its verdict).
    A `train-judge` output folder stands for its `final/` model. `max_tokens` (None: 1024 with CoT, 32
    without) bounds each judgment of a generative judge.
    """
    model = final_dir(model)
    meta = judge_meta(model)
    kind = meta.get("kind", "generative") if kind == "auto" else kind
    if kind == "discriminative":
        from stepwiser.judges.discriminative import DiscriminativeJudge
        return DiscriminativeJudge(model, threshold=threshold, device=(engine_opts or {}).get("device"))
    if kind != "generative":
        raise ValueError(f"judge kind must be auto, generative or discriminative; got {kind!r}")
    from stepwiser.engines import build_engine
    opts = engine_opts or {"engine": "hf"}
    use_cot = meta.get("cot", True) if cot is None else cot
    from stepwiser.judges.coverage import guard_judge
    # a micro judge: chunks its vocabulary cannot encode get an unparsed verdict instead of stopping the run
    return guard_judge(GenerativeJudge(build_engine(model, opts), cot=use_cot, max_tokens=max_tokens, seed=seed,
                                       prompt=meta.get("prompt", "full")))
