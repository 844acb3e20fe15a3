"""Chunk text (contract C6): render and parse chunk lists, validate teacher segmentations.

`chunks` always hold each chunk's inner text, without tags.

- style ``tags``: each chunk is written ``<chunk>TEXT</chunk>``; chunks are joined by a single ``\\n``.
- style ``blank``: chunks are joined by ``\\n\\n`` (the paper's "split by blank line" baseline).

Parsing rules for ``tags`` (documented behaviour, all tested):

- a missing final ``</chunk>`` (generation stopped early, or stopped *at* ``</chunk>``) closes the
  last chunk at the end of the text;
- text outside tags is not part of any chunk; ``outside_text`` returns it so callers can count it;
- an empty or whitespace-only chunk is dropped;
- a nested ``<chunk>`` inside an open chunk closes the open one and starts a new chunk (tags do not
  nest); a stray ``</chunk>`` with no open chunk is ignored.
- if the text holds no ``<chunk>`` tag at all, the result is ``[]``.

Parsing for ``blank`` splits at runs of two or more newlines and strips each piece; empty pieces are
dropped.
"""
from __future__ import annotations

import re

STYLES = ("tags", "blank")
OPEN, CLOSE = "<chunk>", "</chunk>"
_TAG = re.compile(r"</?chunk>")
_BLANK = re.compile(r"\n[ \t]*\n\s*")


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown chunk style {style!r}; allowed: {', '.join(STYLES)}")


def render_chunks(chunks: list[str], style: str = "tags") -> str:
    """The text a model sees for these chunks (C6)."""
    _check_style(style)
    if style == "tags":
        return "\n".join(f"{OPEN}{c}{CLOSE}" for c in chunks)
    return "\n\n".join(chunks)


def continuation_prefix(chunks: list[str], style: str = "tags") -> str:
    """The text a policy continues after these accepted chunks: the chunks rendered, then the separator
    before the next one ('' for no chunks), as the annotate stage's rollouts continue a prefix."""
    _check_style(style)
    if not chunks:
        return ""
    return render_chunks(chunks, style) + ("\n" if style == "tags" else "\n\n")


def _scan(text: str) -> tuple[list[str], list[str]]:
    """Split tagged text into (chunks, outside pieces) following the module's rules."""
    chunks: list[str] = []
    outside: list[str] = []
    pos, open_at = 0, None
    for m in _TAG.finditer(text):
        if m.group() == OPEN:
            if open_at is not None:  # nested open: close the current chunk here
                chunks.append(text[open_at:m.start()])
            else:
                outside.append(text[pos:m.start()])
            open_at = m.end()
        else:
            if open_at is None:  # stray close
                outside.append(text[pos:m.start()])
            else:
                chunks.append(text[open_at:m.start()])
                open_at = None
        pos = m.end()
    if open_at is not None:
        chunks.append(text[open_at:])
    else:
        outside.append(text[pos:])
    return [c for c in chunks if c.strip()], [o for o in outside if o]


def parse_chunks(text: str, style: str = "tags") -> list[str]:
    """Inverse of `render_chunks`: the chunks' inner texts (see the module docstring for the rules)."""
    _check_style(style)
    if style == "blank":
        return [p.strip() for p in _BLANK.split(text) if p.strip()]
    return _scan(text)[0]


def outside_text(text: str) -> str:
    """Non-whitespace text found outside ``<chunk>`` tags (joined), '' when there is none."""
    return " ".join(o.strip() for o in _scan(text)[1] if o.strip())


def strip_tags(text: str) -> str:
    """Remove every ``<chunk>``/``</chunk>`` tag, keeping all other characters."""
    return _TAG.sub("", text)


def segmentation_problems(tagged: str, original: str) -> list[str]:
    """Why `tagged` is not a valid segmentation of `original` ([] when it is).

    Valid means: removing the tags reproduces `original` exactly; tags are well formed (each chunk
    opened and closed, no nesting); only whitespace stands outside tags; at least one chunk.
    """
    problems = []
    if strip_tags(tagged) != original:
        problems.append("removing the tags does not reproduce the original text")
    depth = 0
    for m in _TAG.finditer(tagged):
        depth += 1 if m.group() == OPEN else -1
        if depth not in (0, 1):
            problems.append("tags are nested or a </chunk> has no opening tag")
            break
    if depth == 1:
        problems.append("the last <chunk> is not closed")
    if outside_text(tagged):
        problems.append("text stands outside the <chunk> tags")
    if not parse_chunks(tagged, "tags"):
        problems.append("no non-empty chunk")
    return problems


def is_valid_segmentation(tagged: str, original: str) -> bool:
    return not segmentation_problems(tagged, original)
