"""The policy-written format warm-up (stepwiser.train.warmup_policy, `warmup_analysis: policy`): the chunk
policy's own step from the same history is the analysis; no oracle value, reference answer, label or
Q-value reaches any judge training text, in either mode."""
from __future__ import annotations

import dataclasses
import json
import re
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes import FakeEngine

from stepwiser.cli import main
from stepwiser.core.arith import equations
from stepwiser.core.chunks import continuation_prefix, parse_chunks, render_chunks
from stepwiser.core.verdict import parse_verdict
from stepwiser.data.prompts import policy_messages
from stepwiser.data.synth import generate_problems
from stepwiser.io.records import JudgeExample, RunManifest, write_jsonl
from stepwiser.judges.base import JudgeItem
from stepwiser.judges.prompts import judge_messages
from stepwiser.stages.annotate import SEPARATOR
from stepwiser.stages.init_model import InitModelConfig, run_init_model
from stepwiser.train.judge_config import LATER_FIELDS, MANIFEST_NAMES, JudgeTrainConfig, manifest_config
from stepwiser.train.warmup import policy_analysis, train_warmup, warmup_conversations, warmup_verdict
from stepwiser.train.warmup_policy import (
    STEPS_FILE,
    generation_settings,
    policy_step,
    policy_steps,
    step_id,
    unbox,
)

NUMBER = re.compile(r"\d+(?:\.\d+)?")
Q_VALUES = ("0.8125", "0.3571", "0.7391")   # distinctive Q values and counts no text may carry
SUCCESSES = "1337"


def micro_examples(n=12, seed=1001):
    """Judge examples of the micro domain: every chunk of `n` synthetic solutions, every other one with a
    wrong result (the judged chunk states it; the right value is computed here, never shown), labels and
    Q-values stored as an annotation would carry them."""
    problems = generate_problems(n, seed, min_steps=3, max_steps=4, max_operand=10, max_value=100)
    out = []
    for p in problems:
        chunks = parse_chunks(p.solution)
        for i, chunk in enumerate(chunks):
            wrong = (i + len(out)) % 2
            if wrong:
                stated = equations(chunk)[0].rhs_value
                chunk = chunk.replace(f"= {stated}", f"= {stated + 1}", 1)
            out.append(JudgeExample(key=f"{p.id}/0/{i}", problem_id=p.id, sample_id=0, chunk_index=i, problem=p.problem,
                                    history=chunks[:i], chunk=chunk, label=1 - wrong, label_type="rel_effective",
                                    extra={"chunk_style": "tags", "answer": p.answer, "q": list(Q_VALUES),
                                           "successes": SUCCESSES}))
    return problems, out


def fake_policy(problems):
    """A policy that continues the sampling prompt from the prefix: the reference's next chunk or a
    miscalculated one (seeded), then more text that generation must stop before."""
    by_text = {p.problem: parse_chunks(p.solution) for p in problems}

    def fn(prompt, rng, request):
        chunks = by_text[request.messages[-1]["content"]]
        j = len(parse_chunks(request.prefix))
        step = chunks[min(j, len(chunks) - 1)]
        if rng.random() < 0.5:
            value = equations(step)[0].rhs_value
            step = step.replace(f"= {value}", f"= {value + rng.randint(2, 9)}", 1)
        return f"<chunk>{step}</chunk>\n<chunk>More steps follow.</chunk>"
    return FakeEngine(fn, model="policy")


def cfg_for(tmp_path, **kw):
    base = {"model": "judge", "out": str(tmp_path / "run"), "warmup_analysis": "policy", "warmup_policy": "policy"}
    return JudgeTrainConfig(**{**base, **kw})


def numbers(text):
    return {Fraction(x) for x in NUMBER.findall(text)}


# --------------------------------------------------------------------------- the policy's steps

def test_continuation_prefix_is_the_rollout_prefix():
    chunks = ["Tom has 5 apples.", "He buys 3 more, so 5 + 3 = 8."]
    for style in ("tags", "blank"):
        assert continuation_prefix(chunks, style) == render_chunks(chunks, style) + SEPARATOR[style]
        assert continuation_prefix([], style) == ""


def test_policy_step_is_the_first_chunk_on_one_line_without_boxes():
    assert policy_step("<chunk>After the bus 56 - 5 = 51.\nThe answer is \\boxed{51}.</chunk><chunk>x") == (
        "After the bus 56 - 5 = 51. The answer is 51.")
    assert policy_step("noise <chunk> a </chunk>") == "a"
    assert policy_step("no tags here ") == "no tags here" and policy_step("<chunk> </chunk>") == ""
    assert unbox("\\boxed{\\frac{1}{2}} and \\boxed{\\text{7}}") == "\\frac{1}{2} and 7"


