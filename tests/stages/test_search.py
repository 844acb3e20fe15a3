"""Chunk-reset search (stepwiser.stages.search, contract C8) with fake engines and judges."""
import json

import pytest
from fakes import FakeEngine

from stepwiser.engines import EngineError
from stepwiser.errors import ConfigMismatchError, EmptyResultError
from stepwiser.io.records import Problem, write_jsonl
from stepwiser.judges.base import Judgment
from stepwiser.stages.search import SearchConfig, parse_attempt, run_search


def _problems(tmp_path, k=6, extra=()):
    p = tmp_path / "problems.jsonl"
    write_jsonl(p, [Problem(id=f"p{i}", problem=f"What is {i} + {i}?", answer=str(2 * i), source="t")
                    for i in range(k)] + list(extra))
    return p


def policy(bad_p=0.5, steps=2):
    """A chunk policy: `steps` chunks, the first "bad step" with probability bad_p (then the answer is
    wrong); it continues from the accepted prefix and writes the rest of its solution."""
    def fn(text, rng, req):
        i = int(text.split("What is ")[1].split(" ")[0])
        done = req.prefix.count("</chunk>")
        bad = "bad" in req.prefix
        chunks = []
        for j in range(done, steps):
            if j == steps - 1:
                chunks.append(f"So \\boxed{{{2 * i + int(bad)}}}")
            elif rng.random() < bad_p:
                bad = True
                chunks.append(f"bad step {j}")
            else:
                chunks.append(f"{i} + {i} = {2 * i} (step {j})")
        return "\n".join(f"<chunk>{c}</chunk>" for c in chunks)
    return fn


class WordJudge:
    """Negative for chunks containing `word`; `verdict=None` makes every verdict unparsed."""

    def __init__(self, word="bad", unparsed=False, fail_after=None):
        self.word, self.unparsed, self.fail_after = word, unparsed, fail_after
        self.calls, self.items = [], []

    def judge(self, items, k=1):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append(len(items))
        self.items += items
        if self.unparsed:
            return [Judgment(verdicts=[None] * k) for _ in items]
        return [Judgment(verdicts=[0 if self.word in it.chunk else 1] * k, tokens=3) for it in items]


def _cfg(tmp_path, probs, **kw):
    kw.setdefault("out", str(tmp_path / "out"))
    return SearchConfig(policy="fake", judge="fake", problems=str(probs), **kw)


def _records(out):
    return [json.loads(x) for x in (out / "search.jsonl").read_text().splitlines()]


def test_parse_attempt():
    assert parse_attempt("<chunk>a + b") == "a + b"
    assert parse_attempt("\n<chunk> x <chunk>y") == " x y"
    assert parse_attempt("plain text") == "plain text"
    assert parse_attempt("") is None and parse_attempt("  \n") is None and parse_attempt("<chunk> ") is None


def test_negative_chunks_are_regenerated(tmp_path):
    probs = _problems(tmp_path, 8)
    judge, eng = WordJudge(), FakeEngine(policy(0.5))
    s = run_search(_cfg(tmp_path, probs, max_resets=5), eng, judge, progress=False)
    recs = _records(tmp_path / "out")
    assert len(recs) == 8 and s["n"] == 8
    for r in recs:
        assert len(r["resets"]) == len(r["chunks"]) == 2
        assert r["response"] == "\n".join(f"<chunk>{c}</chunk>" for c in r["chunks"])
        for c, n, rej in zip(r["chunks"], r["resets"], r["rejected"]):
            assert ("bad" not in c) or n == 5        # only a forced accept keeps a bad chunk
            assert len(rej) == n and all("bad" in t for t in rej)
        assert r["rejected_tokens"] == sum(len(t.split()) for rej in r["rejected"] for t in rej)
        assert r["accepted_tokens"] == sum(len(f"<chunk>{c}".split()) for c in r["chunks"])
        forced = sum(n == 5 for n in r["resets"])
        assert r["judge_calls"] == sum(r["resets"]) + len(r["chunks"]) - forced
        assert r["correct"] == ("bad" not in r["response"]) and r["stop_reason"] == "answer"
    assert any(sum(r["resets"]) for r in recs)
    assert s["mean_rejected_tokens"] > 0 and s["accuracy"] == 100.0
    assert s["mean_resets_per_chunk"] == pytest.approx(sum(sum(r["resets"]) for r in recs) / 16, abs=1e-3)
    assert eng.calls[0] == 8 and judge.calls[0] == 8    # the whole active set in one call each
    assert s["baseline_accuracy"] is not None and s["baseline_accuracy"] < 100
    assert 0 <= s["judge_seconds_share"] <= 1
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n"] == 8


