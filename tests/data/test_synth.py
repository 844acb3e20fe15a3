"""The micro arithmetic domain and the synthetic ProcessBench (stepwiser.data.synth)."""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from fractions import Fraction

import pytest

from stepwiser.core.chunks import parse_chunks, render_chunks
from stepwiser.data.synth import (
    check_chunk_arithmetic,
    chunk_values,
    first_divergent_chunk,
    generate_bench,
    generate_problems,
    position_prior_f1,
    processbench_f1,
)

EXPR = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")
CALC = {
    "+": lambda a, b: Fraction(a + b),
    "-": lambda a, b: Fraction(a - b),
    "*": lambda a, b: Fraction(a * b),
    "/": lambda a, b: Fraction(a, b),
}


@pytest.fixture(scope="module")
def problems():
    return generate_problems(2000, 0)


@pytest.fixture(scope="module")
def bench():
    return generate_bench(600, 3)


def _boxed(text):
    return re.findall(r"\\boxed\{(\d+)\}", text)


# --------------------------------------------------------------------------- problems


def test_trace_recomputes_answer(problems):
    for p in problems[:500]:
        steps = p.extra["steps"]
        assert len(steps) == p.extra["n_steps"]
        numbers_in_text = set(re.findall(r"\d+", p.problem))
        for i, s in enumerate(steps):
            for k in ("a", "b"):
                src = s[f"{k}_from"]
                if src is None:  # a number read from the problem ("the same way back" is an unstated 2)
                    assert str(s[k]) in numbers_in_text or (s[k] == 2 and s["op"] == "*"), (p.problem, s)
                else:
                    assert 0 <= src < i and s[k] == steps[src]["result"]
            exact = CALC[s["op"]](s["a"], s["b"])
            assert exact.denominator == 1 and exact == s["result"] >= 2, s
            assert isinstance(s["quantity"], str) and s["quantity"] and "{" not in s["quantity"]
        assert str(steps[-1]["result"]) == p.answer


def test_solution_chunks_recompute_answer(problems):
    for p in problems[:500]:
        chunks = parse_chunks(p.solution, "tags")
        assert render_chunks(chunks, "tags") == p.solution
        assert len(chunks) == p.extra["n_steps"]
        value = None
        for chunk, step in zip(chunks, p.extra["steps"]):
            found = EXPR.findall(chunk)
            assert len(found) == 1, chunk
            a, op, b, r = found[0]
            assert CALC[op](int(a), int(b)) == int(r), chunk
            assert (int(a), op, int(b), int(r)) == (step["a"], step["op"], step["b"], step["result"])
            assert check_chunk_arithmetic(chunk) and chunk_values(chunk) == [int(r)]
            value = int(r)
        assert str(value) == p.answer
        assert _boxed(chunks[-1]) == [p.answer] and chunks[-1].endswith(f"\\boxed{{{p.answer}}}.")
        assert all(not _boxed(c) for c in chunks[:-1])
        assert "{" not in p.problem and "}" not in re.sub(r"\\boxed\{\d+\}", "", p.solution)


def test_problem_records(problems):
    assert len({p.problem for p in problems}) == len(problems) == 2000
    assert len({p.id for p in problems}) == 2000 and problems[5].id == "synth-0-5"
    assert all(p.source == "synth" for p in problems)
    scenarios = Counter(p.extra["scenario"] for p in problems)
    assert len(scenarios) >= 6 and min(scenarios.values()) > 100, scenarios
    steps = Counter(p.extra["n_steps"] for p in problems)
    assert set(steps) == {3, 4, 5, 6} and min(steps.values()) > 400, steps
    ops = Counter(s["op"] for p in problems for s in p.extra["steps"])
    assert set(ops) == {"+", "-", "*", "/"} and min(ops.values()) > 1000, ops
    # solutions stay short: the 135M policy is fine-tuned on them
    assert max(len(p.solution) for p in problems) < 560
    # a problem never repeats one of its sentences (numbers aside)
    for p in problems:
        sentences = re.sub(r"\d+", "N", p.problem).split(". ")
        assert len(sentences) == len(set(sentences)), p.problem


def test_varied_language(problems):
    openings = Counter(re.sub(r"\d+", "N", p.problem.split(".")[0]).split(" ", 1)[1] for p in problems)
    assert len(openings) >= 25
    chunk_patterns = Counter(re.sub(r"\d+", "N", c) for p in problems[:500] for c in parse_chunks(p.solution))
    assert len(chunk_patterns) >= 150


def test_determinism_and_seed():
    a = [p.to_dict() for p in generate_problems(50, 7)]
    b = [p.to_dict() for p in generate_problems(50, 7)]
    c = [p.to_dict() for p in generate_problems(50, 8)]
    assert a == b
    assert {x["problem"] for x in a}.isdisjoint({x["problem"] for x in c})