def test_the_policy_is_prompted_as_in_sampling_and_continued_from_the_history(tmp_path):
    problems, exs = micro_examples(3)
    items = [JudgeItem(e.problem, e.history, e.chunk) for e in exs]
    fake = fake_policy(problems)
    steps = policy_steps(cfg_for(tmp_path), items, ["tags"] * len(items), tmp_path, fake)
    assert len(fake.prompts) == len(items) and fake.calls == [len(items)]
    for it, prompt in zip(items, fake.prompts):
        assert prompt == fake.apply_chat_template(policy_messages(it.problem)) + continuation_prefix(it.history)
    assert all(1 <= len(s) <= 2 and all(s) for s in steps)   # 2 samples: the distinct ones
    assert not any("More steps" in x or "chunk>" in x for s in steps for x in s)   # stopped at </chunk>
    recs = [json.loads(x) for x in (tmp_path / STEPS_FILE).read_text().splitlines()]
    assert [r["steps"] for r in recs] == steps and all(len(r["texts"]) == 2 for r in recs)
    # seeded per example: the same steps in another order and batch, and the file is a cache
    again = policy_steps(cfg_for(tmp_path), items[::-1], ["tags"] * len(items), tmp_path / "b", fake_policy(problems))
    assert again == steps[::-1]
    cached = fake_policy(problems)
    assert policy_steps(cfg_for(tmp_path), items, ["tags"] * len(items), tmp_path, cached) == steps
    assert cached.calls == []
    other = policy_steps(cfg_for(tmp_path, seed=5), items, ["tags"] * len(items), tmp_path / "c", fake_policy(problems))
    assert other != steps


def test_policy_analysis_format():
    item = JudgeItem("Tom has 5 apples and buys 3. How many?", ["Tom has 5 apples."], "He buys 3, so 5 + 3 = 9.")
    text = policy_analysis(item, ["He buys 3 more, so 5 + 3 = 8.", "So 5 + 3 = 7."])
    assert text.splitlines() == [
        "With the same previous reasoning, my next step is: He buys 3 more, so 5 + 3 = 8.",
        "In another way, my next step is: So 5 + 3 = 7.", "The new chunk states: 9.",
        "Checking the new chunk against my next step, the problem and the previous steps, my judgment is:"]
    assert policy_analysis(item, []).startswith("With the same previous reasoning, my next step is: (none)\n")


# --------------------------------------------------------------------------- no oracle in any training text

def sources(ex, policy_texts):
    return " ".join([ex.problem, *ex.history, ex.chunk, *policy_texts])


@pytest.mark.parametrize("mode", ["policy", "template"])
def test_no_oracle_value_answer_label_or_q_in_warmup_texts(tmp_path, mode):
    problems, exs = micro_examples(40)
    steps = texts = None
    if mode == "policy":
        items = [JudgeItem(e.problem, e.history, e.chunk) for e in exs]
        steps = policy_steps(cfg_for(tmp_path), items, ["tags"] * len(items), tmp_path, fake_policy(problems))
        texts = [json.loads(x)["texts"] for x in (tmp_path / STEPS_FILE).read_text().splitlines()]
    rows = warmup_conversations(exs, True, seed=0, steps=steps)
    flipped = [dataclasses.replace(e, label=1 - e.label) for e in exs]
    assert warmup_conversations(flipped, True, seed=0, steps=steps) == rows   # labels are never read
    hidden_truth = 0
    for k, (ex, row) in enumerate(zip(exs, rows)):
        body = row["prompt"][0]["content"] + "\n" + row["completion"][0]["content"]
        analysis = row["completion"][0]["content"]
        assert parse_verdict(analysis) == warmup_verdict(JudgeItem(ex.problem, ex.history, ex.chunk), 0)
        assert analysis.count("\\boxed") == 1   # the verdict is the only box
        assert not any(q in body for q in Q_VALUES) and SUCCESSES not in body
        own = texts[k] if texts else []   # what the policy generated for this example
        src = sources(ex, own)
        allowed = numbers(src) | ({Fraction(len(ex.history))} if mode == "template" else set())
        assert numbers(analysis) <= allowed, (analysis, src)   # every number comes from the inputs/policy
        if ex.extra["answer"] not in NUMBER.findall(src):
            assert ex.extra["answer"] not in NUMBER.findall(analysis)
        eqs = {(e.lhs.replace(" ", ""), e.rhs_value) for t in [ex.problem, *ex.history, ex.chunk, *own]
               for e in equations(t) if e.lhs}
        # every equation the analysis writes is one the policy, the problem, history or chunk wrote
        assert all((e.lhs.replace(" ", ""), e.rhs_value) in eqs for e in equations(analysis) if e.lhs)
        for e in equations(ex.chunk):
            if e.ok is False:   # the Python-computed right value of a wrong chunk
                truth = e.lhs_value
                if truth not in numbers(src):
                    hidden_truth += 1
                    assert truth not in numbers(analysis)
    assert hidden_truth >= 3   # the check above had cases to bite on


