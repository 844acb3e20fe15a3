"""Final-answer extraction and equivalence checking (math-verify) with hard per-check timeouts.

`check(response, reference)` extracts the response's final answer (`extract_answer`), then decides:
1. in the calling process when that is trivial and cannot hang: identical normalized strings are
   correct; two plain numbers (``-12``, ``1,000``, ``0.50``) are compared exactly, and two different
   plain integers are incorrect (as math-verify says);
2. otherwise with math-verify (`parse` of both sides wrapped in ``\\boxed{}``, `verify(gold, pred)`)
   in a persistent pool of worker processes (`stepwiser.core.verify_pool`). math-verify's own SIGALRM
   timeouts (main thread only) are off (``parsing_timeout=None``, ``timeout_seconds=None``); a
   worker that has not answered within `timeout` seconds is killed and replaced instead, and the
   check returns ``"timeout"``. Checks work from any thread, from daemonic ``multiprocessing``
   workers and after a fork; the pool starts on first use (or `start()`), stops at exit (or
   `shutdown()`).
Both sides spell infinity as ``\\infty`` before comparing (``oo``, ``∞``, ``infinity``, ``inf``:
math-verify alone reads ``oo`` as o*o). An extracted answer longer than `MAX_ANSWER_CHARS` that is
not identical to the reference is ``"incorrect"`` without calling math-verify. Statuses: correct, incorrect, unparsed (no final answer,
or math-verify cannot parse it), timeout, error (empty or unparseable reference; a worker that died
twice on one input).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from stepwiser.core.boxed import last_boxed
from stepwiser.core.verify_pool import default_workers, get_pool, shutdown, start

__all__ = ["STATUSES", "VerifyResult", "check", "check_batch", "default_workers", "extract_answer",
           "is_correct", "last_boxed", "shutdown", "start"]

STATUSES = ("correct", "incorrect", "unparsed", "timeout", "error")
MAX_ANSWER_CHARS = 2000  # a longer extracted answer is "incorrect" unless identical to the reference


@dataclass(frozen=True)
class VerifyResult:
    status: str
    answer: str | None = None  # the extracted final answer of the response (None if none was found)
    detail: str = ""

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# --------------------------------------------------------------------------- answer extraction

_FALLBACKS = (
    re.compile(r"####[ \t]*([^\n]+)"),
    re.compile(r"(?i)\banswer[ \t]+is[ \t*]*:?[ \t*]*([^\n]+)"),
    re.compile(r"(?i)\banswer[ \t*]*:[ \t*]*([^\n]+)"),
)
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_SENTENCE_END = re.compile(r"\.(?:\s|$)")


def _clean(candidate: str) -> str:
    s = candidate.strip().strip("*").strip()
    m = _SENTENCE_END.search(s)
    if m and m.start() > 0 and not (s[:m.start()].count("$") % 2):
        s = s[:m.start()]
    s = s.rstrip(".").strip()
    for left, right in _DELIMS:
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left):-len(right)].strip()
            break
    return s


def extract_answer(text: str) -> str | None:
    """The final answer of a response, or None if it has none.

    1. the content of the LAST closed ``\\boxed{...}`` or ``\\fbox{...}`` (braces balanced, escaped
       ``\\{``/``\\}`` ignored; an unclosed box, e.g. in a truncated response, does not count), or of
       ``\\boxed 5`` (no braces);
    2. otherwise the last of these fallbacks, by position in the text, up to the end of its line:
       ``#### N`` (GSM8K), ``... answer is N`` (``The final answer is: $N$.``), ``Answer: N``.
       A fallback answer loses surrounding ``*``, a sentence-ending period and ``$..$``/``\\(..\\)``
       delimiters.
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects a str, got {type(text).__name__}")
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    best = None
    for pattern in _FALLBACKS:
        for m in pattern.finditer(text):
            if best is None or m.start() > best.start():
                best = m
    if best is None:
        return None
    answer = _clean(best.group(1))
    inner = last_boxed(answer)
    return (inner.strip() if inner is not None else answer) or None


# --------------------------------------------------------------------------- fast path

_NOISE = re.compile(r"\s+|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\[!,;: ]")
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")


