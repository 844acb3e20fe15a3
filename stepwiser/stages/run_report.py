"""Stage `report-run`: a run's report.md and PNG plots from the outputs of the other stages.

Inputs are "NAME=PATH" (NAME labels the row): `eval labels` folders (--labels, with --pair A:B for paired
differences on the same chunks and --data for their exact labels), `eval processbench` folders (--bench,
reference floors included), train-judge folders (--train: curves and a table), annotation files
(--annotations: cost and label balance), `search` folders (--search: the paper's Table 7 columns and a
paired difference against the free baseline), `select` folders (--select, with --accuracy: `eval accuracy`
of the policies trained on them). --verdict "JUDGE>FLOOR1,FLOOR2" adds a line at the top saying whether
the judge beats each floor. Under each table a "Produced by" line gives the key config values of the
runs behind it (their manifest.json, else the summary's meta).

An input that is not there (its folder, file or summary.json) is left out and listed at the end of the
report; no input at all, or every given input missing, is an error naming what was missing. Writes
OUT/report.md and OUT/*.png (tables: `run_report_tables`; plots: `run_report_plots`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from stepwiser.core.metrics import DEFAULT_RESAMPLES
from stepwiser.errors import StepwiserError
from stepwiser.io.config import option
from stepwiser.io.records import iter_jsonl, manifest_path
from stepwiser.stages import run_report_tables as tables

INPUTS = ("labels", "bench", "train", "annotations", "search", "select", "accuracy")
STAGES = {"labels": "eval labels", "bench": "eval processbench", "train": "train-judge", "annotations": "annotate",
          "search": "search", "select": "select", "accuracy": "eval accuracy"}
# the config values named under a table ("Produced by"), None and False left out
KEYS = {"labels": ("judge", "read_as", "data", "split", "maj", "cot", "limit"),
        "bench": ("mode", "model", "read_as", "data", "subsets", "maj", "sample", "limit"),
        "train": ("method", "model", "data", "lr", "max_steps", "num_generations", "shuffle_labels"),
        "annotations": ("policy", "relabel", "rollouts", "early_stop", "labels", "gamma", "alpha"),
        "search": ("policy", "judge", "problems", "max_resets", "maj"),
        "select": ("strategy", "policy", "judge", "k", "problems"),
        "accuracy": ("policy", "problems", "k", "temperature")}
PLOTS = {"curves": "train_curves.png", "health": "train_health.png", "balance": "label_balance.png"}


@dataclass(kw_only=True)
class RunReportConfig:
    out: str = option(help="Output folder: OUT/report.md and OUT/*.png.", short="-o")
    title: str = option("Run report", "The report's title.")
    notes: str | None = option(None, "A paragraph placed under the title (e.g. what kind of run this is).")
    labels: list[str] = option([], "NAME=DIR of `eval labels` outputs (judges and floors), one table row each.")
    bench: list[str] = option([], "NAME=DIR of `eval processbench` outputs (reference floors and the oracle "
                                  "included).")
    pair: list[str] = option([], "A:B, two --labels names compared on the same chunks (paired bootstrap over "
                                 "problems).")
    data: str | None = option(None, "The judge examples the --labels runs scored (a JSONL file, or a judge-data "
                                    "folder: its val.jsonl), for the exact labels of --pair and --verdict "
                                    "(default: the data the first --labels summary names, if it is there).")
    train: list[str] = option([], "NAME=DIR of train-judge outputs: training curves and a table.")
    annotations: list[str] = option([], "NAME=FILE of annotation JSONL files: cost and label balance.")
    search: list[str] = option([], "NAME=DIR of `search` outputs: the chunk-reset table.")
    select: list[str] = option([], "NAME=DIR of `select` outputs: the data-selection table.")
    accuracy: list[str] = option([], "NAME=DIR of `eval accuracy` outputs of the policies trained on the "
                                     "--select data (same NAME: same row).")
    verdict: str | None = option(None, "JUDGE>FLOOR1,FLOOR2: a line at the top saying whether the --labels judge "
                                       "JUDGE beats each floor (a --labels name or a number).")
    bootstrap: int = option(DEFAULT_RESAMPLES, "Bootstrap resamples of the paired differences (0: none).")
    seed: int = option(0, "Seed of the bootstrap.")

    def __post_init__(self):
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")
        for kind in INPUTS:
            named(getattr(self, kind), kind)
        names = named(self.labels, "labels")
        for a, b in self.pairs():
            for n in (a, b):
                if n not in names:
                    raise ValueError(f"--pair {a}:{b}: {n!r} is not a --labels name ({', '.join(names) or 'none'})")
        if self.verdict is not None:
            judge, floors = self.verdict_parts()
            unknown = [n for n in (judge, *floors) if n not in names and not (n != judge and _number(n) is not None)]
            if unknown:
                raise ValueError(f"--verdict {self.verdict}: {', '.join(map(repr, unknown))} not a --labels name")

    def pairs(self) -> list[tuple[str, str]]:
        out = []
        for p in self.pair:
            a, sep, b = p.partition(":")
            if not sep or not a or not b:
                raise ValueError(f"--pair: expected A:B, got {p!r}")
            out.append((a, b))
        return out

    def verdict_parts(self) -> tuple[str, list[str]]:
        judge, sep, floors = (self.verdict or "").partition(">")
        parts = [f.strip() for f in floors.split(",") if f.strip()]
        if not sep or not judge.strip() or not parts:
            raise ValueError(f"--verdict: expected JUDGE>FLOOR1,FLOOR2, got {self.verdict!r}")
        return judge.strip(), parts


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def named(values: list[str], kind: str = "input") -> dict[str, Path]:
    """{NAME: PATH} from "NAME=PATH" values (ValueError naming the option on a bad or repeated NAME)."""
    out: dict[str, Path] = {}
    for v in values or []:
        name, _, path = str(v).partition("=")
        if not name.strip() or not path.strip():
            raise ValueError(f"--{kind}: expected NAME=PATH, got {v!r}")
        if name.strip() in out:
            raise ValueError(f"--{kind}: the name {name.strip()!r} is given twice")
        out[name.strip()] = Path(path.strip())
    return out


# --------------------------------------------------------------------------- loading

@dataclass
class Loaded:
    """The inputs that are there, by kind ({NAME: {"summary", "config", ...}}), and those that are not."""
    inputs: dict[str, dict[str, dict]] = field(default_factory=lambda: {k: {} for k in INPUTS})
    missing: list[str] = field(default_factory=list)


def read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StepwiserError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise StepwiserError(f"{path}: expected a JSON object")
    return obj


def manifest_of(output: Path) -> dict:
    """The C7 manifest of an output (folder or file), {} when it has none."""
    m = manifest_path(output)
    return read_json(m) if m.is_file() else {}


def _config(manifest: dict, summary: dict) -> dict:
    config = dict(manifest.get("config") or summary.get("meta") or {})
    if "model" not in config and "judge" in (summary.get("meta") or {}):   # eval processbench's meta
        config["model"] = summary["meta"]["judge"]
    return config


def _folder_input(kind: str, path: Path) -> dict | str:
    """{"summary", "config"} of a folder with summary.json, or why it is missing."""
    if not path.is_dir():
        return f"{path}: not found" if not path.exists() else f"{path}: not a folder"
    s = path / "summary.json"
    if not s.is_file():
        return f"{s}: not found (the stage has not finished?)"
    summary = read_json(s)
    if kind == "bench":
        from stepwiser.stages.report import load_summary

        summary = load_summary(s)
    return {"summary": summary, "config": _config(manifest_of(path), summary)}


def _train_input(path: Path) -> dict | str:
    if not path.is_dir():
        return f"{path}: not found"
    metrics = path / "metrics.jsonl"
    manifest = manifest_of(path)
    if not manifest and not metrics.is_file():
        return f"{path}: no manifest.json or metrics.jsonl (not a train-judge output?)"
    rows = [o for _, o in iter_jsonl(metrics, on_error="skip")] if metrics.is_file() else []
    config = dict(manifest.get("config") or {})
    judge = path / "stepwiser_judge.json"
    if "method" not in config and judge.is_file():   # disc-sft records its method in the export only
        config["method"] = read_json(judge).get("method")
    return {"summary": manifest.get("summary") or {}, "config": config, "metrics": rows}


def _annotation_input(path: Path) -> dict | str:
    """The manifest summary of an annotation file, completed from its records (cost, label balance)."""
    if not path.is_file():
        return f"{path}: not found"
    from stepwiser.stages.annotate_summary import rollout_accounting

    manifest = manifest_of(path)
    summary = dict(manifest.get("summary") or {})
    config = manifest.get("config") or {}
    rows = [o for _, o in iter_jsonl(path)]
    if not rows:
        return f"{path}: no annotation records"
    if "rollouts_spent" not in summary:
        m = config.get("rollouts") or max(max([*o.get("rollouts", []), o["q0"].get("rollouts", 0)]) for o in rows)
        summary = {**rollout_accounting(rows, m), **summary}
    summary.setdefault("annotations", len(rows))
    summary.setdefault("chunks", sum(len(o["chunks"]) for o in rows))
    balance = {}
    for t in sorted({t for o in rows for t in o.get("labels") or {}}):
        labs = [x for o in rows for x in (o["labels"].get(t) or []) if x is not None]
        if labs:
            balance[t] = round(100 * sum(labs) / len(labs), 1)
    summary["positive_pct"] = summary.get("positive_pct") or balance
    return {"summary": summary, "config": config}


def load_inputs(cfg: RunReportConfig) -> Loaded:
    """Every input of `cfg` that is there; StepwiserError when none is given or none is there."""
    given = {kind: named(getattr(cfg, kind), kind) for kind in INPUTS}
    if not any(given.values()):
        raise StepwiserError("nothing to report: give at least one of " + ", ".join(f"--{k}" for k in INPUTS))
    loaded = Loaded()
    for kind, runs in given.items():
        for name, path in runs.items():
            got = (_train_input(path) if kind == "train" else _annotation_input(path) if kind == "annotations"
                   else _folder_input(kind, path))
            if isinstance(got, str):
                loaded.missing.append(f"--{kind} {name}: {got}")
            else:
                loaded.inputs[kind][name] = got
    if not any(loaded.inputs.values()):
        raise StepwiserError("nothing to report: every input is missing: " + "; ".join(loaded.missing))
    return loaded


def load_judgments(folder: Path) -> dict[str, dict] | None:
    f = folder / "judgments.jsonl"
    return {str(r["key"]): r for _, r in iter_jsonl(f)} if f.is_file() else None


def exact_labels(cfg: RunReportConfig, labels: dict[str, dict]) -> dict[str, int | None]:
    """{example key: exact label or None} of the judge examples (--data, else the first --labels
    summary's data when that file is there); {} without either."""
    path = Path(cfg.data) if cfg.data else None
    if path is not None and path.is_dir():
        path = path / "val.jsonl"
    if path is None:   # the file the first run scored: its summary's meta names it, its config the folder
        found = [Path(p) for run in labels.values() for p in ((run["summary"].get("meta") or {}).get("data"),
                 Path(run["config"].get("data") or "") / f"{run['config'].get('split', 'val')}.jsonl")
                 if p and Path(p).is_file()]
        if not found:
            return {}
        path = found[0]
    if not path.is_file():
        raise StepwiserError(f"--data {cfg.data}: {path} not found")
    return {str(r["key"]): r.get("exact_label") for _, r in iter_jsonl(path) if "key" in r}


# --------------------------------------------------------------------------- the report

def config_value(run: dict, key: str):
    """A run's config value; `read_as` (how a judge was read: its kind, and the threshold of a scored kind)
    comes from its summary, as `kind` or `kind@threshold`."""
    if key != "read_as":
        return run["config"].get(key)
    how = ((run.get("summary") or {}).get("meta") or {}).get("read_as")
    if not how:
        return None
    return how["kind"] if how.get("threshold") is None else f"{how['kind']}@{how['threshold']:.4g}"


def produced_by(kind: str, runs: dict[str, dict]) -> str:
    """"Produced by: STAGE with k=v, ...": the values all runs share, then each run's own."""
    values = {name: {k: v for k in KEYS[kind] if (v := config_value(run, k)) is not None and v is not False
                     and v != []} for name, run in runs.items()}
    text = lambda d: ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in d.items())
    known = [d for name, d in values.items() if runs[name]["config"]]
    common = {k: v for k, v in known[0].items() if all(d.get(k) == v for d in known)} if known else {}
    line = f"Produced by: `stepwiser {STAGES[kind]}`" + (f" with {text(common)}" if common else "")
    own = [f"{name}: {text({k: v for k, v in d.items() if k not in common})}" if runs[name]["config"]
           else f"{name}: no manifest (config unknown)" for name, d in values.items()]
    own = [o for o in own if not o.endswith(": ")]
    if own and (len(runs) > 1 or not common):
        line += "; " + "; ".join(own)
    return line + "."


