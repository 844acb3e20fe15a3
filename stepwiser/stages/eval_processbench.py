"""Stage `eval processbench` (docs/METHOD.md 2.4, contract C4): predictions for every item, then the scores.

Modes (`ProcessBenchConfig.mode`): ``judge`` (the stepwise protocol, `stepwise.py`, any StepJudge),
``critic`` (a chat model shown the whole solution, `critic.py`), ``prm`` (a Qwen2.5-Math-PRM-style
classifier, `prm.py`), ``predictions`` (a file made elsewhere, `predictions.py`) and ``reference``
(floors and the oracle ceiling of the synthetic bench, `reference.py`).

Outputs in the folder `out`: ``<subset>.jsonl``, one record per item (``id``, ``label``,
``prediction`` - null when unparsed - and the mode's details: per-step verdicts, scores and analyses
for judges), appended as items finish; ``manifest.json`` (C7: rerunning the same command resumes,
another config into the same folder is refused); and ``summary.json``, written atomically only when
every requested item has its record, so a summary is never half a result.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.io.config import check_choices, option
from stepwiser.io.records import JsonlWriter, RunManifest, iter_jsonl, refuse_stale_outputs, write_json
from stepwiser.judges.base import resolve_lazy
from stepwiser.data.bench import BenchItem, bench_files, load_bench, stratified_sample
from stepwiser.core.metrics import DEFAULT_RESAMPLES, summarize
from stepwiser.judges.reference import REFERENCES
from stepwiser.judges.load import JUDGE_KINDS, THRESHOLD_HELP, reading_or_none

MODES = ("judge", "critic", "prm", "predictions", "reference")
STAGE = "eval-processbench"


@dataclass(kw_only=True)
class ProcessBenchConfig:
    # the predictor: exactly one of the five (sets `mode` and `model`), or `mode` and `model` directly
    judge: str | None = option(None, "Stepwise judge: a trained judge folder or any chat model.")
    critic: str | None = option(None, "Any chat model as a whole-solution critic (ProcessBench protocol).")
    prm: str | None = option(None, "A Qwen2.5-Math-PRM-style process reward model.")
    predictions: str | None = option(None, "Score predictions made elsewhere (JSONL: id, prediction[, subset]).",
                                     path="file")
    reference: str | None = option(None, "A reference judge (synthetic bench floors/ceiling).", choices=REFERENCES)
    mode: str | None = option(None, "One of MODES (set from --judge, --critic, ...).", cli=False)
    model: str | None = option(None, "Judge/critic/PRM model, predictions file, or reference judge name.",
                               cli=False)
    data: str = option(help="Folder of <subset>.json files, one such file, or 'hf' (Qwen/ProcessBench).")
    subsets: tuple[str, ...] | None = option(None, "Comma-separated subsets to evaluate (default: all in --data).")
    limit: int | None = option(None, "Only the first N items of each subset.")
    sample: int | None = option(None, "N items of each subset drawn with --seed, clean and erroneous in the "
                                      "subset's proportions (ProcessBench files list erroneous items first, so "
                                      "--limit keeps one class).")
    out: str = option(help="Output folder.", short="-o")
    maj: int = option(1, "Samples per step (judge) or per item (critic): greedy for 1, temperature 1.0 above.")
    threshold: float | None = option(None, THRESHOLD_HELP + " A PRM: 0.5 unless given.")
    all_steps: bool = option(False, "Judge every step instead of stopping at the first Negative (the prediction "
                                    "is the same; for measuring what early stopping saves).")
    judge_kind: str = option("auto", "Judge kind (auto: from the judge folder's stepwiser_judge.json).",
                             choices=JUDGE_KINDS)
    cot: bool | None = option(None, "Generative judge: with or without analysis (default: as trained).")
    max_tokens: int = option(1024, "Most tokens per judgment (judge) or critique (critic).")
    seed: int = option(0, "Seed of the sampling and of --sample.")
    engine: str = option("hf", "Generation backend (set by --engine).", cli=False)
    prior: str | None = option(None, "--reference position-prior: the dev split whose labels are drawn "
                                     "(default: DATA/dev.json).", path="file")
    bootstrap: int = option(DEFAULT_RESAMPLES, "Bootstrap resamples for the 95% intervals (0: none).")
    batch_items: int = option(256, "Items in flight: every round judges the next step of all of them in one call.")
    prm_batch_size: int = option(8, "--prm: items per forward pass.")
    allow_missing: bool = option(False, "--predictions: score evaluated items without a prediction as wrong "
                                        "(the summary is marked partial) instead of refusing the file.")

    # not hashed: the predictor flags are recorded as mode/model; batch sizes do not change results;
    # allow_missing only lets a run with gaps through (the records are the same)
    VOLATILE = ("batch_items", "prm_batch_size", "allow_missing", *MODES)

    def __post_init__(self):
        self._set_mode()
        check_choices(self)
        if self.maj < 1 or self.batch_items < 1 or self.max_tokens < 1 or self.bootstrap < 0:
            raise ValueError("maj, batch_items and max_tokens must be >= 1 and bootstrap >= 0")
        if self.prm_batch_size < 1:
            raise ValueError(f"prm_batch_size must be >= 1, got {self.prm_batch_size}")
        if self.maj > 1 and self.mode not in ("judge", "critic"):
            raise ValueError(f"--maj applies to --judge and --critic, not to mode {self.mode!r}")
        if self.all_steps and self.mode != "judge":
            raise ValueError("--all-steps applies to --judge only")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.subsets is not None:
            self.subsets = tuple(self.subsets)
        if self.limit is not None and self.sample is not None:
            raise ValueError("give --limit (the first N items) or --sample (N drawn at random), not both")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"--sample must be >= 1, got {self.sample}")
        if self.allow_missing and self.mode != "predictions":
            raise ValueError("--allow-missing applies to --predictions only")

    def _set_mode(self) -> None:
        given = [(m, getattr(self, m)) for m in MODES if getattr(self, m)]
        if self.mode is None:
            if len(given) != 1:
                raise ValueError("give exactly one of --judge, --critic, --prm, --predictions, --reference")
            self.mode, self.model = given[0]
        elif given and given != [(self.mode, self.model)]:
            raise ValueError(f"mode {self.mode!r} with model {self.model!r} contradicts --{given[0][0]} "
                             f"{given[0][1]}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.model:
            raise ValueError(f"mode {self.mode!r} needs a model")
        if self.mode == "reference" and self.model not in REFERENCES:
            raise ValueError(f"reference judge must be one of {', '.join(REFERENCES)}, got {self.model!r}")


def _prepare(cfg: ProcessBenchConfig, bench: dict[str, list[BenchItem]]):
    """Mode inputs checked before anything is written: (predictions or label prior or None, input files)."""
    from stepwiser.judges.reference import LabelPrior

    if cfg.mode == "predictions":
        from stepwiser.data.predictions import read_predictions

        return read_predictions(cfg.model, load_bench(cfg.data), bench, cfg.allow_missing), [cfg.model]
    if cfg.mode == "reference" and cfg.model == "position-prior":
        prior = cfg.prior or (str(Path(cfg.data) / "dev.json") if Path(cfg.data).is_dir() else None)
        if not prior or not Path(prior).is_file():
            raise StepwiserError(f"the position prior draws from a dev split's labels: give --prior FILE "
                                 f"(no {prior or 'dev.json'} found)")
        (dev,) = load_bench(prior).values()
        return LabelPrior(dev, cfg.seed), [prior]
    if cfg.mode == "reference" and cfg.model == "oracle":
        from stepwiser.judges.reference import oracle_prediction

        for items in bench.values():
            oracle_prediction(items[0])   # raises, naming the item, when the data has no reference traces
    return None, []


def _records(cfg: ProcessBenchConfig, todo: list[BenchItem], predictor, prep):
    """(item, record fields) for the items to do, from the mode's predictor."""
    if cfg.mode == "judge":
        from stepwiser.judges.stepwise import run_stepwise

        return run_stepwise(resolve_lazy(predictor, cfg.mode), todo, cfg.maj, cfg.all_steps, cfg.batch_items)
    if cfg.mode == "critic":
        from stepwiser.judges.critic import Critic

        obj = resolve_lazy(predictor, cfg.mode)
        critic = obj if isinstance(obj, Critic) else Critic(obj, cfg.max_tokens, cfg.seed)
        return critic.predict(todo, cfg.maj, cfg.batch_items)
    if cfg.mode == "prm":
        return resolve_lazy(predictor, cfg.mode).predict(todo, cfg.batch_items)
    if cfg.mode == "predictions":
        return prep.predict(todo)
    from stepwiser.judges.reference import run_reference

    return run_reference(cfg.model, todo, prep)