def _normalize(s: str) -> str:
    s = _NOISE.sub("", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.rstrip(".")
    while len(s) > 2 and s[0] == "$" and s[-1] == "$":
        s = s[1:-1]
    return s


def _plain_number(s: str) -> Fraction | None:
    if len(s) > 100 or not _NUMBER.fullmatch(s):
        return None
    return Fraction(s.replace(",", ""))


def _fast_status(answer: str, reference: str) -> str | None:
    """"correct"/"incorrect" when decidable without math-verify, else None."""
    a, r = _normalize(answer), _normalize(reference)
    if a == r:
        return "correct"
    na, nr = _plain_number(a), _plain_number(r)
    if na is None or nr is None:
        return None
    if na == nr:
        return "correct"
    if "." not in a and "." not in r:  # math-verify rounds decimals; integers it compares exactly
        return "incorrect"
    return None


# ``oo`` (sympy), ``∞``, ``infinity``, ``inf``: math-verify reads ``oo`` as o*o and so judged
# ``\infty`` vs ``oo`` wrong; every spelling of infinity is compared as ``\infty``.
_INFINITY = re.compile(r"\\(?:text|mathrm)\{\s*(?:oo|infinity|inf|∞)\s*\}"
                       r"|(?<![A-Za-z\\])(?:oo|infinity|inf)(?![A-Za-z])|∞", re.IGNORECASE)


def _canonical_infinity(s: str) -> str:
    return _INFINITY.sub(lambda m: "\\infty", s)


def _prepare(response, reference, fast: bool) -> VerifyResult | tuple[str, str, str]:
    """A finished result, or the (answer, answer to compare, reference to compare) that need
    math-verify (the compared forms spell infinity as ``\\infty``)."""
    if not isinstance(response, str) or not isinstance(reference, str):
        raise TypeError(f"check expects str response and reference, got {type(response).__name__} and "
                        f"{type(reference).__name__}")
    ref = reference.strip()
    if "\\boxed" in ref or "\\fbox" in ref:
        ref = last_boxed(ref) or ref
    ref = _clean(ref) if ref.startswith(("$", "\\(")) else ref.strip()
    if not ref:
        return VerifyResult("error", extract_answer(response), "empty reference answer")
    answer = extract_answer(response)
    if answer is None:
        return VerifyResult("unparsed", None, "no final answer found")
    cmp_answer, cmp_ref = _canonical_infinity(answer), _canonical_infinity(ref)
    status = _fast_status(cmp_answer, cmp_ref) if fast else None
    if status is not None:
        return VerifyResult(status, answer, "fast path")
    if len(answer) > MAX_ANSWER_CHARS:
        return VerifyResult("incorrect", answer, f"answer longer than {MAX_ANSWER_CHARS} characters")
    return answer, cmp_answer, cmp_ref


# --------------------------------------------------------------------------- public API

def _check_args(timeout: float, workers: int | None = None) -> None:
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")


def check(response: str, reference: str, timeout: float = 5.0, *, fast: bool = True) -> VerifyResult:
    """Is the final answer of `response` equivalent to `reference`? See the module docstring.

    `reference` is a bare answer (``\\frac{1}{2}``); one holding a ``\\boxed{}`` is reduced to its
    last box. `fast=False` skips the in-process fast path (for measurements).
    """
    _check_args(timeout)
    prepared = _prepare(response, reference, fast)
    if isinstance(prepared, VerifyResult):
        return prepared
    answer, cmp_answer, cmp_ref = prepared
    status, detail = get_pool().run(cmp_answer, cmp_ref, timeout)
    return VerifyResult(status, answer, detail)


def check_batch(pairs, timeout: float = 5.0, workers: int | None = None, *, fast: bool = True,
                progress: bool = False) -> list[VerifyResult]:
    """`check` for each (response, reference) pair, in the same order, `workers` at a time.

    `workers` defaults to the pool size (`default_workers()`); a larger value grows the pool.
    `progress=True` shows a progress bar over the pairs that need math-verify.
    """
    from concurrent.futures import ThreadPoolExecutor

    _check_args(timeout, workers)
    results: list[VerifyResult | None] = []
    todo: list[tuple[int, str, str, str]] = []
    for i, (response, reference) in enumerate(pairs):
        prepared = _prepare(response, reference, fast)
        results.append(prepared if isinstance(prepared, VerifyResult) else None)
        if not isinstance(prepared, VerifyResult):
            todo.append((i, *prepared))
    if todo:
        from tqdm import tqdm

        pool = get_pool(workers)
        with tqdm(total=len(todo), desc="verify", unit="check", disable=not progress) as bar:

            def one(item: tuple[int, str, str, str]) -> None:
                i, answer, cmp_answer, cmp_ref = item
                status, detail = pool.run(cmp_answer, cmp_ref, timeout)
                results[i] = VerifyResult(status, answer, detail)
                bar.update(1)

            ex = ThreadPoolExecutor(max_workers=min(workers or pool.size, len(todo)))
            try:
                list(ex.map(one, todo))
            finally:  # on Ctrl-C or an error, drop the queued pairs instead of checking them all
                ex.shutdown(wait=True, cancel_futures=True)
    return results  # type: ignore[return-value]


def is_correct(response: str, reference: str, timeout: float = 5.0) -> bool:
    """True when `check(response, reference, timeout)` says "correct"."""
    return check(response, reference, timeout).correct