def test_knobs_and_exclude():
    ps = generate_problems(200, 1, min_steps=4, max_steps=4, max_operand=6)
    assert {p.extra["n_steps"] for p in ps} == {4}
    for p in ps:
        for s in p.extra["steps"]:
            reverse = (
                s["op"] == "-" and s["a_from"] is None and s["b_from"] is not None
            )  # "the book has N pages"
            if not reverse:
                assert all(s[k] <= 6 for k in ("a", "b") if s[f"{k}_from"] is None)
    first = generate_problems(30, 2)
    again = generate_problems(30, 2, exclude_texts={p.problem for p in first})
    assert {p.problem for p in first}.isdisjoint({p.problem for p in again})
    two = generate_problems(100, 2, min_steps=1, max_steps=2)
    assert {p.extra["n_steps"] for p in two} == {1, 2}


@pytest.mark.parametrize(
    "kw",
    [
        {"min_steps": 0},
        {"min_steps": 5, "max_steps": 4},
        {"max_steps": 9},
        {"max_operand": 3},
        {"max_value": 20},
    ],
)
def test_invalid_knobs(kw):
    with pytest.raises(ValueError):
        generate_problems(3, 0, **kw)


# --------------------------------------------------------------------------- reading arithmetic back


def test_chunk_values_and_arithmetic():
    assert chunk_values("So 3 * 12 = 36 pencils, and 36 + 5 = 41.") == [36, 41]
    assert chunk_values("No numbers stated as results here, only 12 and 5.") == []
    assert chunk_values("7 / 2 = 3.5") == [3.5]
    assert check_chunk_arithmetic("So 3 * 12 = 36 pencils, and 36 + 5 = 41.")
    assert not check_chunk_arithmetic("So 3 * 12 = 36 pencils, and 36 + 5 = 42.")
    assert check_chunk_arithmetic("no calculation at all")
    assert check_chunk_arithmetic(r"Since there were 18, \(1/3 \times 18 = 6\) are taken back.")
    assert not check_chunk_arithmetic(r"\(12 + 6 = 17\)")
    assert check_chunk_arithmetic("1,200 + 300 = 1,500 dollars") and chunk_values("1,200 + 300 = 1,500") == [
        1500
    ]
    assert check_chunk_arithmetic("2 + 3 * 4 = 14") and not check_chunk_arithmetic("2 + 3 * 4 = 20")
    assert check_chunk_arithmetic("Step 2: 5 x 6 = 30 and $4 \\cdot 5 = $20")
    assert check_chunk_arithmetic("7 / 2 = 3.5") and not check_chunk_arithmetic("10 / 3 = 3")
    # a decimal result may be rounded to the digits it shows, not further
    assert check_chunk_arithmetic("10 / 3 = 3.33") and not check_chunk_arithmetic("10 / 3 = 3.34")
    assert check_chunk_arithmetic("0.20 × $34.56 = $6.91")
    assert not check_chunk_arithmetic("0.20 × 34.56 = 6.8")
    # chains, percentages, implicit products, and expressions that continue into symbols
    assert check_chunk_arithmetic("(80,000 + 50,000) * 2.5 = $130,000 * 2.5 = $325,000")
    assert not check_chunk_arithmetic("(80,000 + 50,000) * 2.5 = $130,000 * 2.5 = $300,000")
    assert chunk_values("(80,000 + 50,000) * 2.5 = $130,000 * 2.5 = $325,000") == [325000]
    assert check_chunk_arithmetic(r"\[ 20\% \times 500 = 0.20 \times 500 = 100 \]")
    assert check_chunk_arithmetic("(4 / 20) * 100 = 0.2 * 100 = 20%")
    assert check_chunk_arithmetic("S = 4(3) - 5 = 7") and not check_chunk_arithmetic("S = 4(3) - 5 = 8")
    assert check_chunk_arithmetic("x^2 + 3 * 4 = 28") and not check_chunk_arithmetic("2 + 3 * 4 = 28")
    assert check_chunk_arithmetic(r"\text{Age} - 4 = 10 - 4 = 6")
    assert check_chunk_arithmetic(r"\[ 10 - 4 = 1.5x \] and 3 * 4 = 12 - y")
    assert chunk_values("10 - 4 = 1.5x") == []
    assert check_chunk_arithmetic(r"\[3a(5) - 115 = 0\] and \(3\frac{4}{5} = \frac{19}{5}\)")
    assert check_chunk_arithmetic(r"\(12 \div \frac{3}{4} = 16\)")
    assert not check_chunk_arithmetic(r"\(12 \div \frac{3}{4} = 9\)")
    assert not check_chunk_arithmetic("5 / 0 = 0") and chunk_values("5 / 0 = 0") == [0]
    assert check_chunk_arithmetic("2^3 + 1 = 9") and not check_chunk_arithmetic("2^3 = 6")
    assert check_chunk_arithmetic("x = 5 and y <= 3 and 2 == 2")