def section(title: str, body: list[str], notes: list[str], by: str) -> list[str]:
    return [f"## {title}", "", *body, "", *[f"{n}" for n in notes if n], *([""] if notes else []), by, ""]


def labels_sections(cfg: RunReportConfig, labels: dict[str, dict], judgments: dict, exact: dict) -> list[str]:
    out = []
    if labels:
        out += section("Judges against held-out chunk labels", tables.labels_table(
            {n: r["summary"] for n, r in labels.items()}), [tables.LABELS_NOTE], produced_by("labels", labels))
    if cfg.pair and labels:
        rows, notes = tables.pairs_table(cfg.pairs(), judgments, exact, cfg.bootstrap, cfg.seed)
        by = "Produced by: the judgments.jsonl of the --labels runs" + (" and the exact labels of the judge "
                                                                          "examples." if exact else ".")
        out += section("Paired differences (same chunks; bootstrap over problems)", rows,
                       [tables.PAIRS_NOTE, *(f"- {n}" for n in notes)], by)
    return out


def train_section(cfg: RunReportConfig, runs: dict[str, dict]) -> tuple[list[str], list[str]]:
    from stepwiser.stages import run_report_plots as plots

    metrics = {n: r["metrics"] for n, r in runs.items()}
    pngs, body = [], []
    for key, draw, caption in (("curves", plots.training_curves, "reward, training and validation accuracy"),
                               ("health", plots.training_health, "zero-variance groups and format failures")):
        if draw(metrics, Path(cfg.out) / PLOTS[key]):
            pngs.append(PLOTS[key])
            body += [f"![{caption}]({PLOTS[key]})", ""]
    notes = [] if pngs else ["No metrics.jsonl with training or validation rows: no plots."]
    return section("Judge training", body + tables.train_table(runs), notes, produced_by("train", runs)), pngs