def test_max_resets_then_last_attempt_accepted(tmp_path):
    probs = _problems(tmp_path, 3)
    judge = WordJudge()
    run_search(_cfg(tmp_path, probs, max_resets=2, baseline=False), FakeEngine(policy(1.0)), judge,
               progress=False)
    for r in _records(tmp_path / "out"):
        assert r["resets"] == [2, 0] and "bad" in r["chunks"][0]
        assert r["judge_calls"] == 3 and not r["correct"]  # 2 judged bad attempts + the answer chunk
        assert r["verdicts"] == [[0, 0], [1]]


def test_unparsed_rule(tmp_path):
    probs = _problems(tmp_path, 2)
    acc = run_search(_cfg(tmp_path, probs, out=str(tmp_path / "a"), baseline=False), FakeEngine(policy(0.0)),
                     WordJudge(unparsed=True), progress=False)
    assert acc["unparsed_verdicts"] == 4 and acc["mean_resets_per_chunk"] == 0
    rej = run_search(_cfg(tmp_path, probs, out=str(tmp_path / "r"), unparsed="reject", max_resets=3,
                          baseline=False), FakeEngine(policy(0.0)), WordJudge(unparsed=True), progress=False)
    assert all(r["resets"] == [3, 3] for r in _records(tmp_path / "r"))
    assert rej["unparsed_verdicts"] == 2 * 2 * 3
    with pytest.raises(ValueError, match="unparsed must be one of accept, reject"):
        _cfg(tmp_path, probs, unparsed="maybe")


def test_never_closing_policy_is_cut_and_judged(tmp_path):
    probs = _problems(tmp_path, 2)
    judge = WordJudge()
    eng = FakeEngine(lambda text, rng, req: "<chunk>" + "word " * 500)
    s = run_search(_cfg(tmp_path, probs, max_chunk_tokens=20, max_chunks=3, baseline=False), eng, judge,
                   progress=False)
    recs = _records(tmp_path / "out")
    assert all(r["stop_reason"] == "max_chunks" and r["unclosed_chunks"] == 3 for r in recs)
    assert all(len(c.split()) <= 20 for r in recs for c in r["chunks"])
    assert len(judge.items) == 6 and s["unclosed_chunks"] == 6 and s["accuracy"] == 0


def test_policy_eos_and_token_budget_end_a_solution(tmp_path):
    probs = _problems(tmp_path, 2)
    eos = FakeEngine(lambda text, rng, req: "" if req.prefix else "<chunk>one step</chunk>")
    run_search(_cfg(tmp_path, probs, out=str(tmp_path / "e"), baseline=False), eos, WordJudge(), progress=False)
    assert all(r["stop_reason"] == "eos" and r["chunks"] == ["one step"] for r in _records(tmp_path / "e"))
    endless = FakeEngine(lambda text, rng, req: "<chunk>a b c d e</chunk>")
    run_search(_cfg(tmp_path, probs, out=str(tmp_path / "t"), max_tokens=12, baseline=False), endless,
               WordJudge(), progress=False)
    for r in _records(tmp_path / "t"):
        assert r["stop_reason"] == "max_tokens" and r["accepted_tokens"] <= 12 + 6


class ContextEngine(FakeEngine):
    """Refuses any batch holding a prompt with LONG in it, as an engine refuses a prompt over its context."""

    def generate(self, requests, params):
        if any("LONG" in r.messages[-1]["content"] for r in requests):
            raise EngineError("the prompt is longer than the model's context")
        return super().generate(requests, params)


def test_problem_over_the_context_is_counted_not_fatal(tmp_path):
    long = Problem(id="long", problem="What is 9 + 9? LONG " * 5, answer="18", source="t")
    probs = _problems(tmp_path, 3, extra=[long])
    s = run_search(_cfg(tmp_path, probs, baseline=False), ContextEngine(policy(0.0)), WordJudge(),
                   progress=False)
    recs = {r["problem_id"]: r for r in _records(tmp_path / "out")}
    assert recs["long"]["stop_reason"] == "error" and "context" in recs["long"]["error"]
    assert all(recs[f"p{i}"]["correct"] for i in range(3))
    assert s["failed"] == 1 and s["accuracy"] == 75.0


