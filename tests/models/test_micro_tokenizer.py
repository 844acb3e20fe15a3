"""The micro tokenizer (stepwiser.models.micro): pieces, vocabulary, lossless round trips on every text
the pipeline writes for the micro domain (from seeds and difficulties the vocabulary never saw), the
chat template, and the coverage check that refuses out-of-domain text (also through the hf engine)."""
from __future__ import annotations

import re

import pytest

from stepwiser.data.prompts import policy_messages
from stepwiser.judges.base import JudgeItem
from stepwiser.judges.prompts import judge_messages
from stepwiser.models.micro import (
    MARKERS,
    MICRO_KEY,
    PIECES,
    SPECIALS,
    CoverageError,
    build_tokenizer,
    build_vocab,
    check_coverage,
    init_model,
    is_micro,
    pieces,
    unknown_pieces,
)
from stepwiser.stages.init_model import CORPUS_SETTINGS, domain_texts, micro_corpus

# seeds and difficulty settings that the vocabulary corpus never uses
UNSEEN = ((7, 3, 4, 10, 100), (8, 2, 7, 25, None), (9, 1, 8, 12, 144), (10, 3, 6, 15, None))
GSM8K = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
         "How many clips did Natalia sell altogether in April and May?")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(domain_texts(*micro_corpus(100)))


@pytest.fixture(scope="module")
def unseen():
    return micro_corpus(200, UNSEEN)


def test_pieces():
    text = "<chunk>He buys 3 * 14 = 42 pencils.</chunk>\n<chunk>The answer is \\boxed{42}.</chunk>\n\\boxed{Positive}  ok"
    assert pieces(text) == [
        "<chunk>", "He", " buys", " 3", " *", " 1", "4", " =", " 4", "2", " pencils", ".", "</chunk>", "\n",
        "<chunk>", "The", " answer", " is", " \\boxed{", "4", "2", "}", ".", "</chunk>", "\n",
        "\\boxed{", "Positive", "}", " ", " ok"]
    assert "".join(pieces(text)) == text
    # a word ends before a capital: words a model fuses stay known pieces
    assert pieces(" moreThen ONE") == [" more", "Then", " O", "N", "E"]


def test_python_re_cuts_like_the_pre_tokenizer(unseen):
    texts = domain_texts(unseen[0][:50], unseen[1][:20])
    assert all(re.findall(PIECES, t) == pieces(t) for t in texts)


def test_vocabulary_is_deterministic_and_starts_with_specials(tok):
    texts = domain_texts(*micro_corpus(20))
    assert build_vocab(texts) == build_vocab(list(texts))
    vocab = tok.get_vocab()
    assert [vocab[s] for s in SPECIALS + MARKERS] == list(range(8))
    assert (tok.pad_token_id, tok.bos_token_id, tok.unk_token_id, tok.eos_token) == (0, 1, 3, "<|end|>")
    assert all(d in vocab and f" {d}" in vocab for d in "0123456789")
    assert 550 < len(tok) < 700
    assert len(CORPUS_SETTINGS) == 4


def test_round_trip_on_unseen_domain_texts(tok, unseen):
    problems, bench = unseen
    texts = domain_texts(problems, bench)
    assert len(problems) == 800 and len(texts) > 11000
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    assert sum(tok.unk_token_id in x for x in ids) == 0
    decoded = tok.batch_decode(ids, clean_up_tokenization_spaces=False)
    assert sum(d != t for d, t in zip(decoded, texts)) == 0
    assert unknown_pieces(tok, texts) == ({}, [])
    check_coverage(tok, texts)  # no error


def test_round_trip_of_chats(tok, unseen):
    problems = unseen[0][:200]
    chats = []
    for p in problems:
        chats.append(policy_messages(p.problem) + [{"role": "assistant", "content": p.solution}])
        chats.append(judge_messages(JudgeItem(p.problem, [], p.solution.split("\n")[0][7:-8]), cot=False))
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=c[-1]["role"] == "user") for c in chats]
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    assert sum(tok.unk_token_id in x for x in ids) == 0
    assert tok.batch_decode(ids, clean_up_tokenization_spaces=False) == texts