def annotation_section(cfg: RunReportConfig, runs: dict[str, dict]) -> tuple[list[str], list[str]]:
    from stepwiser.stages.run_report_plots import label_balance

    shares = {n: r["summary"]["positive_pct"] for n, r in runs.items() if r["summary"].get("positive_pct")}
    body, pngs = tables.annotations_table({n: r["summary"] for n, r in runs.items()}), []
    if shares:
        label_balance(shares, Path(cfg.out) / PLOTS["balance"])
        pngs.append(PLOTS["balance"])
        body += ["", f"![chunk label balance]({PLOTS['balance']})"]
    note = ("saved by prefix sharing: share of Q slots not rolled out because the same prefix of the same "
            "problem was; saved by early stopping: share of M per rolled-out slot not drawn; seconds: of the "
            "run that wrote the manifest (resumed runs: the last part).")
    return section("Annotation cost", body, [note], produced_by("annotations", runs)), pngs


def search_section(cfg: RunReportConfig, runs: dict[str, dict], paths: dict[str, Path]) -> list[str]:
    for name, run in runs.items():
        run["paired"] = None
        res, base = paths[name] / "search.jsonl", paths[name] / "baseline.jsonl"
        if res.is_file() and base.is_file():
            run["paired"] = tables.paired_accuracy(tables.correct_by_problem(res), tables.correct_by_problem(base),
                                                   cfg.bootstrap, cfg.seed)
    return section("Chunk-reset search", tables.search_table(runs), [tables.SEARCH_NOTE], produced_by("search", runs))