def test_resume_after_a_kill_writes_no_duplicates(tmp_path):
    probs = _problems(tmp_path, 6)
    full = tmp_path / "full"
    run_search(_cfg(tmp_path, probs, out=str(full), active=2, baseline=False), FakeEngine(policy(0.5)),
               WordJudge(), progress=False)
    cfg = _cfg(tmp_path, probs, active=2, baseline=False)
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, FakeEngine(policy(0.5)), WordJudge(fail_after=3), progress=False)
    first = _records(tmp_path / "out")
    assert 0 < len(first) < 6
    eng = FakeEngine(policy(0.5))
    run_search(cfg, eng, WordJudge(), progress=False)
    recs = _records(tmp_path / "out")
    assert sorted(r["problem_id"] for r in recs) == [f"p{i}" for i in range(6)]
    done = {r["problem_id"] for r in first}
    assert not any(f"What is {pid[1:]} +" in p for p in eng.prompts for pid in done)

    def strip(r):
        return {k: v for k, v in r.items() if not k.endswith("_seconds")}
    assert sorted(map(json.dumps, map(strip, recs))) == sorted(map(json.dumps, map(strip, _records(full))))
    run_search(cfg, FakeEngine(policy(0.5)), WordJudge(), progress=False)   # complete: nothing to redo
    assert len(_records(tmp_path / "out")) == 6


def test_changed_config_is_refused_and_empty_input_is_an_error(tmp_path):
    probs = _problems(tmp_path, 2)
    run_search(_cfg(tmp_path, probs, baseline=False), FakeEngine(policy(0.0)), WordJudge(), progress=False)
    with pytest.raises(ConfigMismatchError, match="max_resets"):
        run_search(_cfg(tmp_path, probs, max_resets=1, baseline=False), FakeEngine(policy(0.0)), WordJudge(),
                   progress=False)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(EmptyResultError, match="no problems"):
        run_search(_cfg(tmp_path, empty, out=str(tmp_path / "e")), FakeEngine(policy(0.0)), WordJudge(),
                   progress=False)


def test_search_prefix_is_the_rollout_prefix(tmp_path):
    """Every chunk request continues the policy prompt from render_chunks(accepted) + "\\n" (as annotate)."""
    probs = _problems(tmp_path, 1)
    eng = FakeEngine(policy(0.0, steps=3))
    run_search(_cfg(tmp_path, probs, baseline=False), eng, WordJudge(), progress=False)
    tails = [p.split("<|assistant|>")[1] for p in eng.prompts]
    assert tails == ["", "<chunk>0 + 0 = 0 (step 0)</chunk>\n",
                     "<chunk>0 + 0 = 0 (step 0)</chunk>\n<chunk>0 + 0 = 0 (step 1)</chunk>\n"]


def test_cli_search_help_lists_both_engines():
    from click.testing import CliRunner

    from stepwiser.cli import cli
    out = CliRunner().invoke(cli, ["search", "--help"]).output
    for opt in ("--policy-engine", "--judge-engine", "--policy-base-url", "--judge-base-url", "--max-resets",
                "--unparsed"):
        assert opt in out


def test_cli_search_on_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    """End to end: both models on the hf engine (plumbing only: a random tiny model writes no chunks)."""
    from stepwiser.cli import main

    probs = _problems(tmp_path, 2)
    out = tmp_path / "cli"
    m = str(tiny_model_dir)
    code = main(["search", "--policy", m, "--judge", m, "--problems", str(probs), "-o", str(out),
                 "--max-chunk-tokens", "4", "--max-chunks", "2", "--max-tokens", "8", "--max-resets", "1",
                 "--judge-max-tokens", "4", "--policy-device", "cpu", "--judge-device", "cpu"])
    assert code == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["n"] == 2 and s["baseline_accuracy"] is not None
    assert {r["problem_id"] for r in _records(out)} == {"p0", "p1"}
    assert "judge_seconds_share" in capsys.readouterr().out
