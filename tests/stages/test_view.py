"""`stepwiser view`: inputs told apart by content, normalised solutions, and a page where model text stays text."""
from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from test_view_fixtures import PAYLOADS, write_inputs

from stepwiser.errors import EmptyResultError, StepwiserError
from stepwiser.stages.view import ViewConfig, detect_input, load_inputs, run_view


@pytest.fixture()
def inputs(tmp_path):
    return write_inputs(tmp_path / "in")


def _cfg(paths, out, **kw):
    return ViewConfig(inputs=[str(p) for p in paths], out=str(out), **kw)


def test_inputs_are_told_apart_by_content(inputs):
    assert detect_input(inputs["annotate"])[0] == "annotate"
    assert detect_input(inputs["eval"]) == ("eval", inputs["eval"])
    assert detect_input(inputs["eval"] / "test.jsonl")[0] == "eval"
    assert detect_input(inputs["labels"]) == ("labels", inputs["labels"] / "judgments.jsonl")
    assert detect_input(inputs["search"]) == ("search", inputs["search"] / "search.jsonl")
    assert detect_input(inputs["search"] / "search.jsonl")[0] == "search"


@pytest.mark.parametrize("name, content", [("summary.json", '{"n": 3, "accuracy": 50.0}\n'),
                                           ("samples.jsonl", '{"problem_id": "p", "response": "x"}\n'),
                                           ("notes.txt", "hello world\n"), ("blob.bin", b"\xff\xfe\x00\x81")])
def test_unknown_input_is_an_error_naming_the_file(tmp_path, name, content):
    f = tmp_path / name
    f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content)
    with pytest.raises(StepwiserError, match=name.replace(".", r"\.")):
        run_view(_cfg([f], tmp_path / "page.html"))
    folder = tmp_path / "nothing-here"
    folder.mkdir()
    with pytest.raises(StepwiserError, match="nothing-here: a folder without search.jsonl"):
        detect_input(folder)


def test_empty_input_is_an_empty_result(tmp_path):
    f = tmp_path / "annotations.jsonl"
    f.write_text("")
    with pytest.raises(EmptyResultError, match="no records"):
        run_view(_cfg([f], tmp_path / "page.html"))
    assert not (tmp_path / "page.html").exists()
    with pytest.raises(ValueError, match="max_solutions"):
        _cfg([f], tmp_path / "p.html", max_solutions=0)


def test_annotation_chunks_carry_q_rollouts_labels_and_problem_text(inputs, tmp_path):
    sols, notes, kinds = load_inputs(_cfg([inputs["annotate"]], tmp_path / "p.html"))
    assert kinds == {"annotate": 3} and not notes
    s = sols[1]
    assert s["id"] == "p1/1" and s["problem"].startswith("Tom has 3 boxes") and s["correct"] is False
    c = s["chunks"][0]
    assert (c["q"], c["rollouts"], c["successes"]) == (0.0, 8, 0)
    assert c["labels"] == {"abs_q": 0, "rel_effective": 0}   # rel_ratio was not requested (null)
    assert s["error"] and s["errors"] == {"abs_q": True, "rel_effective": True}
    assert not sols[0]["error"] and sols[0]["stats"] == {"rollouts_spent": 24, "rollouts_budget": 24}


def test_eval_steps_get_gold_labels_verdicts_analyses_and_disagreement(inputs, tmp_path):
    sols, _, _ = load_inputs(_cfg([inputs["eval"]], tmp_path / "p.html"))
    b1, b2 = sols
    assert b1["problem"].startswith("Ann reads") and [c["text"] for c in b1["chunks"]][1] == "6 * 5 = 35 pages."
    assert [c["labels"] for c in b1["chunks"]] == [{"gold": 1}, {"gold": 0}, {}]
    assert [c["verdict"] for c in b1["chunks"]] == [1, 1, 1]
    assert b1["chunks"][1]["analyses"][0].startswith("Step check")
    assert b1["error"] and b1["disagree"] == {"gold": True}
    assert [c["verdict"] for c in b2["chunks"]] == [1, 0, "-"] and not b2["error"] and b2["disagree"]["gold"]
    assert b2["stats"] == {"steps_judged": 2, "steps": 3}


