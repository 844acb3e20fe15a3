"""`load_judge`: the judge for a model folder, of the kind its `stepwiser_judge.json` records."""
from __future__ import annotations

from dataclasses import dataclass

from stepwiser.io.config import option
from stepwiser.judges.base import StepJudge, final_dir, judge_meta
from stepwiser.judges.generative import GenerativeJudge

JUDGE_KINDS = ("auto", "generative", "discriminative", "verdict-probability", "position")
DEFAULT_THRESHOLD = 0.5
THRESHOLD_HELP = ("A chunk is Negative when its P(positive) is below it: a discriminative judge, or a no-CoT judge read "
                  "by its verdict probability (default: the threshold its folder records from dev, else 0.5).")


@dataclass(kw_only=True)
class JudgeOptions:
    """How a stage that uses a judge loads and asks it (shared by search and select)."""

    judge_kind: str = option("auto", "Judge kind (auto: from the judge folder's stepwiser_judge.json).",
                             choices=JUDGE_KINDS)
    cot: bool | None = option(None, "Generative judge: with or without analysis (default: as trained).")
    judge_max_tokens: int | None = option(None, "Most tokens per judgment (default: 1024 with CoT, 32 without).")
    threshold: float | None = option(None, THRESHOLD_HELP)


def judge_reading(model: str, kind: str = "auto", threshold: float | None = None) -> dict:
    """How `load_judge` reads `model`: {"kind": the judge kind, "threshold": the cut of a scored kind, else
    None} (auto: the folder's `stepwiser_judge.json`; summaries record it)."""
    if kind == "position":   # a floor fitted on dev examples, not a model folder (judges/position.py)
        from stepwiser.judges.position import PositionJudge
        reading = PositionJudge.from_data(model).reading()
        return {**reading, "threshold": reading["threshold"] if threshold is None else threshold}
    meta = judge_meta(final_dir(model))
    if kind == "auto":
        kind = "verdict-probability" if meta.get("score") == "verdict_probability" else meta.get("kind", "generative")
    if kind not in JUDGE_KINDS[1:]:
        raise ValueError(f"judge kind must be one of {', '.join(JUDGE_KINDS)}; got {kind!r}")
    scored = kind in ("verdict-probability", "discriminative")
    cut = threshold if threshold is not None else meta.get("threshold", DEFAULT_THRESHOLD)
    return {"kind": kind, "threshold": cut if scored else None}


def reading_or_none(model: str | None, kind: str = "auto", threshold: float | None = None) -> dict | None:
    """`judge_reading` for a stage summary; None where `model` is no judge folder or its kind is unknown."""
    try:
        return judge_reading(model, kind, threshold) if model else None
    except (OSError, ValueError):
        return None


def load_judge(model: str, engine_opts: dict | None = None, kind: str = "auto", cot: bool | None = None,
               max_tokens: int | None = None, seed: int = 0, threshold: float | None = None) -> StepJudge:
    """A judge for `model`: the kind recorded in its folder (`stepwiser_judge.json`), or `kind`.

    generative: any chat model on any engine (engine_opts as built by the CLI; default hf), sampled verdicts;
    verdict-probability: a no-CoT generative judge scored by P(Positive) on the hf engine (a folder whose
    metadata says `"score": "verdict_probability"` loads so under auto, with its recorded threshold);
    discriminative: a disc-SFT model scored by P(+) on transformers; position: the position-rule floor
    fitted on the dev examples `model` names (a judge-data folder's val.jsonl or a JSONL file;
    judges/position.py). `threshold` (None: the folder's, else 0.5; position: its dev-chosen one) decides the
    verdict of the scored kinds. A `train-judge` output folder stands for its `final/`
    model. `max_tokens` (None: 1024 with CoT, 32 without) bounds each judgment of a generative judge.
    """
    if kind == "position":
        from stepwiser.judges.position import PositionJudge
        judge = PositionJudge.from_data(model)
        judge.threshold = judge.threshold if threshold is None else threshold
        return judge
    model = final_dir(model)
    meta = judge_meta(model)
    reading = judge_reading(model, kind, threshold)
    kind, cut = reading["kind"], reading["threshold"]
    if kind == "discriminative":
        from stepwiser.judges.discriminative import DiscriminativeJudge
        return DiscriminativeJudge(model, threshold=cut, device=(engine_opts or {}).get("device"))
    from stepwiser.engines import EngineOptions, build_engine
    from stepwiser.judges.coverage import guard_judge
    opts = engine_opts or {"engine": "hf"}
    prompt = meta.get("prompt", "full")
    if kind == "verdict-probability":
        if meta.get("cot") or cot:
            raise ValueError(f"{model}: the verdict probability reads a judge trained without analysis (no-CoT)")
        if EngineOptions.of(opts).engine != "hf":
            raise ValueError("the verdict-probability judge runs on the hf engine (it reads the logits)")
        from stepwiser.judges.verdict_probability import VerdictProbabilityJudge
        return guard_judge(VerdictProbabilityJudge(build_engine(model, opts), prompt=prompt, threshold=cut))
    use_cot = meta.get("cot", True) if cot is None else cot
    # a micro judge: chunks its vocabulary cannot encode get an unparsed verdict instead of stopping the run
    return guard_judge(GenerativeJudge(build_engine(model, opts), cot=use_cot, max_tokens=max_tokens, seed=seed,
                                       prompt=prompt))