def _reference():
    return generate_problems(1, 11, min_steps=5, max_steps=5)[0]


def test_first_divergent_chunk_kinds():
    p = _reference()
    chunks = parse_chunks(p.solution)
    steps = p.extra["steps"]
    assert first_divergent_chunk(chunks, p) == (None, "none")
    assert first_divergent_chunk(chunks, p.to_dict()) == (None, "none")
    assert first_divergent_chunk(chunks[:2], steps) == (None, "none")
    s = steps[2]
    sym = f"{s['a']} {s['op']} {s['b']} = {s['result']}"

    def with_chunk(text):
        return chunks[:2] + [text] + chunks[3:]

    wrong = s["result"] + 1000
    assert first_divergent_chunk(with_chunk(f"so {s['a']} {s['op']} {s['b']} = {wrong}"), p) == (
        2,
        "arithmetic",
    )
    other_op = "+" if s["op"] != "+" else "*"
    res = CALC[other_op](s["a"], s["b"])
    assert first_divergent_chunk(with_chunk(f"so {s['a']} {other_op} {s['b']} = {res}"), p) == (
        2,
        "operation",
    )
    res = CALC[s["op"]](s["a"], s["b"] + 997)
    assert first_divergent_chunk(with_chunk(f"so {s['a']} {s['op']} {s['b'] + 997} = {res}"), p) == (
        2,
        "quantity",
    )
    assert first_divergent_chunk(with_chunk("so the total is = 99991"), p) == (2, "other")
    # a wrong boxed answer with right arithmetic everywhere
    assert first_divergent_chunk(chunks[:-1] + [chunks[-1].replace(f"{{{p.answer}}}", "{99991}")], p) == (
        4,
        "other",
    )
    # the first divergence wins over later ones
    bad = with_chunk(sym.replace(f"= {s['result']}", f"= {wrong}"))
    bad[4] = "1 + 1 = 3"
    assert first_divergent_chunk(bad, p)[0] == 2
    with pytest.raises(ValueError):
        first_divergent_chunk(chunks, {"problem": "no trace"})


# --------------------------------------------------------------------------- synthetic ProcessBench


def test_bench_format(bench):
    test, dev = bench
    assert len(test) == 600 and len(dev) == 150
    for split in (test, dev):
        assert len({it["id"] for it in split}) == len(split)
        for it in split:
            assert {"id", "generator", "problem", "steps", "final_answer_correct", "label"} <= set(it)
            assert it["generator"] == "synth" and isinstance(it["label"], int)
            assert all(isinstance(s, str) and "<chunk>" not in s for s in it["steps"])
            assert -1 <= it["label"] < len(it["steps"])
            assert it["final_answer_correct"] == (it["label"] == -1)
        clean = sum(it["label"] == -1 for it in split)
        assert abs(clean - len(split) / 2) <= 1


def _recomputed_label(item) -> int:
    """Independent of synth's helpers: the first chunk whose equation is wrong or whose result
    differs from the clean trace."""
    for i, (chunk, step) in enumerate(zip(item["steps"], item["reference"]["steps"])):
        ((a, op, b, r),) = EXPR.findall(chunk)
        if CALC[op](int(a), int(b)) != int(r) or int(r) != step["result"]:
            return i
    return -1


def test_bench_labels_at_the_corrupted_chunk(bench):
    for it in bench[0] + bench[1]:
        assert _recomputed_label(it) == it["label"]
        ref = it["reference"]["steps"]
        stated = [int(EXPR.findall(c)[0][3]) for c in it["steps"]]
        boxed = _boxed(it["steps"][-1])
        assert boxed == [str(stated[-1])]
        if it["label"] == -1:
            assert all(check_chunk_arithmetic(c) for c in it["steps"])
            assert boxed == [it["reference"]["answer"]]
            assert it["error_kind"] is None
            continue
        k = it["label"]
        clean_chunks = it["reference"]["chunks"]
        assert it["steps"][:k] == clean_chunks[:k] and it["steps"][k] != clean_chunks[k]
        assert it["error_kind"] in ("arithmetic", "operation", "quantity")
        assert first_divergent_chunk(it["steps"], it["reference"]) == (k, it["error_kind"])
        assert check_chunk_arithmetic(it["steps"][k]) == (it["error_kind"] != "arithmetic")
        # later chunks are computed correctly from the wrong values: the error does not spread
        assert all(check_chunk_arithmetic(c) for c in it["steps"][k + 1 :])
        for j in range(k + 1, len(ref)):
            a, _, b, _ = EXPR.findall(it["steps"][j])[0]
            for src, val in ((ref[j]["a_from"], a), (ref[j]["b_from"], b)):
                if src is not None:
                    assert int(val) == stated[src], (it["steps"], ref)
        assert stated[-1] != ref[-1]["result"]