def run_processbench(cfg: ProcessBenchConfig, predictor=None, overwrite: bool = False,
                     progress: bool | None = None) -> dict:
    """Run the stage (see the module doc); returns the summary (also written to `out/summary.json`).

    `predictor`: for mode judge a StepJudge, critic an Engine (or a Critic), prm a ProcessRewardModel,
    or a zero-argument factory of one, called only if some item still needs a prediction."""
    from stepwiser.io.progress import StageProgress

    bench = load_bench(cfg.data, cfg.subsets, cfg.limit)
    if cfg.sample is not None:
        bench = {name: stratified_sample(items, cfg.sample, cfg.seed, name) for name, items in bench.items()}
    prep, extra_inputs = _prepare(cfg, bench)
    out = Path(cfg.out)
    refuse_stale_outputs(out, bench, overwrite)
    config = dataclasses.asdict(cfg)
    if cfg.sample is None:   # added in 0.1: unset, it leaves the config hash of earlier runs as it was (resume)
        config.pop("sample")
    manifest = RunManifest.open(out, STAGE, config, [*bench_files(cfg.data, bench), *extra_inputs],
                                overwrite=overwrite, volatile=ProcessBenchConfig.VOLATILE)
    writers = {name: JsonlWriter(out / f"{name}.jsonl", lambda r: str(r["id"])) for name in bench}
    todo = [it for name, items in bench.items() for it in items if it.id not in writers[name]]
    total = sum(map(len, bench.values()))
    t0 = time.time()
    try:
        with StageProgress("eval processbench", total, "items", rates=("steps", "tokens"), enabled=progress) as bar:
            bar.advance(total - len(todo))
            for it, fields in (_records(cfg, todo, predictor, prep) if todo else ()):
                writers[it.subset].write({"id": it.id, "label": it.label, "prediction": fields.pop("prediction"),
                                          **fields})
                bar.advance(1, steps=fields.get("steps_judged", 0), tokens=fields.get("tokens", 0))
    finally:
        for w in writers.values():
            w.close()
    summary = _summary(cfg, bench, out, time.time() - t0)
    write_json(out / "summary.json", summary)
    manifest.finish({"average_f1": summary["average_f1"], "items": total})
    return summary