def select_section(selects: dict[str, dict], accuracy: dict[str, dict]) -> list[str]:
    rows = tables.select_table({n: r["summary"] for n, r in selects.items()},
                               {n: r["summary"] for n, r in accuracy.items()})
    by = "\n\n".join(produced_by(k, runs) for k, runs in (("select", selects), ("accuracy", accuracy)) if runs)
    note = ("judge score: the judge's mean chunk score (P(Positive), 0..1) of the kept responses / of every "
            "correct one; policy accuracy: `eval accuracy` of the policy trained on that selection.")
    return section("Data selection", rows, [note], by)


# --------------------------------------------------------------------------- the verdict

def _score(summary: dict, kind: str) -> tuple[float, list | None]:
    s = summary["exact"] if kind == "exact" else summary
    return s["balanced_accuracy"], s.get("balanced_accuracy_ci")


def _paired_verdict(cfg, judge: str, floor: str, kind: str, judgments: dict, exact: dict) -> dict | str:
    """The paired difference judge - floor, or why there is none."""
    if judge not in judgments or floor not in judgments:
        return f"no paired test: {judge if judge not in judgments else floor} has no judgments.jsonl"
    if kind == "exact" and not any(v is not None for v in exact.values()):
        return "no paired test: no exact labels for the chunks (give --data)"
    d = tables.pair_difference(judgments[judge], judgments[floor], exact, kind, cfg.bootstrap, cfg.seed)
    if d is None:
        return "no paired test: no chunk judged by both"
    if tables.real(d["ci"]) == "-":
        return "no paired test: no bootstrap interval (--bootstrap 0)"
    return d