# --------------------------------------------------------------------------- config and wiring

def test_policy_mode_settings_and_earlier_hashes():
    cfg = JudgeTrainConfig(model="m", out="o")
    config = manifest_config(cfg, init_model=None)
    # what runs made before these fields recorded: every other field, under its manifest name
    before = {MANIFEST_NAMES.get(k, k): v for k, v in dataclasses.asdict(cfg).items() if k not in LATER_FIELDS}
    assert RunManifest.config_hash(config) == RunManifest.config_hash({**before, "init_model": None})
    pol = manifest_config(JudgeTrainConfig(model="m", out="o", warmup_analysis="policy", warmup_policy="p"))
    assert pol["warmup_analysis"] == "policy" and pol["warmup_policy"] == "p" and "warmup_policy_samples" not in pol
    with pytest.raises(ValueError, match="needs warmup_policy"):
        JudgeTrainConfig(model="m", out="o", warmup_analysis="policy")
    with pytest.raises(ValueError, match="warmup_analysis must be one of"):
        JudgeTrainConfig(model="m", out="o", warmup_analysis="oracle")
    with pytest.raises(ValueError, match="warmup_policy_samples"):
        JudgeTrainConfig(model="m", out="o", warmup_policy_samples=0)


def test_policy_warmup_uses_a_seeded_subset_and_no_policy_without_cot(tmp_path, monkeypatch):
    from stepwiser.train import warmup

    problems, exs = micro_examples(8)
    seen = {}
    monkeypatch.setattr(warmup, "run_judge_sft", lambda scfg, *a, **kw: seen.update(data=scfg.data) or tmp_path)
    cfg = cfg_for(tmp_path, format_warmup_steps=2, global_batch=4)
    fake = fake_policy(problems)
    train_warmup(cfg, exs, tmp_path / "w", True, fake)
    rows = [json.loads(x) for x in Path(seen["data"]).read_text().splitlines()]
    assert len(rows) == 8 and fake.calls == [8]   # 2 steps x 4 sequences, drawn once each
    assert all("my next step is:" in r["completion"][0]["content"] for r in rows)
    train_warmup(cfg, exs, tmp_path / "n", False, never_used)
    assert all(json.loads(x)["completion"][0]["content"] in ("\\boxed{Positive}", "\\boxed{Negative}")
               for x in Path(seen["data"]).read_text().splitlines())


def never_used():
    raise AssertionError("a no-CoT warm-up must not load the policy")


