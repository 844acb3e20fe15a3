"""The generative judge (docs/METHOD.md 2.3): prompt, verdict parsing, majority, the judging API."""
import json
import shutil

import pytest
from fakes import FakeEngine

from stepwiser.stages.annotate import AnnotateConfig, run_annotate
from stepwiser.engines import EngineError, Request
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.base import JudgeItem, Judgment, write_judge_meta
from stepwiser.judges.prompts import disc_messages, format_history, judge_messages
from stepwiser.judges.load import load_judge
from stepwiser.core.verdict import majority, parse_verdict
from stepwiser.stages.judge_data import judge_item, stepwise_examples
from stepwiser.io.records import Annotation, Problem, Sample, read_records, write_jsonl

ITEM = JudgeItem(problem="Tom has 3 apples and buys 4 more. How many apples?",
                 history=["Tom starts with 3 apples.", "He buys 4 more apples."],
                 chunk="So he has 3 + 4 = 7 apples. \\boxed{7}")


def _prompt(item=ITEM, cot=True) -> str:
    msgs = judge_messages(item, cot)
    assert [m["role"] for m in msgs] == ["user"]
    return msgs[0]["content"]


# --------------------------------------------------------------------------- the prompt

def test_prompt_has_every_required_element():
    p = _prompt()
    low = " ".join(p.lower().split())   # the wording wraps lines
    assert "validator" in low and "one new reasoning chunk" in low                      # role
    assert "first analyse the new chunk step by step, then give your judgment" in low  # analyse, then judge
    assert "does no calculation" in low and "can still be correct" in low              # no-calculation case
    assert "positive: the new chunk contains no mistake" in low                        # meaning of Positive
    assert "negative: the new chunk contains one or more mistakes" in low              # meaning of Negative
    # the analysis asked for: goal, check of logic/method/calculations, explanation of errors
    assert "goal of the new chunk" in low and "explain exactly what is wrong" in low
    assert "check its logic, method and every calculation against the problem statement and the previous" in low
    assert p.rstrip().endswith("### End of input")
    assert "\\boxed{Positive} or \\boxed{Negative}" in p                                # output format
    # problem, history and chunk are delimited, in this order, each under its own heading
    heads = ["### Problem\n", "### Previous reasoning\n", "### New chunk\n", "### End of input"]
    pos = [p.index(h) for h in heads]
    assert pos == sorted(pos) and all(p.count(h) == 1 for h in heads)
    assert p[pos[0]:pos[1]].strip() == "### Problem\n" + ITEM.problem
    assert p[pos[2]:pos[3]].strip() == "### New chunk\n" + ITEM.chunk
    # instructions come before the inputs
    assert p.index("\\boxed{Positive} or \\boxed{Negative}") < pos[0]


def test_history_is_shown_numbered():
    assert format_history(["a", " b\nc "]) == "Step 1: a\nStep 2: b\nc"
    assert format_history([]).startswith("(none")
    p = _prompt()
    assert "### Previous reasoning\nStep 1: Tom starts with 3 apples.\nStep 2: He buys 4 more apples.\n" in p
    assert "(none: the new chunk is the first step)" in _prompt(JudgeItem("P?", [], "c"))


def test_no_cot_prompt_asks_for_the_verdict_only():
    p = " ".join(_prompt(cot=False).lower().split())
    assert "first analyse" not in p and "judgment only" in p and "can still be correct" in p
    assert "\\boxed{positive} or \\boxed{negative}" in p and "### new chunk" in p


def _fake_annotations(tmp_path):
    """Real annotation records (the annotate stage with a fake policy). The reference answer 7319 never
    appears in the sampled chunks; rollouts reach it with a probability that depends on the prefix."""
    probs = [Problem(id=f"a{i}", problem=f"Start at {i} and keep adding.", answer="7319", source="t")
             for i in range(3)]
    sets = [["we set up the sum", "we add the first terms", "so \\boxed{12}"],
            ["we set up the sum", "WRONG step", "then more", "so \\boxed{13}"]]
    samples = [Sample(problem_id=p.id, sample_id=j, response="\n".join(f"<chunk>{c}</chunk>" for c in ch),
                      chunks=ch, correct=False) for p in probs for j, ch in enumerate(sets)]
    pp, sp = tmp_path / "problems.jsonl", tmp_path / "samples.jsonl"
    write_jsonl(pp, probs)
    write_jsonl(sp, samples)

    def policy(text, rng, req):
        p = 0.0 if "WRONG" in req.prefix else 0.6
        return f"<chunk>so \\boxed{{{7319 if rng.random() < p else 5}}}</chunk>"

    run_annotate(AnnotateConfig(policy="fake", samples=str(sp), problems=str(pp), out=str(tmp_path / "ann.jsonl"),
                                rollouts=8), FakeEngine(policy), progress=False)
    return read_records(tmp_path / "ann.jsonl", Annotation), {p.id: p.problem for p in probs}


