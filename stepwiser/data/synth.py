"""The micro arithmetic domain (docs/METHOD.md section 5) and a synthetic ProcessBench.

Problems are short word problems built from the scenario templates in `synth_scenarios`: 3 to 6
operations on positive integers (every intermediate value >= 2, every division exact), a reference
solution with one `<chunk>` per operation (C6, style ``tags``) whose last chunk ends with
``\\boxed{answer}``, and a machine-readable trace in ``Problem.extra["steps"]``: one
``{"op", "a", "b", "result", "quantity", "a_from", "b_from"}`` per chunk, where ``a_from``/``b_from``
is the index of the step whose result is that operand (None when the operand is a number stated in
the problem).

The synthetic ProcessBench corrupts one chunk of a reference solution (wrong result, wrong operator,
or a misread operand), recomputes every later chunk correctly from the wrong value, and labels the
item with the index of the corrupted chunk (-1 for clean items), in the ProcessBench file format.

Helpers for later stages (an oracle judge, error analysis): `chunk_values` and
`check_chunk_arithmetic` (from `stepwiser.core.arith`, re-exported here) read arithmetic back out of any
chunk text; `first_divergent_chunk` compares a response's chunks with a problem's trace.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from stepwiser.core.arith import boxed_value, check_chunk_arithmetic, chunk_values, equations
from stepwiser.core.chunks import render_chunks
from stepwiser.errors import StepwiserError
from stepwiser.core.metrics import processbench_f1  # the one implementation of the ProcessBench scores
from stepwiser.io.records import Problem
from stepwiser.data.synth_scenarios import NAMES, SCENARIOS, Event, Scenario

__all__ = ["apply_op", "boxed_value", "check_chunk_arithmetic", "chunk_values", "first_divergent_chunk",
           "generate_bench", "generate_problems", "position_prior_f1", "processbench_f1"]

OPS = ("+", "-", "*", "/")
ERROR_KINDS = ("arithmetic", "operation", "quantity")
MIN_VALUE = 2  # every stated quantity is at least 2 (keeps "1 pencils" and zero results out)
MAX_STEPS = 8


def apply_op(op: str, a, b):
    """`a op b`, or None for a division that is not exact (or by zero)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            return None
        q = Fraction(a) / Fraction(b)
        if isinstance(a, int) and isinstance(b, int):
            return int(q) if q.denominator == 1 else None
        return q
    raise ValueError(f"unknown operator {op!r}; allowed: {', '.join(OPS)}")


# --------------------------------------------------------------------------- problem drafts


@dataclass
class _Step:
    op: str
    srcs: tuple  # two operands: ("lit", value) or ("ref", index of an earlier step)
    template: str
    quantity: str


@dataclass
class _Draft:
    scenario: str
    text: str
    steps: list
    fields: dict


def _evaluate(steps: list, at: int | None = None, spec: tuple = ()) -> list | None:
    """[(op, a, b, result)] per step; `spec` corrupts step `at` and later steps follow from it.

    spec: ("arithmetic", stated_result) | ("operation", op) | ("quantity", slot, value).
    None when some value is not a valid quantity (not an integer >= MIN_VALUE)."""
    out: list = []
    for i, s in enumerate(steps):
        args = [v if kind == "lit" else out[v][3] for kind, v in s.srcs]
        op = s.op
        if i == at and spec[0] == "operation":
            op = spec[1]
        elif i == at and spec[0] == "quantity":
            args[spec[1]] = spec[2]
        r = spec[1] if i == at and spec[0] == "arithmetic" else apply_op(op, *args)
        if r is None or r < MIN_VALUE:
            return None
        out.append((op, args[0], args[1], r))
    return out


def _render(draft: _Draft, values: list) -> list[str]:
    chunks = [s.template.format(x=a, y=b, o=op, r=r, **draft.fields)
              for s, (op, a, b, r) in zip(draft.steps, values)]
    chunks[-1] += f" The answer is \\boxed{{{values[-1][3]}}}."
    return chunks


