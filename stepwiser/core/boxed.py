"""The one ``\\boxed{}`` parser: every stage that reads a boxed answer, verdict or index uses it.

`last_boxed(text)` is the content of the last closed ``\\boxed{...}`` / ``\\fbox{...}`` (balanced
braces, linear time; ``\\boxed 5`` without braces as a fallback); `unwrap(content)` removes
``\\text{}``-style wrappers (the same list for answers, verdicts and critic indices).
"""
from __future__ import annotations

import re

_BOX_TOKENS = re.compile(r"\\\\|\\[{}]|\\(?:boxed|fbox)\s*\{|[{}]")
_BOX_SPACE = re.compile(r"\\boxed[ \t]+([^\s$]+)")
WRAPPERS = ("text", "textbf", "mathrm", "mathbf", "textit", "operatorname")
_WRAP = re.compile(r"\\(?:" + "|".join(WRAPPERS) + r")\s*\{([^{}]*)\}")


def last_boxed(text: str) -> str | None:
    """Content of the last closed ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces, linear time)."""
    span = last_box_span(text)
    if span is not None:
        return text[span[0]:span[1]]
    spaced = list(_BOX_SPACE.finditer(text))
    return spaced[-1].group(1) if spaced else None


def opens_after_last_box(text: str) -> bool:
    """True when a ``\\boxed{`` opens after the last closed box (or none closes): an unclosed last box."""
    span = last_box_span(text)
    starts = [m.end() for m in _BOX_TOKENS.finditer(text) if m.group().startswith(("\\boxed", "\\fbox"))]
    return bool(starts) and (span is None or starts[-1] > span[0])


def last_box_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the content of the last closed box, or None."""
    stack: list[int] = []  # -1 for a plain group, else the content start of a box
    last: tuple[int, int] | None = None
    for m in _BOX_TOKENS.finditer(text):
        tok = m.group()
        if tok.startswith("\\") and len(tok) == 2:  # \\ or an escaped brace: not structure
            continue
        if tok == "{":
            stack.append(-1)
        elif tok == "}":
            if stack:
                start = stack.pop()
                if start >= 0:
                    last = (start, m.start())
        else:
            stack.append(m.end())
    return last


def unwrap(content: str) -> str:
    """`content` with ``\\text{...}``-style wrappers removed (nested ones too)."""
    prev = None
    while prev != content:
        prev, content = content, _WRAP.sub(r"\1", content)
    return content