def test_chat_template_renders_and_reloads(tok, tmp_path):
    from transformers import AutoTokenizer

    msgs = [{"role": "system", "content": "You are a careful math solver."},
            {"role": "user", "content": "Tom has 3 pencils."}, {"role": "assistant", "content": "<chunk>3 + 4 = 7.</chunk>"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == ("<|system|>\nYou are a careful math solver.<|end|>\n<|user|>\nTom has 3 pencils.<|end|>\n"
                    "<|assistant|>\n<chunk>3 + 4 = 7.</chunk><|end|>\n")
    assert tok.apply_chat_template(msgs[1:2], tokenize=False, add_generation_prompt=True) == \
        "<|user|>\nTom has 3 pencils.<|end|>\n<|assistant|>\n"
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert is_micro(again) and again.init_kwargs[MICRO_KEY] is True
    assert again.apply_chat_template(msgs, tokenize=False) == text
    ids = again(text, add_special_tokens=False)["input_ids"]
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == again.convert_tokens_to_ids("<|system|>") and ids[-2] == again.eos_token_id
    assert again.decode(ids) == text
    assert again.decode(ids, skip_special_tokens=True) == ("\nYou are a careful math solver.\n\nTom has 3 pencils.\n"
                                                           "\n<chunk>3 + 4 = 7.</chunk>\n")
    with pytest.raises(Exception, match="roles system, user and assistant only"):
        again.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_out_of_domain_text_is_refused_naming_the_pieces(tok):
    found, where = unknown_pieces(tok, ["Tom has 3 pencils.", GSM8K])
    assert where == [1]
    assert found == {"Natalia": 1, " Natalia": 1, " clips": 3, " sold": 2, " April": 2, " May": 2, " half": 1,
                     " did": 1}
    with pytest.raises(CoverageError) as e:
        check_coverage(tok, ["Tom has 3 pencils.", GSM8K], what="the test problems")
    msg = str(e.value)
    assert msg.startswith("the test problems outside the micro tokenizer's vocabulary: 8 unknown piece(s) "
                          "in 1 of 2 text(s) (first: #1): ' clips' (x3), ")
    assert "'Natalia'" in msg and "' did'" in msg and "use a general model" in msg
    with pytest.raises(CoverageError, match="unknown piece"):
        check_coverage(tok, ["caf\u00e9 3 + 4"])


def test_non_micro_tokenizers_are_not_checked(tok):
    from transformers import PreTrainedTokenizerFast

    other = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, unk_token="<unk>")
    assert not is_micro(other) and other.unk_token_id in other(GSM8K)["input_ids"]
    check_coverage(other, [GSM8K])  # no error: only micro tokenizers are checked


def test_hf_engine_refuses_out_of_domain_prompts(tok, tmp_path):
    from stepwiser.engines import EngineError, Request, SamplingParams, make_engine

    model = init_model("micro-1m", tok, seed=0, max_positions=256)
    model.save_pretrained(str(tmp_path))
    tok.save_pretrained(str(tmp_path))
    engine = make_engine("hf", str(tmp_path), device="cpu")
    params = SamplingParams(n=1, temperature=0, max_tokens=3)
    out = engine.generate([Request(messages=policy_messages("Tom has 3 pencils. How many pencils does Tom have?"))], params)
    assert out[0][0].completion_tokens >= 1
    with pytest.raises(EngineError, match=r"^prompts for the micro model .* 8 unknown piece\(s\) in 1 of 2 text\(s\) \(first: request 1\): ' clips' \(x3\)"):
        engine.generate([Request(messages=policy_messages("Tom has 3 pencils.")),
                         Request(messages=policy_messages(GSM8K))], params)
    with pytest.raises(EngineError, match="'caf'"):
        engine.generate([Request(text="caf\u00e9")], params)


def test_training_data_is_checked(tok):
    from stepwiser.train.sft import check_micro_coverage

    good = {"prompt": policy_messages("Tom has 3 pencils."), "completion": [{"role": "assistant", "content": "<chunk>3 + 4 = 7.</chunk>"}]}
    check_micro_coverage(tok, [good, {"messages": good["prompt"]}], "m")
    bad = {"messages": [{"role": "user", "content": GSM8K}, {"role": "assistant", "content": "72"}]}
    with pytest.raises(CoverageError, match=r"^the training data of the micro model 'm' outside .* 8 unknown piece\(s\) "
                                            r"in 1 of 5 text\(s\) \(first: record 1\)"):
        check_micro_coverage(tok, [good, bad], "m")


def test_multiturn_masking_works_with_the_template(tok):
    from stepwiser.judges.prompts import disc_messages
    from stepwiser.train.sft import tokenize_multiturn

    row = tokenize_multiturn(tok, disc_messages("Tom has 3 pencils.", ["3 + 4 = 7.", "7 * 2 = 14."], [1, 0]))
    trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tok.decode(trained) == "+<|end|>\n-<|end|>\n"


def test_pieces_a_model_writes_back_to_back_re_encode_without_unk():
    """A model can emit " is" then "check"; decoded, that is " ischeck", one word to the pre-tokenizer: it must
    come back as known pieces (the text the model wrote), never <unk>."""
    from stepwiser.models.micro import build_tokenizer, unknown_pieces

    tok = build_tokenizer(["The answer is 7.", "check: 3 + 4 = 7", "apple"])
    for text in (" ischeck", "The answer ischeck: 3 + 4 = 7", " answercheckapple"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and tok.decode(ids) == text
    assert unknown_pieces(tok, [" ischeck"])[0] == {}
    assert unknown_pieces(tok, [" ahoy"])[0] == {" ahoy": 1}


def test_a_few_uncovered_training_records_are_skipped_and_counted(tok, capsys):
    from stepwiser.train.sft import check_micro_coverage

    good = {"prompt": policy_messages("Tom has 3 pencils."), "completion": [{"role": "assistant", "content": "<chunk>3 + 4 = 7.</chunk>"}]}
    bad = {"messages": [{"role": "user", "content": GSM8K}, {"role": "assistant", "content": "72"}]}
    kept = check_micro_coverage(tok, [good] * 199 + [bad], "m", max_share=0.01)
    assert kept == [good] * 199
    assert "skipped 1 of 200 training records" in capsys.readouterr().err
    with pytest.raises(CoverageError):
        check_micro_coverage(tok, [good] * 98 + [bad] * 2, "m", max_share=0.01)