def _trace(draft: _Draft, values: list) -> list[dict]:
    return [{"op": op, "a": a, "b": b, "result": r, "quantity": s.quantity,
             "a_from": s.srcs[0][1] if s.srcs[0][0] == "ref" else None,
             "b_from": s.srcs[1][1] if s.srcs[1][0] == "ref" else None}
            for s, (op, a, b, r) in zip(draft.steps, values)]


def _pick(rng: random.Random, event: Event, used: set) -> tuple:
    """A phrasing of `event` not used yet in this problem."""
    p = rng.choice([p for p in event.phrasings if p[0] not in used])
    used.add(p[0])
    return p


def _one_operand(rng, e: Event, cur: int, max_operand: int, max_value: int) -> int | None:
    """The literal of a one-step event applied to `cur`, or None if none is valid."""
    if e.fixed is not None:
        r = apply_op(e.op, cur, e.fixed)
        return e.fixed if r is not None and MIN_VALUE <= r <= max_value else None
    if e.rev:  # literal - cur, e.g. pages in the book minus pages read
        return cur + rng.randint(MIN_VALUE, max(MIN_VALUE, min(cur, max_value)))
    if e.op == "+":
        hi = min(max_operand, max_value - cur)
    elif e.op == "-":
        hi = min(max_operand, cur - MIN_VALUE)
    elif e.op == "*":
        hi = min(max_operand, max_value // cur)
    else:
        divs = [d for d in range(2, max_operand + 1) if cur % d == 0 and cur // d >= MIN_VALUE]
        return rng.choice(divs) if divs else None
    return rng.randint(2, hi) if hi >= 2 else None


def _two_operands(rng, e: Event, cur: int, max_operand: int, max_value: int) -> tuple | None:
    """The literals (c, d) of a compound event: c op d, then cur op2 (c op d)."""
    for _ in range(20):
        c, d = rng.randint(2, max_operand), rng.randint(2, max_operand)
        r1 = apply_op(e.op, c, d)
        r2 = apply_op(e.op2, cur, r1) if r1 is not None and r1 >= MIN_VALUE else None
        if r2 is not None and MIN_VALUE <= r2 <= max_value:
            return c, d
    return None


def _draft(rng: random.Random, scen: Scenario, n_steps: int, max_operand: int,
           max_value: int) -> _Draft | None:
    """One random problem of `scen` with exactly `n_steps` steps, or None if this try got stuck."""
    name, pronouns = rng.choice(NAMES)
    f = {"P": name, **pronouns, **rng.choice(scen.vocab)}
    used: set = set()
    start = rng.choice(scen.start)
    a, b = rng.randint(2, max_operand), rng.randint(2, max_operand)
    text, chunk = _pick(rng, start, used)
    steps = [_Step(start.op, (("lit", a), ("lit", b)), chunk, scen.states[start.to][0].format(**f))]
    sentences = [text.format(a=a, b=b, **f)]
    cur, state, done_once = apply_op(start.op, a, b), start.to, set()
    while len(steps) < n_steps:
        options = [e for e in scen.events if e.frm == state and e.size <= n_steps - len(steps)
                   and not (e.once and id(e) in done_once) and any(p[0] not in used for p in e.phrasings)]
        rng.shuffle(options)  # no sentence is used twice in one problem
        for e in options:
            lits = (_two_operands if e.op2 else _one_operand)(rng, e, cur, max_operand, max_value)
            if lits is not None:
                break
        else:
            return None
        phr = _pick(rng, e, used)
        quantity = scen.states[e.to][0].format(**f)
        if e.op2:
            c, d = lits
            sentences.append(phr[0].format(c=c, d=d, **f))
            steps.append(_Step(e.op, (("lit", c), ("lit", d)), phr[1], e.q.format(**f)))
            steps.append(_Step(e.op2, (("ref", len(steps) - 2), ("ref", len(steps) - 1)), phr[2], quantity))
        else:
            sentences.append(phr[0].format(b=lits, **f))
            prev = ("ref", len(steps) - 1)
            srcs = (("lit", lits), prev) if e.rev else (prev, ("lit", lits))
            steps.append(_Step(e.op, srcs, phr[1], quantity))
        cur = _evaluate(steps)[-1][3]
        state = e.to
        if e.once:
            done_once.add(id(e))
    sentences.append(rng.choice(scen.states[state][1]).format(**f))
    text = " ".join(s[0].upper() + s[1:] for s in sentences)
    return _Draft(scen.name, text, steps, f)


def _new_draft(rng, n_steps, max_operand, max_value) -> _Draft:
    names = sorted(SCENARIOS)
    for _ in range(500):
        d = _draft(rng, SCENARIOS[rng.choice(names)], n_steps, max_operand, max_value)
        if d is not None:
            return d
    raise StepwiserError(f"could not build a {n_steps}-step problem with max operand {max_operand}; "
                         "use fewer steps or a larger --max-operand")


def _check_knobs(n, min_steps, max_steps, max_operand, max_value) -> int:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 1 <= min_steps <= max_steps <= MAX_STEPS:
        raise ValueError(f"need 1 <= min_steps <= max_steps <= {MAX_STEPS}, got {min_steps}..{max_steps}")
    if max_operand < 4:
        raise ValueError(f"max_operand must be >= 4, got {max_operand}")
    max_value = 30 * max_operand if max_value is None else max_value
    if max_value < max_operand * max_operand:
        raise ValueError(f"max_value must be >= max_operand**2 = {max_operand**2}, got {max_value}")
    return max_value


def _unique_drafts(rng, step_counts, max_operand, max_value, seen: set):
    """Yield one new draft (text not in `seen`) per requested step count; adds texts to `seen`."""
    for k in step_counts:
        for _ in range(1000):
            d = _new_draft(rng, k, max_operand, max_value)
            if d.text not in seen:
                break
        else:
            raise StepwiserError("could not find a new problem text after 1000 tries; the problem space "
                                 "is exhausted: use a larger --max-operand or fewer problems")
        seen.add(d.text)
        yield d


def _to_problem(d: _Draft, pid: str) -> Problem:
    values = _evaluate(d.steps)
    return Problem(id=pid, problem=d.text, answer=str(values[-1][3]), source="synth",
                   solution=render_chunks(_render(d, values), "tags"),
                   extra={"scenario": d.scenario, "n_steps": len(d.steps), "steps": _trace(d, values)})


def generate_problems(n: int, seed: int, min_steps: int = 3, max_steps: int = 6, max_operand: int = 15,
                      exclude_texts=(), *, max_value: int | None = None) -> list[Problem]:
    """`n` distinct arithmetic word problems (deterministic for a seed), ids ``synth-<seed>-<i>``.

    Each has `min_steps`..`max_steps` operations (uniform), literals in [2, max_operand], every
    intermediate result in [2, max_value] (default 30 * max_operand), none of `exclude_texts`."""
    max_value = _check_knobs(n, min_steps, max_steps, max_operand, max_value)
    rng = random.Random(f"synth-problems:{seed}")
    counts = [rng.randint(min_steps, max_steps) for _ in range(n)]
    drafts = _unique_drafts(rng, counts, max_operand, max_value, set(exclude_texts))
    return [_to_problem(d, f"synth-{seed}-{i}") for i, d in enumerate(drafts)]


# --------------------------------------------------------------------------- error analysis against a trace

_NUM = r"(\d+(?:\.\d+)?)"
_BINARY = re.compile(rf"\s*{_NUM}\s*([-+*/])\s*{_NUM}\s*")


def _trace_of(reference) -> list[dict]:
    if isinstance(reference, Problem):
        reference = reference.extra.get("steps")
    elif isinstance(reference, dict):
        reference = reference.get("steps") or (reference.get("extra") or {}).get("steps")
    if not reference or not all(isinstance(s, dict) and "result" in s for s in reference):
        raise ValueError("first_divergent_chunk needs a synth problem (Problem with extra['steps']), "
                         "a dict with 'steps', or the list of trace steps")
    return reference


def _known_values(trace: list[dict]) -> set:
    """Results of the trace and the numbers read from the problem (operands that are no result)."""
    known = {Fraction(s["result"]) for s in trace}
    known |= {Fraction(s[k]) for s in trace for k in ("a", "b") if s.get(f"{k}_from") is None}
    return known


def _classify(expr: str | None, stated: Fraction, step: dict | None) -> str:
    m = _BINARY.fullmatch(expr) if expr and step else None
    if not m:
        return "other"
    x, o, y = Fraction(m.group(1)), m.group(2), Fraction(m.group(3))
    a, b, op = Fraction(step["a"]), Fraction(step["b"]), step["op"]
    right = apply_op(o, x, y) == stated
    same = (x, y) == (a, b) or (o in "+*" and (y, x) == (a, b))
    if not right:
        return "arithmetic" if o == op and same else "other"
    if o != op and ((x, y) == (a, b) or (y, x) == (a, b)):
        return "operation"
    hits = max((x == a) + (y == b), (y == a) + (x == b) if o in "+*" else 0)
    return "quantity" if o == op and hits == 1 else "other"


def first_divergent_chunk(response_chunks: list[str], problem) -> tuple[int | None, str]:
    """(index of the first chunk that leaves the reference trace, error kind), or (None, "none").

    A chunk diverges when one of its ``a op b = c`` is arithmetically wrong, when it states a
    result ``= c`` that is neither a reference result nor a number of the problem, or when its
    ``\\boxed{}`` differs from the answer. The kind compares the offending expression with the next
    reference step not reached yet: "arithmetic" (right operands and operator, wrong result),
    "operation" (right operands, another operator), "quantity" (same operator, one operand is not
    the right quantity), else "other". `problem` is a synth Problem, a dict with "steps" (e.g. a
    synthetic bench item's "reference"), or the trace list itself."""
    trace = _trace_of(problem)
    known = _known_values(trace)
    results = [Fraction(s["result"]) for s in trace]
    reached = [False] * len(trace)
    for i, chunk in enumerate(response_chunks):
        nxt = next((trace[j] for j, done in enumerate(reached) if not done), None)
        for e in equations(chunk):
            if e.ok is False or (e.stated and e.rhs_value not in known):
                return i, _classify(e.lhs, e.rhs_value, nxt)
            if e.stated:  # mark the first reference step with this result as reached
                j = next((j for j, r in enumerate(results) if r == e.rhs_value and not reached[j]), None)
                if j is not None:
                    reached[j] = True
        boxed = boxed_value(chunk)
        if boxed is not None and boxed != results[-1]:
            return i, "other"
    return None, "none"


# --------------------------------------------------------------------------- synthetic ProcessBench


def _specs(kind: str, draft: _Draft, clean: list, pos: int):
    op, a, b, r = clean[pos]
    if kind == "arithmetic":
        w = max(10, r // 5)
        swapped = int(str(r)[::-1]) if len(str(r)) > 1 and str(r)[-1] != "0" else r
        return [("arithmetic", v) for v in sorted(set(range(r - w, r + w + 1)) | {swapped}) if v != r]
    if kind == "operation":
        return [("operation", o) for o in OPS if o != op]
    pool = {v for s in draft.steps for kind_, v in s.srcs if kind_ == "lit"} | {c[3] for c in clean[:pos]}
    return [("quantity", slot, v) for slot, right in ((0, a), (1, b)) for v in sorted(pool) if v != right]


def _corrupt(draft: _Draft, pos: int, rng: random.Random, bias: int, kind_counts: Counter) -> tuple | None:
    """(values, kind, length change) of one corruption at `pos`, or None if none is valid.

    Kinds are tried least used first (`kind_counts`, ties at random), so the three kinds stay
    balanced; among a kind's candidates, the one that keeps the running length difference `bias`
    closest to 0 wins (ties: one of the 4 wrong values closest to the right one)."""
    clean = _evaluate(draft.steps)
    known = _known_values(_trace(draft, clean))
    base = sum(map(len, _render(draft, clean)))
    for kind in sorted(ERROR_KINDS, key=lambda k: (kind_counts[k], rng.random())):
        cands = []
        for spec in _specs(kind, draft, clean, pos):
            vals = _evaluate(draft.steps, pos, spec)
            if vals is None or vals[pos][3] in known:
                continue
            delta = sum(map(len, _render(draft, vals))) - base
            cands.append((abs(bias + delta), abs(vals[pos][3] - clean[pos][3]), delta, vals))
        if cands:
            best = min(c[0] for c in cands)
            tied = sorted((c for c in cands if c[0] == best), key=lambda c: c[1])
            _, _, delta, vals = rng.choice(tied[:4])
            return vals, kind, delta
    return None


def _bench_slots(m: int, rng: random.Random, min_steps: int, max_steps: int) -> list[tuple[int, int | None]]:
    """(step count, corrupted position or None) for m items: step counts cycle evenly; within each
    step count half the items are corrupted, at positions spread evenly over the chunks."""
    span = max_steps - min_steps + 1
    counts = Counter(min_steps + i % span for i in range(m))
    slots, odd = [], 0
    for k in sorted(counts):
        c = counts[k]
        bad = c // 2 + (c % 2) * odd
        odd ^= c % 2
        cycles, rem = divmod(bad, k)
        positions = list(range(k)) * cycles + rng.sample(range(k), rem)
        slots += [(k, p) for p in positions] + [(k, None)] * (c - bad)
    rng.shuffle(slots)
    return slots


def _bench_split(m, split, seed, rng, seen, knobs) -> list[dict]:
    min_steps, max_steps, max_operand, max_value = knobs
    items, bias, kinds = [], 0, Counter()
    for k, pos in _bench_slots(m, rng, min_steps, max_steps):
        for d in _unique_drafts(rng, [k] * 200, max_operand, max_value, seen):
            clean = _evaluate(d.steps)
            bad = _corrupt(d, pos, rng, bias, kinds) if pos is not None else (clean, None, 0)
            if bad is not None:
                break
        else:
            raise StepwiserError(f"no valid corruption at step {pos} of 200 {k}-step problems")
        vals, kind, delta = bad
        bias += delta
        kinds[kind] += 1
        items.append({"id": f"synth-{seed}-{split}-{len(items)}", "generator": "synth", "problem": d.text,
                      "steps": _render(d, vals), "final_answer_correct": vals[-1][3] == clean[-1][3],
                      "label": -1 if pos is None else pos, "error_kind": kind, "scenario": d.scenario,
                      "reference": {"answer": str(clean[-1][3]), "steps": _trace(d, clean),
                                    "chunks": _render(d, clean)}})
    return items


def generate_bench(n: int, seed: int, exclude_texts=(), *, min_steps: int = 3, max_steps: int = 6,
                   max_operand: int = 15, max_value: int | None = None) -> tuple[list[dict], list[dict]]:
    """(test, dev): a synthetic ProcessBench of n and n // 4 items on distinct new problems.

    Items have the ProcessBench fields (id, generator, problem, steps, final_answer_correct, label)
    plus error_kind, scenario and `reference` (answer, trace and chunks of the clean solution), for
    analysis only: judges never see it."""
    max_value = _check_knobs(n, min_steps, max_steps, max_operand, max_value)
    rng = random.Random(f"synth-bench:{seed}")
    seen = set(exclude_texts)
    knobs = (min_steps, max_steps, max_operand, max_value)
    test = _bench_split(n, "test", seed, rng, seen, knobs)
    dev = _bench_split(n // 4, "dev", seed, rng, seen, knobs)
    return test, dev


def position_prior_f1(items: list[dict]) -> float:
    """F1 (percent) of always predicting the most common label (ties: the smallest label)."""
    if not items:
        raise ValueError("position_prior_f1 needs at least one item")
    labels = [int(it["label"]) for it in items]
    counts = Counter(labels)
    guess = min(counts, key=lambda y: (-counts[y], y))
    return processbench_f1(labels, [guess] * len(labels))["f1"]