def test_bench_error_kinds_balanced(bench):
    kinds = Counter(it["error_kind"] for it in bench[0] if it["label"] != -1)
    assert set(kinds) == {"arithmetic", "operation", "quantity"}
    assert max(kinds.values()) - min(kinds.values()) <= 3, kinds


def test_bench_positions_and_steps_stratified(bench):
    for split in bench:
        positions = defaultdict(Counter)
        steps = defaultdict(Counter)
        for it in split:
            n = len(it["steps"])
            steps[n][it["label"] == -1] += 1
            if it["label"] != -1:
                positions[n][it["label"]] += 1
        for n, c in positions.items():
            counts = [c[i] for i in range(n)]
            assert max(counts) - min(counts) <= 1, (n, counts)
        for n, c in steps.items():
            assert abs(c[True] - c[False]) <= 1, (n, c)
    counts = Counter(len(it["steps"]) for it in bench[0])
    assert set(counts) == {3, 4, 5, 6} and max(counts.values()) - min(counts.values()) <= 1


def _best_threshold_accuracy(xs, ys) -> float:
    pairs = sorted(zip(xs, ys))
    n, pos, best, left_pos = len(pairs), sum(ys), 0.0, 0
    for i, (_, y) in enumerate(pairs):
        left_pos += y
        acc = ((i + 1 - left_pos) + (pos - left_pos)) / n  # predict corrupted above the threshold
        best = max(best, acc, 1 - acc)
    return best


def test_bench_no_surface_leak(bench):
    test = bench[0]
    bad = [it["label"] != -1 for it in test]
    step_chars = [sum(map(len, it["steps"])) for it in test]
    total_chars = [len(it["problem"]) + s for it, s in zip(test, step_chars)]
    n_steps = [len(it["steps"]) for it in test]
    # the corruption itself keeps the length: summed over items, the steps are as long as the clean ones
    change = [sum(map(len, it["steps"])) - sum(map(len, it["reference"]["chunks"])) for it in test]
    assert abs(statistics.mean(c for c, b in zip(change, bad) if b)) < 0.1
    assert statistics.pstdev(change) < 0.15 * statistics.pstdev(step_chars)
    # clean and corrupted items are different problems: their means differ only by sampling noise
    for values, tol in ((n_steps, 0.02), (step_chars, 6.0), (total_chars, 12.0)):
        clean = statistics.mean(v for v, b in zip(values, bad) if not b)
        corrupted = statistics.mean(v for v, b in zip(values, bad) if b)
        assert abs(clean - corrupted) < tol, (clean, corrupted)
    for values in (step_chars, total_chars, [s / n for s, n in zip(step_chars, n_steps)]):
        assert _best_threshold_accuracy(values, bad) < 0.58


def test_bench_disjoint_from_exclude():
    train = generate_problems(300, 5)
    test, dev = generate_bench(120, 5, exclude_texts={p.problem for p in train})
    t, d, x = ({it["problem"] for it in test}, {it["problem"] for it in dev}, {p.problem for p in train})
    assert len(t) == 120 and len(d) == 30
    assert t.isdisjoint(d) and t.isdisjoint(x) and d.isdisjoint(x)
    again = generate_bench(120, 5, exclude_texts=x)
    assert again == (test, dev)


def test_processbench_f1_values():
    s = processbench_f1([-1, -1, 0, 2], [-1, 0, 0, 1])
    assert s == {"error_acc": 50.0, "correct_acc": 50.0, "f1": 50.0}
    s = processbench_f1([-1, 1, 1, 1], [-1, 1, 1, None])
    assert s["error_acc"] == pytest.approx(200 / 3) and s["correct_acc"] == 100.0
    assert s["f1"] == pytest.approx(80.0)
    assert processbench_f1([-1, 0], [0, -1])["f1"] == 0.0


def test_position_prior_f1(bench):
    # a constant prediction is right on one side only, so the prior scores 0 on any mixed bench
    assert position_prior_f1(bench[0]) == 0.0
    assert position_prior_f1([{"label": 0}, {"label": 0}, {"label": 1}]) == 0.0
    with pytest.raises(ValueError):
        position_prior_f1([])