def test_prompt_never_contains_answer_q_values_or_labels(tmp_path):
    anns, texts = _fake_annotations(tmp_path)
    qs = {q for a in anns for q in a.q if q not in (0.0, 1.0)}
    assert qs and all(a.labels["rel_effective"] for a in anns)
    assert {y for a in anns for y in a.labels["abs_q"]} == {0, 1}
    engine = FakeEngine(lambda text, rng, req: "\\boxed{Positive}")
    for label in ("abs_q", "rel_ratio", "rel_effective"):
        items = [judge_item(e) for e in stepwise_examples(anns, texts, label)]
        assert len(items) == sum(len(a.chunks) for a in anns)
        GenerativeJudge(engine, max_tokens=8).judge(items, k=1)
    assert len(engine.prompts) == 3 * len(items)
    for sent in engine.prompts:               # the exact texts sent to the engine
        assert "7319" not in sent
        for word in ("successes", "rollouts", "q0", "labels", "label_params", "abs_q", "rel_ratio",
                     "rel_effective", "Q_", "Q-value"):
            assert word not in sent
        for q in qs:
            assert str(q) not in sent and f"{q:.2f}" not in sent
        assert "### Problem\nStart at" in sent and "### New chunk\n" in sent    # the inputs are there
    # every chunk of every annotation was shown, with its own history
    a = next(a for a in anns if len(a.chunks) == 4)
    assert any(f"Step 1: {a.chunks[0]}\nStep 2: {a.chunks[1]}\n\n### New chunk\n{a.chunks[2]}" in s
               for s in engine.prompts)


# --------------------------------------------------------------------------- verdicts

@pytest.mark.parametrize("text, want", [
    ("analysis ... \\boxed{Positive}", 1),
    ("\\boxed{Negative}", 0),
    ("\\boxed{ positive }", 1),
    ("\\boxed{NEGATIVE}", 0),
    ("\\boxed {Positive}", 1),
    ("\\boxed{\n Negative\n}", 0),
    ("\\boxed{\\text{Positive}}", 1),
    ("\\boxed{\\text{ Negative }}", 0),
    ("\\boxed{\\textbf{Positive}}", 1),
    ("$\\boxed{Positive}$", 1),
    ("\\boxed{Positive.}", 1),
    ("\\boxed{**Negative**}", 0),
    ("\\boxed{Positive} at first, but on reflection \\boxed{Negative}", 0),   # several: the last counts
    ("\\boxed{Negative} ... \\boxed{\\text{Positive}}", 1),
    ("\\boxed{Positive} and the answer is \\boxed{7}", None),                 # trailing non-verdict box
    ("\\boxed{Positive", None),                                              # unclosed brace
    ("\\boxed{Negative} then \\boxed{Positive", None),                        # last one unclosed
    ("Positive", None),
    ("The chunk is correct.", None),
    ("", None),
    ("\\boxed{}", None),
    ("\\boxed{Positive or Negative}", None),
    ("\\boxed{Pos}", None),
    ("\\boxed{Correct}", None),
])
def test_parse_verdict(text, want):
    assert parse_verdict(text) == want


@pytest.mark.parametrize("votes, want", [
    ([1], 1), ([0], 0), ([1, 1, 0], 1), ([0, 0, 1], 0),
    ([1, 0], 0), ([1, 1, 0, 0], 0),            # ties are Negative
    ([None, 1], 1), ([None, None, 0], 0), ([1, None, 0], 0),
    ([None, None], None), ([], None),          # nothing parsed
])
def test_majority(votes, want):
    assert majority(votes) == want


