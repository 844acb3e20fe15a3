"""Reading arithmetic back out of reasoning text: stated results, and whether each equation holds.

Used on synthetic chunks (exact integer arithmetic) and tolerant of common real-solution notation:
LaTeX (``\\times``, ``\\div``, ``\\frac``, ``\\( \\)``), thousands separators, ``$``, percentages,
chains (``a = b * c = d``), implicit products (``4(3)``) and rounded decimals. An expression glued
to a symbol (``1.5x``, ``a(5)``, ``x^2 + 3``) is not checked, since its value is unknown.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

from stepwiser.core.boxed import last_boxed, unwrap

_REPLACE = [(re.compile(r"\\%"), "%"),
            (re.compile(r"=\s*(\d+(?:\.\d+)?)\s*%(?!\s*(?:of\b|[*/×]|\\times|\\cdot))"), r"= \1"),  # "= 20%"
            (re.compile(r"(\d+(?:\.\d+)?)\s*%\s*of\b"), r"(\1/100) *"),
            (re.compile(r"(\d+(?:\.\d+)?)\s*%"), r"(\1/100)"),
            (re.compile(r"(\d+)\s*\\frac\s*\{(\d+)\}\s*\{(\d+)\}"), r"(\1 + \2/\3)"),  # mixed number
            (re.compile(r"\\frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}"), r"((\1)/(\2))"),
            (re.compile(r"\\times|\\cdot|×|·|∗"), "*"), (re.compile(r"\\div|÷"), "/"),
            (re.compile(r"[−–]"), "-"), (re.compile(r"\\[()\[\]]|\$"), " "), (re.compile(r"\\[,;!]"), ""),
            (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""), (re.compile(r"(?<=\d)\s*[xX]\s*(?=\d)"), " * "),
            (re.compile(r"\^"), "**"), (re.compile(r"(?<=[\d)])\s*(?=\()"), " * ")]  # 4(3) = 4 * (3)
_EQ = re.compile(r"(?<![<>!=≤≥])=(?!=)")
_EXPR_CHARS = frozenset("0123456789.+-*/() ")


@dataclass(frozen=True)
class Equation:
    """One ``=`` sign: the expression before it (if any), the value after it, whether that value is
    stated as a plain number (a result), and whether the two sides agree (None: nothing to check)."""
    lhs: str | None
    lhs_value: Fraction | None
    rhs_value: Fraction
    stated: bool
    ok: bool | None


def _normalize(text: str) -> str:
    for pat, rep in _REPLACE:
        text = pat.sub(rep, text)
    return text


def _eval_node(n):
    if isinstance(n, ast.Constant) and type(n.value) in (int, float):
        return Fraction(str(n.value))
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
        v = _eval_node(n.operand)
        return None if v is None else (-v if isinstance(n.op, ast.USub) else v)
    if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
        a, b = _eval_node(n.left), _eval_node(n.right)
        if a is None or b is None:
            return None
        if isinstance(n.op, ast.Pow):
            return a ** int(b) if b.denominator == 1 and abs(b) <= 64 and (a != 0 or b >= 0) else None
        if isinstance(n.op, ast.Div):
            return a / b if b != 0 else None
        return a + b if isinstance(n.op, ast.Add) else a - b if isinstance(n.op, ast.Sub) else a * b
    return None


def _parse(expr: str):
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    is_expr = isinstance(node, ast.BinOp)
    if not is_expr and not isinstance(node, (ast.Constant, ast.UnaryOp)):
        return None
    return expr.strip(), _eval_node(node), is_expr


def _side(text: str, before: bool):
    """(expression, value, has an operator) of the longest arithmetic at the end of `text` (before
    an ``=``) or at its start (after one), or None (also when the end of `text` is only the tail of a
    longer expression that holds symbols, such as ``x**2 + 3``)."""
    run_len = 0
    while run_len < min(len(text), 300) and text[-1 - run_len if before else run_len] in _EXPR_CHARS:
        run_len += 1
    run = text[len(text) - run_len:] if before else text[:run_len]
    if not before:
        if run and not run[-1].isspace() and re.match(r"[A-Za-z\\{_]", text[run_len:run_len + 1]):
            return None  # a number glued to a symbol: "1.5x", "2\\pi"
        for i in range(len(run) - 1, -1, -1):
            p = _parse(run[:i + 1]) if run[i] in "0123456789)" else None
            if p is not None:
                return None if re.search(r"[-+*/]", run[i + 1:]) else p
        return None
    if run and not run[0].isspace() and re.match(r"[A-Za-z\\}_]", text[-run_len - 1:][:1]):
        return None  # glued to a symbol: "a(5) - 115", "r_3 + 25"
    for m in re.finditer(r"[\d(]", run):
        p = _parse(run[m.start():])
        if p is not None:  # an operator in the part left out: the expression goes on (x**2 + 3)
            return None if re.search(r"[-+*/]", run[:m.start()]) else p
    return None


def _decimals(expr: str) -> int:
    m = re.fullmatch(r"-?\d+\.(\d+)", expr)
    return len(m.group(1)) if m else 0


def equations(text: str) -> list[Equation]:
    """Every ``=`` in `text` whose right side is a number or an arithmetic expression."""
    t = _normalize(text)
    out = []
    for m in _EQ.finditer(t):
        lhs, rhs = _side(t[:m.start()], True), _side(t[m.end():], False)
        if rhs is None or rhs[1] is None:
            continue
        ok = None
        if lhs is not None and lhs[2]:
            tol = Fraction(5, 10 ** (_decimals(rhs[0]) + 1)) if _decimals(rhs[0]) else 0
            ok = lhs[1] is not None and abs(lhs[1] - rhs[1]) <= tol
        has_lhs = lhs is not None and lhs[2]
        out.append(Equation(lhs[0] if has_lhs else None, lhs[1] if has_lhs else None, rhs[1], not rhs[2], ok))
    return out


def _as_number(v: Fraction):
    return int(v) if v.denominator == 1 else float(v)


def chunk_values(chunk_text: str) -> list:
    """The numbers a chunk states as results (``= N``), in order (int, or float if not whole)."""
    return [_as_number(e.rhs_value) for e in equations(chunk_text) if e.stated]


def check_chunk_arithmetic(chunk_text: str) -> bool:
    """True when every ``expression = N`` (or ``expression = expression``) in the chunk is right.

    Exact, except that a decimal result may be rounded to the digits it shows (``0.2 * 34.56 =
    6.91``); an expression that cannot be evaluated (a division by zero) counts as wrong."""
    return all(e.ok is not False for e in equations(chunk_text))


def boxed_value(text: str) -> Fraction | None:
    """The number in the last ``\\boxed{}`` of `text`, or None (absent or not a number)."""
    found = last_boxed(text)
    if found is None:
        return None
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*", _normalize(unwrap(found)))
    return Fraction(m.group(1)) if m else None
