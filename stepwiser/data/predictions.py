"""Scoring predictions made elsewhere (`eval processbench --predictions FILE`, contract C4).

FILE: JSONL (or a JSON list), one object per item with ``id`` and ``prediction`` (an integer in
[-1, number of steps), or null when that judge's output could not be parsed), optionally ``subset``
(needed only when the same id occurs in two subsets of the data). Checked against the whole data
(every subset file, no limit):
- an id that is not in the data, a duplicate, a malformed line or a prediction outside the item's
  range: an error naming the file (and line), nothing is written;
- an id of the data that is not evaluated in this run (another subset, beyond --limit): ignored;
- an evaluated item without a prediction: an error naming the ids, unless `allow_missing`
  (``--allow-missing``): then it is scored as wrong, reported (`missing` per subset) and the summary
  is marked ``"partial": true``; with no prediction for any evaluated item it is an error either way.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from stepwiser.errors import StepwiserError
from stepwiser.io.records import RecordError
from stepwiser.data.bench import BenchItem


@dataclass
class Predictions:
    path: str
    by_key: dict = field(default_factory=dict)   # (subset, id) -> int | None
    ignored: int = 0                             # lines for data items not evaluated in this run

    def predict(self, items: Iterable[BenchItem]) -> Iterator[tuple[BenchItem, dict]]:
        for it in items:
            missing = (it.subset, it.id) not in self.by_key
            p = None if missing else self.by_key[(it.subset, it.id)]
            yield it, {"prediction": p, "unparsed": p is None and not missing, "missing": missing}


def _listing(keys: list, more: int = 10) -> str:
    shown = ", ".join(repr(k) for k in keys[:more])
    return shown + (f" and {len(keys) - more} more" if len(keys) > more else "")


def _key(row, where: str, index: dict[str, list[str]]) -> tuple[str, str] | str:
    """(subset, id) of a predictions line, or the id itself when it is not in the data."""
    if not isinstance(row, dict) or "id" not in row or "prediction" not in row:
        raise RecordError(f"{where}: a prediction needs 'id' and 'prediction' fields, got {str(row)[:80]}")
    if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
        raise RecordError(f"{where}: 'id' must be a string or an integer, got {row['id']!r}")
    pid, subset = str(row["id"]), row.get("subset")
    subsets = index.get(pid, [])
    if subset is not None:
        return (str(subset), pid) if str(subset) in subsets else f"{subset}/{pid}"
    if len(subsets) > 1:
        raise RecordError(f"{where}: id {pid!r} is in subsets {', '.join(subsets)}; add a 'subset' field")
    return (subsets[0], pid) if subsets else pid


def read_predictions(path: str, known: dict[str, list[BenchItem]], evaluated: dict[str, list[BenchItem]],
                     allow_missing: bool = False) -> Predictions:
    """Read and check FILE against the data (`known`: every subset, no limit) and the evaluated items
    (each needs a prediction unless `allow_missing`)."""
    from stepwiser.data.datasets import iter_rows

    index: dict[str, list[str]] = {}
    steps = {}
    for name, items in known.items():
        for it in items:
            index.setdefault(it.id, []).append(name)
            steps[(name, it.id)] = len(it.steps)
    wanted = {(it.subset, it.id) for items in evaluated.values() for it in items}
    out, extra, seen = Predictions(path), [], {}
    for where, row in iter_rows(path):
        key = _key(row, where, index)
        if isinstance(key, str):
            extra.append(key)
            continue
        if key in seen:
            raise RecordError(f"{where}: duplicate prediction for id {key[1]!r} (first at {seen[key]})")
        seen[key] = where
        p = row["prediction"]
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not -1 <= p < steps[key]):
            raise RecordError(f"{where}: prediction for id {key[1]!r} must be null or an integer in "
                              f"[-1, {steps[key]}) ({steps[key]} steps), got {p!r}")
        if key in wanted:
            out.by_key[key] = p
        else:
            out.ignored += 1
    if extra:
        raise StepwiserError(f"{path}: {len(extra)} prediction id(s) not in the data: {_listing(extra)}")
    if not seen:
        raise StepwiserError(f"{path}: no predictions in this file")
    _check_missing(out, evaluated, allow_missing)
    return out


def _check_missing(preds: Predictions, evaluated: dict[str, list[BenchItem]], allow_missing: bool) -> None:
    gaps = missing_ids(preds, evaluated)
    n = sum(map(len, gaps.values()))
    total = sum(map(len, evaluated.values()))
    where = "; ".join(f"{name}: {_listing(ids, 5)}" for name, ids in gaps.items())
    if n == total:
        raise StepwiserError(f"{preds.path}: no prediction for any of the {total} evaluated items ({where}); "
                             "is it the predictions file of this data (and these --subsets)?")
    if n and not allow_missing:
        raise StepwiserError(f"{preds.path}: {n} of the {total} evaluated items have no prediction ({where}); "
                             "give --allow-missing to score them as wrong (the summary is then marked partial)")


def missing_ids(preds: Predictions, evaluated: dict[str, list[BenchItem]]) -> dict[str, list[str]]:
    """{subset: evaluated ids without a prediction} (only subsets with some)."""
    out = {name: [it.id for it in items if (name, it.id) not in preds.by_key] for name, items in evaluated.items()}
    return {k: v for k, v in out.items() if v}