def test_judgment_properties():
    j = Judgment(verdicts=[1, None, 0, 1])
    assert j.verdict == 1 and j.score == pytest.approx(2 / 3) and j.unparsed == 1
    assert Judgment(verdicts=[None, None]).score is None and Judgment(verdicts=[None]).verdict is None
    assert Judgment(verdicts=[1, 0], scores=[0.9, 0.3]).score == pytest.approx(0.6)


# --------------------------------------------------------------------------- the judging API

class RecordingEngine(FakeEngine):
    def __init__(self, fn):
        super().__init__(fn)
        self.params = []

    def generate(self, requests, params):
        self.params.append(params)
        return super().generate(requests, params)


def _fake_judge(text, rng, req):
    chunk = text.split("### New chunk\n")[1]
    if "good" in chunk:
        return "The goal is fine. \\boxed{Positive}"
    if "bad" in chunk:
        return "Wrong sum. \\boxed{Negative}"
    return rng.choice(["ok \\boxed{Positive}", "no \\boxed{Negative}", "hmm, unsure", "\\boxed{Positive"])


ITEMS = [JudgeItem("P1", [], "a good chunk"), JudgeItem("P1", ["a good chunk"], "a bad chunk"),
         JudgeItem("P2", ["x"], "a mixed chunk"), JudgeItem("P3", ["x", "y"], "another mixed chunk")]


def test_k1_is_greedy_and_batched():
    engine = RecordingEngine(_fake_judge)
    out = GenerativeJudge(engine, max_tokens=50).judge(ITEMS, k=1)
    assert engine.calls == [4] and engine.params[0].n == 1 and engine.params[0].temperature == 0.0
    assert engine.params[0].max_tokens == 50
    assert [len(j.verdicts) for j in out] == [1] * 4
    assert out[0].verdicts == [1] and out[0].score == 1.0 and out[0].verdict == 1
    assert out[1].verdicts == [0] and out[1].score == 0.0 and out[1].verdict == 0
    for j in out:
        assert j.texts and j.tokens == sum(max(1, len(t.split())) for t in j.texts) and j.prompt_tokens > 0


def test_k8_samples_at_temperature_1_and_scores_share_of_positive():
    engine = RecordingEngine(_fake_judge)
    out = GenerativeJudge(engine, seed=3).judge(ITEMS, k=8)
    assert engine.params[0].n == 8 and engine.params[0].temperature == 1.0 and engine.params[0].seed == 3
    assert out[0].verdicts == [1] * 8 and out[1].verdicts == [0] * 8
    for j in out[2:]:
        assert len(j.texts) == 8
        want = [1 if t.endswith("{Positive}") else 0 if t.endswith("{Negative}") else None for t in j.texts]
        assert j.verdicts == want
        parsed = [v for v in want if v is not None]
        assert j.unparsed == 8 - len(parsed)
        assert j.score == (sum(parsed) / len(parsed) if parsed else None)
    assert any(0 < j.score < 1 for j in out[2:])
    assert {len(set(j.texts)) for j in out[2:]} != {1}           # the 8 samples differ
    # per-item seeds: an item's judgment does not depend on the other items in the call
    alone = GenerativeJudge(FakeEngine(_fake_judge), seed=3).judge(ITEMS[3:], k=8)
    assert alone[0].texts == out[3].texts
    other_seed = GenerativeJudge(FakeEngine(_fake_judge), seed=4).judge(ITEMS, k=8)
    assert [j.texts for j in other_seed[2:]] != [j.texts for j in out[2:]]


def test_api_edges():
    engine = RecordingEngine(_fake_judge)
    judge = GenerativeJudge(engine, cot=False, temperature=0.7)
    assert judge.judge([], k=4) == [] and engine.calls == []
    judge.judge(ITEMS[:1], k=2)
    assert engine.params[-1].max_tokens == 32 and engine.params[-1].temperature == 0.7  # train-judge's length
    assert "judgment only" in engine.prompts[-1]
    for k in (0, -1):
        with pytest.raises(ValueError, match="k must be >= 1"):
            judge.judge(ITEMS, k=k)
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        GenerativeJudge(engine, max_tokens=0)