def one_verdict(cfg: RunReportConfig, judge: str, floor: str, labels: dict, judgments: dict, exact: dict) -> str:
    """Whether `judge` beats `floor` (a --labels name or a number), said plainly with how it was decided:
    the paired interval when both judged the same chunks, else the judge's interval against the floor's
    point value."""
    s = labels[judge]["summary"]
    fs = labels[floor]["summary"] if floor in labels else None
    if fs is None and (floor in named(cfg.labels) or _number(floor) is None):
        return f"cannot say whether {judge} beats {floor}: the --labels output of {floor} is missing."
    kind = "exact" if s.get("exact") and (fs is None or fs.get("exact")) else "MC"
    point, ci = _score(s, kind)
    head = f"{judge} (balanced accuracy vs {kind} labels {tables.fmt(point, ci)})"
    if fs is not None:
        d = _paired_verdict(cfg, judge, floor, kind, judgments, exact)
        if isinstance(d, dict):
            beats = d["ci"][0] > 0
            return (f"{head} {'beats' if beats else 'does not beat'} {floor}: paired difference "
                    f"{tables.fmt(d['diff'], d['ci'], sign=True)} points on the same {d['n']} chunks "
                    f"({d['groups']} problems); its 95% interval {'lies' if beats else 'does not lie'} entirely above 0 "
                    "(paired bootstrap over problems).")
        why, value = d, _score(fs, kind)[0]
    else:
        why, value = "a fixed floor", _number(floor)
    if ci is None:
        return f"cannot say whether {head} beats {floor}: {why}, and the judge's summary has no interval."
    beats = ci[0] > value
    return (f"{head} {'beats' if beats else 'does not beat'} {floor}: the lower bound of its 95% interval, "
            f"{ci[0]:.1f}, is {'above' if beats else 'not above'} {floor}'s point value {value:.1f} ({why}; "
            "not a paired test).")


def verdict_lines(cfg: RunReportConfig, labels: dict, judgments: dict, exact: dict) -> list[str]:
    judge, floors = cfg.verdict_parts()
    if judge not in labels:
        return [f"**Verdict:** none: the --labels output of {judge} is missing.", ""]
    return [x for f in floors for x in (f"**Verdict:** {one_verdict(cfg, judge, f, labels, judgments, exact)}", "")]


# --------------------------------------------------------------------------- the stage

def build_report(cfg: RunReportConfig, loaded: Loaded) -> tuple[str, list[str]]:
    """(report.md text, PNG file names written into cfg.out)."""
    inp, paths = loaded.inputs, {k: named(getattr(cfg, k), k) for k in INPUTS}
    labels = inp["labels"]
    need = bool(labels) and bool(cfg.pair or cfg.verdict)
    judgments = {n: j for n in labels if need and (j := load_judgments(paths["labels"][n])) is not None}
    exact = exact_labels(cfg, labels) if need else {}
    lines = [f"# {cfg.title}", "", *([cfg.notes, ""] if cfg.notes else [])]
    if cfg.verdict:
        lines += verdict_lines(cfg, labels, judgments, exact)
    lines += labels_sections(cfg, labels, judgments, exact)
    if inp["bench"]:
        lines += section("ProcessBench-style evaluation", tables.bench_table(
            {n: r["summary"] for n, r in inp["bench"].items()}), [tables.BENCH_NOTE], produced_by("bench", inp["bench"]))
    pngs: list[str] = []
    for kind, make in (("train", train_section), ("annotations", annotation_section)):
        if inp[kind]:
            body, written = make(cfg, inp[kind])
            lines, pngs = lines + body, pngs + written
    if inp["search"]:
        lines += search_section(cfg, inp["search"], paths["search"])
    if inp["select"] or inp["accuracy"]:
        lines += select_section(inp["select"], inp["accuracy"])
    if loaded.missing:
        lines += ["## Inputs not found (left out)", "", *(f"- {m}" for m in loaded.missing), ""]
    return "\n".join(lines).rstrip() + "\n", pngs


def run_report(cfg: RunReportConfig) -> dict:
    """Load the inputs, write OUT/report.md and the plots; returns {report, plots, missing, text}."""
    loaded = load_inputs(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    text, pngs = build_report(cfg, loaded)
    for stale in set(PLOTS.values()) - set(pngs):   # a plot of an earlier report with other inputs
        (out / stale).unlink(missing_ok=True)
    (out / "report.md").write_text(text, encoding="utf-8")
    return {"report": str(out / "report.md"), "plots": [str(out / p) for p in pngs], "missing": loaded.missing,
            "text": text}