def test_eval_without_its_bench_still_shows_the_verdicts(inputs, tmp_path):
    (inputs["eval"] / "manifest.json").unlink()
    sols, notes, _ = load_inputs(_cfg([inputs["eval"]], tmp_path / "p.html"))
    assert "give --data" in notes[0] and sols[0]["problem"] is None and len(sols[0]["chunks"]) == 3
    sols, notes, _ = load_inputs(_cfg([inputs["eval"]], tmp_path / "p.html", data=str(tmp_path / "in" / "bench")))
    assert not notes and sols[0]["problem"].startswith("Ann reads")


def test_labels_examples_become_solutions(inputs, tmp_path):
    (s,), _, _ = load_inputs(_cfg([inputs["labels"]], tmp_path / "p.html"))
    assert s["id"] == "p2/0" and [c["labels"] for c in s["chunks"]] == [{"rel_effective": 1}, {"rel_effective": 0}]
    assert [c["verdict"] for c in s["chunks"]] == [1, 1] and s["disagree"] == {"rel_effective": True}


def test_search_keeps_rejected_attempts_with_their_verdicts(inputs, tmp_path):
    p3, p1 = load_inputs(_cfg([inputs["search"]], tmp_path / "p.html"))[0]
    assert p3["problem"].startswith("Ann reads")
    assert p3["chunks"][0]["rejected"] == [{"text": "6 * 5 = 35 pages.", "verdict": 0},
                                           {"text": "6 + 5 = 11 pages.", "verdict": 0}]
    assert p3["chunks"][0]["verdict"] == 1 and p3["chunks"][0]["note"] == "2 resets"
    assert p1["chunks"][1]["verdict"] == "-" and "accepted unjudged" in p1["chunks"][1]["note"]
    assert p1["error"] and not p3["error"]


def test_search_records_without_rejected_texts_still_load(inputs, tmp_path):
    f = inputs["search"] / "search.jsonl"
    recs = [json.loads(x) for x in f.read_text().splitlines()]
    for r in recs:
        del r["rejected"], r["verdicts"], r["rejected_at_end"]
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    p3, _ = load_inputs(_cfg([f], tmp_path / "p.html"))[0]
    assert p3["chunks"][0]["rejected"] == [] and p3["chunks"][0]["note"] == "2 resets"


def test_page_summary_and_cap(inputs, tmp_path):
    out = tmp_path / "page.html"
    s = run_view(_cfg(inputs.values(), out, max_solutions=4, title="T"))
    assert s["solutions"] == 8 and s["shown"] == 4 and s["chunks"] == 20 and s["page"] == str(out)
    assert s["inputs"] == {"annotate": 3, "eval": 2, "labels": 1, "search": 2}
    page = out.read_text()
    assert page.count('<section class="solution"') == 4 and "listing the first 4 of 8" in page
    for title in ("Label balance", "Q-value distribution", "Rollouts", "Judge verdicts", "Search tokens"):
        assert title in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")   # no network at view time


class Tags(HTMLParser):
    """Every start tag with its attributes, the text, and the script bodies of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.scripts, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def test_model_text_is_escaped_everywhere(tmp_path):
    inputs = write_inputs(tmp_path / "in", payload=True)
    out = tmp_path / "page.html"
    run_view(_cfg(inputs.values(), out, title="<script>window.pwned=9</script> \"view\""))
    page = out.read_text()
    p = Tags()
    p.feed(page)
    names = [t for t, _ in p.tags]
    assert names.count("script") == 1 and names.count("style") == 1   # the page's own, nothing injected
    assert "img" not in names and "b" not in names
    assert not [(t, a) for t, a in p.tags for k in a if k.startswith("on")], "an inline event handler got in"
    assert "pwned" not in "".join(p.scripts)   # the one script is the page's constant, no data in it
    text = "".join(p.text)
    for payload in PAYLOADS[:4]:
        assert payload in text, payload   # shown as text, verbatim
    assert "<b id=\"injected\">bold?</b>" in text
    # attribute values (the search index) stay inside their quotes
    for t, a in p.tags:
        if t == "section":
            assert set(a) <= {"class", "data-err", "data-kind", "data-search"} | {
                k for k in a if k.startswith(("data-err-", "data-dis-"))}, a


def test_labels_without_their_examples_show_one_chunk_per_judgment(inputs, tmp_path):
    (inputs["labels"] / "manifest.json").unlink()
    sols, _, _ = load_inputs(_cfg([inputs["labels"]], tmp_path / "p.html"))
    assert [s["id"] for s in sols] == ["p2/0/0", "p2/0/1"] and sols[1]["disagree"] == {"label": True}
    run_view(_cfg([inputs["labels"]], tmp_path / "p.html"))