def _read_back(out: Path, name: str, items: list[BenchItem]) -> list[dict]:
    recs = {str(r["id"]): r for _, r in iter_jsonl(out / f"{name}.jsonl")}
    missing = [it.id for it in items if it.id not in recs]
    if missing:   # an internal invariant: every requested item was written above
        raise StepwiserError(f"{out / (name + '.jsonl')}: no record for {len(missing)} item(s), e.g. {missing[0]!r}; "
                             "summary.json not written (rerun to complete)")
    return [recs[it.id] for it in items]


def one_class_warning(name: str, scores: dict, limit: int | None) -> str:
    """The warning of a subset with only clean or only erroneous items: its F1 is 0 by construction."""
    missing = "clean" if scores["n_correct"] == 0 else "erroneous"
    hint = (f" --limit {limit} takes the first items of the file, and ProcessBench files list the erroneous "
            "items first" if limit else "")
    return (f"subset {name!r} has no {missing} items, so one accuracy is undefined (0) and F1 is 0 by "
            f"construction.{hint}")


def _summary(cfg: ProcessBenchConfig, bench: dict[str, list[BenchItem]], out: Path, seconds: float) -> dict:
    recs = {name: _read_back(out, name, items) for name, items in bench.items()}
    scores = summarize({name: ([r["label"] for r in rs], [r["prediction"] for r in rs]) for name, rs in recs.items()},
                       resamples=cfg.bootstrap, seed=cfg.seed)
    for name, rs in recs.items():
        s = scores["subsets"][name]
        s["unparsed"] = sum(bool(r.get("unparsed")) for r in rs)
        if cfg.mode == "predictions":
            s["missing"] = sum(bool(r.get("missing")) for r in rs)
        if s["n_error"] == 0 or s["n_correct"] == 0:
            s["warning"] = one_class_warning(name, s, cfg.limit)
            print(f"warning: {s['warning']}", file=sys.stderr)
    every = [r for rs in recs.values() for r in rs]
    missing = sum(bool(r.get("missing")) for r in every)
    if missing:   # only with --allow-missing: not a headline result
        scores["partial"], scores["missing"] = True, missing
    scores["meta"] = {
        "mode": cfg.mode, "judge": cfg.model, "maj": cfg.maj, "threshold": cfg.threshold, "all_steps": cfg.all_steps,
        "engine": cfg.engine, "data": cfg.data, "subsets": list(bench), "limit": cfg.limit, "sample": cfg.sample, "bootstrap": cfg.bootstrap,
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "seconds_this_run": round(seconds, 1),
        "items": len(every), "steps_judged": sum(r.get("steps_judged", 0) for r in every),
        "tokens": sum(r.get("tokens", 0) for r in every),
        "read_as": reading_or_none(cfg.model, cfg.judge_kind, cfg.threshold) if cfg.mode == "judge" else None}
    return scores
