"""The page of `stepwiser view`: normalised solutions (`stepwiser.stages.view`) -> one self-contained HTML file.

Everything is rendered here, on the server side: every piece of model or data text goes through
`html.escape` (text and attribute values alike), and the one script of the page is a constant that reads
the page's own attributes; no data is embedded as JavaScript or JSON, so model text cannot end the
script or add markup. No network at view time: the CSS and the script are inline, the plots inline SVG.

Filters (the script): the label type (which labels colour the chunks and define "error" and
"disagreement"), colour by label or by judge verdict, only solutions with an error, only solutions where
the judge disagrees with the label, and a search over problem text and ids. A click on a chunk shows the
judge's analyses of it.
"""
from __future__ import annotations

import html
import re

GREEN, RED, GREY, AMBER, BLUE = "#2e7d32", "#c62828", "#9e9e9e", "#f9a825", "#1565c0"
VERDICT_NAMES = {1: "Positive", 0: "Negative", None: "unparsed"}


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def safe_name(t: str) -> str:
    """A label type as it may appear in an attribute name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", str(t)) or "_"


def verdict_code(v) -> str | None:
    """The `data-v` value of a verdict: 1, 0, u (unparsed); None when the chunk was not judged."""
    return None if v == "-" else "u" if v is None else str(int(v == 1))


# --------------------------------------------------------------------------- plots (inline SVG)

def _svg(title: str, body: list[str], height: int, width: int = 370, note: str = "") -> str:
    foot = f'<text x="4" y="{height - 4}" class="note">{esc(note)}</text>' if note else ""
    return (f'<figure class="plot"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>'
            f'<text x="4" y="14" class="ptitle">{esc(title)}</text>{"".join(body)}{foot}</svg></figure>')


def bar_chart(title: str, rows: list[tuple[str, float, str]], note: str = "", fmt: str = "{:g}") -> str:
    """Horizontal bars: (label, value, colour) per row."""
    top = max([v for _, v, _ in rows] + [1e-9])
    body, y = [], 24
    for label, v, colour in rows:
        w = 180 * v / top
        body.append(f'<text x="4" y="{y + 12}">{esc(label)}</text><rect x="110" y="{y}" width="{w:.1f}" '
                    f'height="15" fill="{colour}"/><text x="{114 + w:.1f}" y="{y + 12}">{esc(fmt.format(v))}</text>')
        y += 20
    return _svg(title, body, y + (22 if note else 8), note=note)


def split_chart(title: str, rows: list[tuple[str, int, int]], names=("positive", "negative"),
                colours=(GREEN, RED)) -> str:
    """One bar per row split into two shares (label balance, agreement): (label, first, second)."""
    body, y = [], 24
    for label, a, b in rows:
        n = max(a + b, 1)
        wa = 180 * a / n
        body.append(f'<text x="4" y="{y + 12}">{esc(label)}</text>'
                    f'<rect x="110" y="{y}" width="{wa:.1f}" height="15" fill="{colours[0]}"/>'
                    f'<rect x="{110 + wa:.1f}" y="{y}" width="{180 - wa:.1f}" height="15" fill="{colours[1]}"/>'
                    f'<text x="294" y="{y + 12}">{100 * a / n:.0f}% of {a + b}</text>')
        y += 20
    return _svg(title, body, y + 22, note=f"share {names[0]} (rest {names[1]})")


def histogram(title: str, values: list[float], lo: float, hi: float, bins: int, note: str = "",
              integer: bool = False) -> str:
    """Vertical bars of `values` in `bins` equal bins over [lo, hi]; `integer`: one bar per value, labelled."""
    counts = [0] * bins
    for v in values:
        counts[min(max(int((v - lo) / (hi - lo) * bins), 0), bins - 1)] += 1
    top, body, w = max(counts + [1]), [], 310 / bins
    for i, c in enumerate(counts):
        h = 90 * c / top
        body.append(f'<rect x="{30 + i * w:.1f}" y="{114 - h:.1f}" width="{w - 2:.1f}" height="{h:.1f}" '
                    f'fill="{BLUE}"><title>{c}</title></rect>')
        if integer:
            body.append(f'<text x="{30 + (i + 0.5) * w - 3:.1f}" y="128">{int(lo) + i}</text>')
    if not integer:
        body.append(f'<text x="30" y="128">{lo:g}</text><text x="{340 - 12}" y="128">{hi:g}</text>')
    return _svg(title, body, 150, note=f"{note}{'; ' if note else ''}tallest bar {top}")


def _label_plots(solutions: list[dict]) -> list[str]:
    chunks = [c for s in solutions for c in s["chunks"]]
    out = []
    types = sorted({t for c in chunks for t in c["labels"]})
    if types:
        out.append(split_chart("Label balance (chunks)", [
            (t, sum(c["labels"].get(t) == 1 for c in chunks), sum(c["labels"].get(t) == 0 for c in chunks))
            for t in types]))
    pairs = [(t, c) for c in chunks for t in c["labels"] if c["verdict"] in (0, 1)]
    if pairs:
        out.append(split_chart("Judge vs label (chunks)", [
            (t, sum(c["verdict"] == c["labels"][t] for u, c in pairs if u == t),
             sum(c["verdict"] != c["labels"][t] for u, c in pairs if u == t)) for t in types
            if any(u == t for u, _ in pairs)], names=("agree", "disagree"), colours=(GREEN, AMBER)))
    verdicts = [c["verdict"] for c in chunks] + [r["verdict"] for c in chunks for r in c["rejected"]]
    if any(v != "-" for v in verdicts):
        out.append(bar_chart("Judge verdicts (judged chunks and attempts)", [
            (VERDICT_NAMES[k], sum(v == k if k is not None else v is None for v in verdicts), col)
            for k, col in ((1, GREEN), (0, RED), (None, AMBER))]))
    qs = [c["q"] for c in chunks if isinstance(c["q"], (int, float))]
    if qs:
        out.append(histogram("Q-value distribution (chunks)", qs, 0.0, 1.0, 10,
                             note=f"{len(qs)} chunks; Q = successes / rollouts"))
    return out


def _cost_plots(solutions: list[dict]) -> list[str]:
    stats = [s["stats"] for s in solutions]
    out = []
    budget = sum(st.get("rollouts_budget") or 0 for st in stats)
    if budget:
        spent = sum(st.get("rollouts_spent") or 0 for st in stats)
        out.append(bar_chart("Rollouts", [("budget", budget, GREY), ("spent", spent, BLUE)],
                             note=f"saved {100 * (1 - spent / budget):.1f}% of the budget (early stopping)"))
    steps = [st for st in stats if st.get("steps") and st.get("steps_judged") is not None]
    if steps:
        total, judged = sum(st["steps"] for st in steps), sum(st["steps_judged"] for st in steps)
        out.append(bar_chart("Judge calls (steps)", [("steps", total, GREY), ("judged", judged, BLUE)],
                             note=f"stopping at the first Negative saved {100 * (1 - judged / max(total, 1)):.1f}%"))
    if any("accepted_tokens" in st for st in stats):
        acc = sum(st.get("accepted_tokens", 0) for st in stats)
        rej = sum(st.get("rejected_tokens", 0) for st in stats)
        out.append(bar_chart("Search tokens", [("accepted", acc, GREEN), ("rejected", rej, RED)],
                             note=f"{100 * rej / max(acc + rej, 1):.1f}% of the policy's tokens discarded by resets"))
        resets = [r for st in stats for r in st.get("resets", [])]
        if resets:
            hi = max(resets) + 1
            out.append(histogram("Resets per accepted chunk", resets, 0, hi, hi, note=f"{len(resets)} chunks",
                                 integer=True))
    return out


def summary_plots(solutions: list[dict]) -> list[str]:
    """The plots at the top of the page, from what the inputs have (labels, Q-values, verdicts, costs)."""
    return _label_plots(solutions) + _cost_plots(solutions)


# --------------------------------------------------------------------------- solutions

def _chunk_meta(c: dict) -> str:
    parts = [f"{esc(t)} {v}" for t, v in sorted(c["labels"].items())]
    if c["q"] is not None:
        parts.append(f"Q {c['q']:.3g}")
    if c["rollouts"]:
        parts.append(f"{c['successes']}/{c['rollouts']} rollouts" if c["successes"] is not None
                     else f"{c['rollouts']} rollouts")
    if c["verdict"] != "-":
        parts.append(f"judge {VERDICT_NAMES.get(c['verdict'], esc(c['verdict']))}")
    if isinstance(c["score"], (int, float)):
        parts.append(f"P(+) {c['score']:.2f}")
    if c["note"]:
        parts.append(esc(c["note"]))
    if c["analyses"]:
        parts.append(f"{len(c['analyses'])} analys{'es' if len(c['analyses']) > 1 else 'is'} (click)")
    return " · ".join(parts)


def _attempt(a: dict) -> str:
    v = verdict_code(a["verdict"])
    tag = f'<span class="tag">{VERDICT_NAMES.get(a["verdict"], "not judged")}</span>' if v else ""
    return f'<div class="rejected" title="rejected attempt"><s>{esc(a["text"])}</s> {tag}</div>'


def _analyses(texts: list[str], what: str) -> str:
    items = "".join(f'<pre class="atext">{esc(t)}</pre>' for t in texts)
    return f'<div class="analysis" hidden><div class="ahead">{esc(what)}</div>{items}</div>'


def render_chunk(i: int, c: dict) -> str:
    attrs = [f'data-l-{safe_name(t)}="{int(v)}"' for t, v in c["labels"].items()]
    v = verdict_code(c["verdict"])
    if v is not None:
        attrs.append(f'data-v="{v}"')
    cls = "chunk has-analysis" if c["analyses"] else "chunk"
    rejected = "".join(_attempt(a) for a in c["rejected"])
    analysis = _analyses(c["analyses"], f"judge's analys{'es' if len(c['analyses']) > 1 else 'is'} of step {i + 1}") \
        if c["analyses"] else ""
    return (f'{rejected}<div class="{cls}" {" ".join(attrs)} tabindex="0"><span class="idx">{i + 1}</span>'
            f'<span class="text">{esc(c["text"])}</span><div class="meta">{_chunk_meta(c)}</div>{analysis}</div>')


def solution_attrs(s: dict) -> str:
    attrs = [f'data-err="{int(s["error"])}"', f'data-kind="{esc(s["kind"])}"',
             f'data-search="{esc((s["id"] + " " + (s["problem"] or "")).lower())}"']
    attrs += [f'data-err-{safe_name(t)}="{int(e)}"' for t, e in s["errors"].items()]
    attrs += [f'data-dis-{safe_name(t)}="{int(d)}"' for t, d in s["disagree"].items()]
    return " ".join(attrs)


def render_solution(s: dict) -> str:
    correct = {True: '<span class="badge ok">correct</span>', False: '<span class="badge bad">wrong</span>'}
    badges = correct.get(s["correct"], "") + "".join(f'<span class="badge">{esc(b)}</span>' for b in s["badges"])
    problem = esc(s["problem"]) if s["problem"] else '<span class="muted">(problem text not available)</span>'
    critique = ""
    if s["analyses"]:
        critique = (f'<div class="chunk has-analysis critique" tabindex="0"><span class="text">critique '
                    f'({len(s["analyses"])} sample(s), click)</span>{_analyses(s["analyses"], "critique")}</div>')
    chunks = "".join(render_chunk(i, c) for i, c in enumerate(s["chunks"]))
    tail = "".join(_attempt(a) for a in s["tail_rejected"])
    return (f'<section class="solution" {solution_attrs(s)}><header><span class="sid">{esc(s["id"])}</span>'
            f'<span class="src">{esc(s["kind"])} · {esc(s["source"])}</span>{badges}</header>'
            f'<div class="problem">{problem}</div>{critique}<div class="chunks">{chunks}{tail}</div></section>')


def _controls(types: list[str], has_verdicts: bool) -> str:
    opts = "".join(f'<option value="{safe_name(t)}">{esc(t)}</option>' for t in types) or \
        '<option value="none">(no labels)</option>'
    colour = "" if types else " selected"
    return ('<div class="controls"><label>label type <select id="ltype">' + opts + '</select></label>'
            '<label>colour by <select id="color"><option value="auto">label, else judge verdict</option>'
            '<option value="label">label</option>'
            f'<option value="verdict"{colour if has_verdicts else ""}>judge verdict</option></select></label>'
            '<label><input type="checkbox" id="only-error"> only solutions with an error</label>'
            '<label><input type="checkbox" id="only-disagree"> only judge-label disagreements</label>'
            '<label>search <input type="search" id="q" placeholder="problem text or id"></label>'
            '<span id="shown"></span></div>')


LEGEND = ('<div class="legend"><span class="chip" data-c="1"></span> label 1 / Positive '
          '<span class="chip" data-c="0"></span> label 0 / Negative <span class="chip" data-c="u"></span> '
          'unparsed <s>struck through</s>: a rejected chunk-reset attempt</div>')


def render_page(title: str, solutions: list[dict], plots: list[str], notes: list[str], total: int) -> str:
    """The whole page (a str of HTML); `total`: solutions in the inputs (`solutions` may be the first N)."""
    types = sorted({t for s in solutions for c in s["chunks"] for t in c["labels"]})
    has_verdicts = any(c["verdict"] != "-" for s in solutions for c in s["chunks"])
    note_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    n_chunks = sum(len(s["chunks"]) for s in solutions)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head><body>'
            f'<h1>{esc(title)}</h1><p class="muted">{total} solution(s), {len(solutions)} listed '
            f'({n_chunks} chunks).</p>' + (f'<ul class="notes">{note_html}</ul>' if notes else "") +
            f'<div class="plots">{"".join(plots)}</div>{_controls(types, has_verdicts)}{LEGEND}'
            f'<main id="solutions">{"".join(render_solution(s) for s in solutions)}</main>'
            f"<script>{SCRIPT}</script></body></html>\n")


# --------------------------------------------------------------------------- the page's style and script

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px 24px;color:#212121;
background:#fafafa}
h1{font-size:20px;margin:0 0 4px}.muted{color:#757575}.notes{color:#8d6e00;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0;align-items:flex-start}
.plot{margin:0;background:#fff;border:1px solid #e0e0e0;border-radius:6px}
.plot text{font-size:11px;fill:#424242}.plot .ptitle{font-weight:600;font-size:12px}.plot .note{fill:#757575}
.controls{position:sticky;top:0;z-index:2;background:#fafafa;padding:8px 0;display:flex;flex-wrap:wrap;gap:14px;
align-items:center;border-bottom:1px solid #e0e0e0}#shown{font-weight:600}
.legend{font-size:12px;color:#616161;margin:6px 0 10px}.chip{display:inline-block;width:12px;height:12px;
border-radius:2px;vertical-align:middle;margin-left:8px;background:#eee}
.solution{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:10px 12px;margin:10px 0}
.solution header{display:flex;flex-wrap:wrap;gap:8px;align-items:baseline;margin-bottom:4px}
.sid{font-weight:600;font-family:ui-monospace,monospace}.src{color:#9e9e9e;font-size:12px}
.badge{font-size:11px;padding:1px 6px;border-radius:8px;background:#eceff1}.badge.ok{background:#c8e6c9}
.badge.bad{background:#ffcdd2}.problem{white-space:pre-wrap;margin:4px 0 8px;color:#37474f}
.chunk{border-left:4px solid #bdbdbd;background:#f5f5f5;margin:3px 0;padding:4px 8px;border-radius:0 4px 4px 0}
.chunk .idx{display:inline-block;min-width:1.6em;color:#757575;font-size:12px}.chunk .text{white-space:pre-wrap}
.chunk .meta{font-size:11px;color:#616161}.has-analysis{cursor:pointer}.has-analysis:hover{outline:1px dashed #90a4ae}
[data-c="1"]{border-left-color:#2e7d32;background:#e8f5e9}[data-c="0"]{border-left-color:#c62828;background:#ffebee}
[data-c="u"]{border-left-color:#f9a825;background:#fff8e1}
.rejected{margin:3px 0 3px 16px;padding:2px 8px;color:#9e9e9e;font-size:13px;white-space:pre-wrap;
border-left:2px dashed #ef9a9a}.tag{font-size:11px;color:#c62828}
.analysis{margin-top:6px;background:#fff;border:1px solid #cfd8dc;border-radius:4px;padding:6px;cursor:auto}
.ahead{font-size:11px;color:#546e7a;font-weight:600}.atext{white-space:pre-wrap;margin:4px 0;font-size:12px}
.chip[data-c="1"]{background:#2e7d32}.chip[data-c="0"]{background:#c62828}.chip[data-c="u"]{background:#f9a825}
[hidden]{display:none !important}
"""