@pytest.mark.parametrize("cot", [True, False])
def test_judge_uses_its_max_tokens_with_or_without_cot(cot):
    """--max-tokens bounds every judgment, the bare-verdict judge's too (it was a fixed 16)."""
    engine = RecordingEngine(_fake_judge)
    GenerativeJudge(engine, cot=cot, max_tokens=40).judge(ITEMS[:1], k=1)
    assert engine.params[-1].max_tokens == 40
    GenerativeJudge(engine, cot=cot).judge(ITEMS[:1], k=1)
    assert engine.params[-1].max_tokens == (1024 if cot else 32)


def test_disc_messages_one_chunk_per_user_turn():
    msgs = disc_messages("What is 2+2?", ["2+2=4", "so 4"], [1, 0])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[1]["content"].startswith("Problem:\nWhat is 2+2?") and msgs[1]["content"].endswith("2+2=4")
    assert [msgs[2]["content"], msgs[4]["content"]] == ["+", "-"] and msgs[3]["content"] == "Step 2:\nso 4"
    assert [m["role"] for m in disc_messages("Q", ["a", "b"])][-1] == "user"


# --------------------------------------------------------------------------- on the tiny hf model

def test_tiny_hf_model_end_to_end(tiny_model_dir):
    from stepwiser.engines.hf import HFEngine

    engine = HFEngine(str(tiny_model_dir), device="cpu")
    judge = GenerativeJudge(engine, max_tokens=6, seed=1)
    out = judge.judge(ITEMS, k=1)
    prompt_lens = [len(ids) for ids in engine.encode([Request(messages=judge_messages(it)) for it in ITEMS])]
    assert [j.prompt_tokens for j in out] == prompt_lens
    assert all(len(j.verdicts) == len(j.texts) == 1 and 1 <= j.tokens <= 6 for j in out)
    assert sum(j.tokens for j in out) == engine.stats["generated_tokens"]   # greedy: one sequence per prompt
    before = engine.stats["generated_tokens"]
    out8 = judge.judge(ITEMS, k=3)
    assert all(len(j.verdicts) == len(j.texts) == 3 and 3 <= j.tokens <= 18 for j in out8)
    assert sum(j.tokens for j in out8) == engine.stats["generated_tokens"] - before
    for j in out + out8:   # a random model writes garbage: unparsed verdicts, no score
        assert all(v in (None, 0, 1) for v in j.verdicts)
        assert j.score is None or 0 <= j.score <= 1
    assert judge.judge(ITEMS, k=3)[2].texts == out8[2].texts    # seeded


def test_missing_chat_template_is_a_clear_error(tmp_path, tiny_model_dir):
    from stepwiser.engines.hf import HFEngine

    plain = tmp_path / "no-template-model"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink()
    judge = GenerativeJudge(HFEngine(str(plain), device="cpu"), max_tokens=4)
    with pytest.raises(EngineError, match="no-template-model.*has no chat template"):
        judge.judge(ITEMS[:1])


def test_load_judge_reads_the_kind_from_the_folder(tmp_path, tiny_model_dir):
    model = tmp_path / "judge-model"
    shutil.copytree(tiny_model_dir, model)
    j = load_judge(str(model), {"engine": "hf", "device": "cpu", "batch_size": 8, "dtype": None}, max_tokens=5)
    assert isinstance(j, GenerativeJudge) and j.cot and j.max_tokens == 5
    write_judge_meta(model, "generative", cot=False, method="grpo-nocot")
    assert json.loads((model / "stepwiser_judge.json").read_text())["method"] == "grpo-nocot"
    j = load_judge(str(model), {"engine": "hf", "device": "cpu", "batch_size": 8, "dtype": None})
    assert isinstance(j, GenerativeJudge) and not j.cot
    assert load_judge(str(model), {"engine": "hf", "device": "cpu", "batch_size": 8, "dtype": None}, cot=True).cot
    with pytest.raises(ValueError, match="generative or discriminative"):
        write_judge_meta(model, "prm")
    with pytest.raises(ValueError, match="auto, generative, discriminative, verdict-probability"):
        load_judge(str(model), kind="classifier")
    # a train-judge output folder stands for its final/ model
    run = tmp_path / "run"
    shutil.copytree(model, run / "final")
    assert not load_judge(str(run), {"engine": "hf", "device": "cpu", "batch_size": 8, "dtype": None}).cot