def test_train_judge_with_a_policy_written_warmup_on_micro_models(tmp_path, capsys):
    micro = tmp_path / "micro"
    run_init_model(InitModelConfig(out=str(micro), size="micro-1m", seed=0, vocab_problems=20))
    _, exs = micro_examples(4)
    write_jsonl(tmp_path / "jd" / "train.jsonl", exs)
    write_jsonl(tmp_path / "jd" / "val.jsonl", exs[:4])
    out = tmp_path / "run"
    rc = main(["train-judge", "--data", str(tmp_path / "jd"), "--model", str(micro), "-o", str(out),
               "--format-warmup-steps", "2", "--warmup-analysis", "policy", "--warmup-policy", str(micro),
               "--warmup-policy-max-tokens", "12", "--max-steps", "1", "--global-batch", "2",
               "--per-device-batch", "2", "--num-generations", "2", "--optimizer-steps-per-generation", "1",
               "--max-completion-length", "8", "--max-length", "512", "--lr", "1e-3", "--save-steps", "100"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "final" / "config.json").exists() and (out / "warmup" / "final" / "config.json").exists()
    recs = [json.loads(x) for x in (out / "warmup" / STEPS_FILE).read_text().splitlines()]
    rows = [json.loads(x) for x in (out / "warmup" / "warmup_data.jsonl").read_text().splitlines()]
    assert len(recs) == len(rows) == 4 and all(len(r["texts"]) == 2 for r in recs)   # 2 steps x 2 sequences
    settings = generation_settings(SimpleNamespace(warmup_policy=str(micro), warmup_policy_samples=2, seed=0,
                                                   warmup_policy_temperature=1.0, warmup_policy_max_tokens=12))
    by_id = {r["id"]: r for r in recs}
    prompts = {judge_messages(JudgeItem(e.problem, e.history, e.chunk))[0]["content"]: e for e in exs}
    for row in rows:
        ex = prompts[row["prompt"][0]["content"]]
        rec = by_id[step_id(settings, JudgeItem(ex.problem, ex.history, ex.chunk), "tags")]
        analysis = row["completion"][0]["content"]
        assert all(s in analysis for s in rec["steps"]) and analysis.count("\\boxed") == 1
        assert numbers(analysis) <= numbers(sources(ex, rec["texts"]))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["warmup_analysis"] == "policy"


def test_rft_from_a_policy_written_cot_warmup_with_the_compact_prompt(tmp_path, capsys):
    """recipes/micro.yaml's RFT path on micro models: `--method warmup --cot` with policy analyses, then
    `--method rft --judge-prompt compact` from it; every kept judgment's verdict is its example's label."""
    micro = tmp_path / "micro"
    run_init_model(InitModelConfig(out=str(micro), size="micro-1m", seed=0, vocab_problems=400))
    _, exs = micro_examples(64)      # > 200 examples: one uncovered record is under the 1% a stage skips
    write_jsonl(tmp_path / "jd" / "val.jsonl", exs[:4])
    # one example with a word the micro vocabulary lacks: warm-up SFT skips it (counted), RFT leaves it unjudged
    odd = dataclasses.replace(exs[0], key="odd/0/0", chunk="zebra " + exs[0].chunk)
    write_jsonl(tmp_path / "jd" / "train.jsonl", [*exs, odd])
    common = ["--data", str(tmp_path / "jd"), "--judge-prompt", "compact", "--num-threads", "1", "--threads", "1",
              "--max-length", "512"]
    rc = main(["train-judge", "--method", "warmup", "--cot", "--model", str(micro), "-o", str(tmp_path / "w"),
               "--format-warmup-steps", "40", "--format-warmup-lr", "3e-3", "--warmup-analysis", "policy",
               "--warmup-policy", str(micro), "--warmup-policy-max-tokens", "12", "--global-batch", "4",
               "--per-device-batch", "4", *common])
    assert rc == 0, capsys.readouterr().err
    rc = main(["train-judge", "--method", "rft", "--model", str(tmp_path / "w" / "final"), "-o", str(tmp_path / "r"),
               "--rft-k", "4", "--rft-max-tokens", "96", "--lr", "1e-3", "--max-steps", "1", "--global-batch", "2",
               "--per-device-batch", "2", "--save-steps", "100", *common])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "r" / "final" / "config.json").exists()
    labels = {e.key: e.label for e in exs}
    samples = [json.loads(x) for x in (tmp_path / "r").glob("rft_samples-*.jsonl").__next__().read_text().splitlines()]
    assert len(samples) == len(exs) + 1 and all(len(s["texts"]) == 4 for s in samples if s["key"] != "odd/0/0")
    assert [s["texts"] for s in samples if s["key"] == "odd/0/0"] == [[]]
    assert json.loads((tmp_path / "r" / "stepwiser_judge.json").read_text())["rft"]["unjudged"] == 1
    kept = [json.loads(x) for x in (tmp_path / "r" / "rft_data.jsonl").read_text().splitlines()]
    assert kept
    by_prompt = {judge_messages(JudgeItem(e.problem, e.history, e.chunk), prompt="compact")[0]["content"]: e
                 for e in exs}
    for row in kept:
        ex = by_prompt[row["prompt"][0]["content"]]
        assert parse_verdict(row["completion"][0]["content"]) == labels[ex.key]


def test_the_no_result_sentence_is_in_every_micro_vocabulary(tmp_path):
    """A chunk that states no value gets NO_RESULT in its warm-up analysis; the micro corpus has no such chunk,
    so the sentence must be made of pieces the corpus has anyway (it once held ' numerical', ' result' and
    ' without', and a CoT judge of a freshly initialised micro policy refused its training data)."""
    from stepwiser.models.micro import unknown_pieces
    from stepwiser.train.warmup import NO_RESULT
    from transformers import AutoTokenizer

    run_init_model(InitModelConfig(out=str(tmp_path / "m"), size="micro-1m", seed=0, vocab_problems=20))
    bundled = Path(__file__).resolve().parents[2] / "stepwiser" / "assets" / "micro-policy"
    for path in (tmp_path / "m", bundled):
        pieces, _ = unknown_pieces(AutoTokenizer.from_pretrained(path), [NO_RESULT])
        assert not pieces, (path, pieces)
    item = JudgeItem("Tom has 3 apples.", ["<chunk>He has 3 apples.</chunk>"], "<chunk>So he keeps them.</chunk>")
    assert NO_RESULT in policy_analysis(item, ["He eats 1 apple."])