# reads only the page's own attributes; no data is embedded here
SCRIPT = """
(function () {
  var sols = Array.prototype.slice.call(document.querySelectorAll('.solution'));
  var chunks = Array.prototype.slice.call(document.querySelectorAll('.solution .chunk'));
  var ltype = document.getElementById('ltype'), color = document.getElementById('color');
  var onlyErr = document.getElementById('only-error'), onlyDis = document.getElementById('only-disagree');
  var q = document.getElementById('q'), shown = document.getElementById('shown');
  function paint() {
    var t = ltype.value, mode = color.value;
    chunks.forEach(function (c) {
      var v = mode === 'verdict' ? null : c.getAttribute('data-l-' + t);
      if (v === null && mode !== 'label') { v = c.getAttribute('data-v'); }
      if (v === null) { c.removeAttribute('data-c'); } else { c.setAttribute('data-c', v); }
    });
  }
  function filter() {
    var t = ltype.value, s = q.value.trim().toLowerCase(), n = 0;
    sols.forEach(function (el) {
      var ok = true;
      if (onlyErr.checked) {
        var e = el.getAttribute('data-err-' + t);
        ok = (e !== null ? e : el.getAttribute('data-err')) === '1';
      }
      if (ok && onlyDis.checked) { ok = el.getAttribute('data-dis-' + t) === '1'; }
      if (ok && s) { ok = (el.getAttribute('data-search') || '').indexOf(s) >= 0; }
      el.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = n + ' of ' + sols.length + ' solutions shown';
  }
  function update() { paint(); filter(); }
  [ltype, color, onlyErr, onlyDis].forEach(function (el) { el.addEventListener('change', update); });
  q.addEventListener('input', filter);
  function toggle(ev) {
    var c = ev.target.closest('.has-analysis');
    if (!c || ev.target.closest('.analysis')) { return; }
    if (ev.type === 'keydown' && ev.key !== 'Enter') { return; }
    var a = c.querySelector('.analysis');
    if (a) { a.hidden = !a.hidden; }
  }
  document.addEventListener('click', toggle);
  document.addEventListener('keydown', toggle);
  update();
})();
"""
