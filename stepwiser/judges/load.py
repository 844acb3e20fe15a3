"""`load_judge`: the judge for a model folder, of the kind its `stepwiser_judge.json` records."""
from __future__ import annotations

from stepwiser.judges.base import StepJudge, final_dir, judge_meta
from stepwiser.judges.generative import GenerativeJudge

def load_judge(model: str, engine_opts: dict | None = None, kind: str = "auto", cot: bool | None = None,
               max_tokens: int = 1024, seed: int = 0, threshold: float = 0.5) -> StepJudge:
    """A judge for `model`: the kind recorded in its folder (`stepwiser_judge.json`), or `kind`.

    generative: any chat model on any engine (engine_opts as built by the CLI; default hf);
    discriminative: a disc-SFT model scored by P(+) on transformers (threshold for its verdict).
    A `train-judge` output folder stands for its `final/` model.
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
    return GenerativeJudge(build_engine(model, opts), cot=use_cot, max_tokens=max_tokens, seed=seed)
