"""The transformers engine on a tiny random model: equivalence with HF generate, shared prefill,
stops, lengths, seeds."""
from __future__ import annotations

import pytest
import torch

from stepwiser.engines import EngineError, Request, SamplingParams, make_engine
from stepwiser.engines.hf import HFEngine, derive_seed, inverse_cdf, plan_batches, sample_tokens

QUESTIONS = ["2+2?", "What is the sum of the first ten positive integers? Show your work.",
             "Compute 7 * 8.", ("A train leaves at noon at 60 km/h; another at 1 pm at 80 km/h. When does the "
             "second catch up with the first one, and how far from the station are they then?")]


def chat(q: str) -> Request:
    return Request(messages=[{"role": "user", "content": q}])


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, smollm2_tokenizer_dir):
    """A tiny random Llama with larger weights (initializer_range 0.2): unlike the default fixture,
    whose greedy output is dominated by the last token's embedding, its output depends on attention
    and positions, so padding or position mistakes change the generated tokens."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True, initializer_range=0.2)
    out = tmp_path_factory.mktemp("sharp-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(sharp_model_dir) -> HFEngine:
    return make_engine("hf", str(sharp_model_dir), device="cpu", batch_size=5)


def hf_greedy(engine: HFEngine, request: Request, max_new_tokens: int) -> list[int]:
    """Reference: transformers' own greedy generate on the prompt alone (no padding)."""
    ids = torch.tensor([engine.encode([request])[0]])
    out = engine.hf_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=max_new_tokens, pad_token_id=engine.tokenizer.pad_token_id)
    tokens = out[0, ids.shape[1]:].tolist()
    ends = [i for i, t in enumerate(tokens) if t in engine.eos_ids]
    return tokens[:ends[0] + 1] if ends else tokens


def test_greedy_equals_hf_generate_with_padding_and_n(engine):
    check_greedy_equivalence(engine)


def test_greedy_equals_hf_generate_default_tiny_llama(tiny_model_dir):
    check_greedy_equivalence(HFEngine(str(tiny_model_dir), device="cpu", batch_size=3))


def test_greedy_equals_hf_generate_qwen2(tiny_qwen2_dir):
    check_greedy_equivalence(HFEngine(str(tiny_qwen2_dir), device="cpu", batch_size=3))


def check_greedy_equivalence(engine: HFEngine) -> None:
    requests = [chat(q) for q in QUESTIONS]
    lengths = [len(ids) for ids in engine.encode(requests)]
    assert len(set(lengths)) == len(lengths)  # mixed lengths: the batch is left-padded
    got = engine.generate_tokens(requests, SamplingParams(n=3, temperature=0, max_tokens=12))
    for request, generations in zip(requests, got):
        expected = hf_greedy(engine, request, 12)
        assert [g.token_ids for g in generations] == [expected] * 3


def test_completion_fields(engine):
    [[c]] = engine.generate([chat("Hi")], SamplingParams(temperature=0, max_tokens=7))
    assert c.prompt_tokens == len(engine.encode([chat("Hi")])[0])
    assert c.completion_tokens == 7 and c.finish_reason == "length"
    assert c.text == engine.tokenizer.decode(hf_greedy(engine, chat("Hi"), 7), skip_special_tokens=True)


def test_prefill_is_shared_between_samples(engine):
    requests = [chat(QUESTIONS[0]), chat(QUESTIONS[1]), chat(QUESTIONS[0])]  # one prompt twice
    unique = sum(len(ids) for ids in engine.encode(requests[:2]))
    before = dict(engine.stats)
    out = engine.generate(requests, SamplingParams(n=2, temperature=1.0, max_tokens=4, seed=3))
    assert engine.stats["prefill_tokens"] - before["prefill_tokens"] == unique  # not 6 prompts' worth
    assert engine.stats["generated_tokens"] - before["generated_tokens"] == 6 * 4
    assert [len(c) for c in out] == [2, 2, 2]
    assert engine.generate([], SamplingParams(n=2)) == []


def test_greedy_n_samples_are_identical_and_computed_once(engine):
    before = engine.stats["generated_tokens"]
    [out] = engine.generate([chat("Count to five.")], SamplingParams(n=4, temperature=0, max_tokens=6))
    assert len({(c.text, c.completion_tokens) for c in out}) == 1
    assert engine.stats["generated_tokens"] - before == 6


def test_stop_string_cuts_text_and_counts_tokens(engine):
    request = chat(QUESTIONS[2])
    tokens = hf_greedy(engine, request, 20)
    full = engine.tokenizer.decode(tokens, skip_special_tokens=True)
    stop = full[len(full) // 2: len(full) // 2 + 3]
    first = full.find(stop)
    needed = next(m for m in range(1, len(tokens) + 1)
                  if stop in engine.tokenizer.decode(tokens[:m], skip_special_tokens=True))
    [[c]] = engine.generate([request], SamplingParams(temperature=0, max_tokens=20, stop=["zzzz-never", stop]))
    assert c.text == full[:first] and stop not in c.text
    assert c.finish_reason == "stop" and c.completion_tokens == needed


def test_eos_finishes_with_stop_and_is_not_in_text(sharp_model_dir):
    engine = HFEngine(str(sharp_model_dir), device="cpu")
    request = chat(QUESTIONS[3])
    tokens = hf_greedy(engine, request, 12)
    k = next(k for k in range(len(tokens) - 1, -1, -1) if tokens[k] not in tokens[:k])
    engine.eos_ids = {tokens[k]}  # pretend that this token, first generated at step k + 1, is EOS
    [[c]] = engine.generate([request], SamplingParams(temperature=0, max_tokens=12))
    assert c.finish_reason == "stop" and c.completion_tokens == k + 1
    assert c.text == engine.tokenizer.decode(tokens[:k], skip_special_tokens=True)


def test_seeded_sampling_is_reproducible_across_batch_composition(sharp_model_dir, engine):
    params = SamplingParams(n=3, temperature=1.0, top_p=0.9, max_tokens=5, seed=11)
    alone = engine.generate([chat(QUESTIONS[1])], params)[0]
    other = HFEngine(str(sharp_model_dir), device="cpu", batch_size=2)
    mixed = other.generate([chat(QUESTIONS[3]), chat(QUESTIONS[1]), chat("x")], params)[1]
    assert [c.text for c in alone] == [c.text for c in mixed]
    assert len({c.text for c in alone}) == 3  # the n samples differ from each other
    reseeded = engine.generate([Request(messages=chat(QUESTIONS[1]).messages, seed=12)], params)[0]
    assert [c.text for c in reseeded] != [c.text for c in alone]  # the request's seed wins


def test_unseeded_sampling_follows_torch_seed(engine):
    params = SamplingParams(n=2, temperature=1.0, max_tokens=6)
    torch.manual_seed(0)
    a = engine.generate([chat("Hi")], params)
    torch.manual_seed(0)
    b = engine.generate([chat("Hi")], params)
    assert [c.text for c in a[0]] == [c.text for c in b[0]]


def test_messages_with_prefix_equal_text_prompt(engine):
    messages = [{"role": "user", "content": "Solve 3x = 12."}]
    prefix = "<chunk>We divide"
    text = engine.apply_chat_template(messages) + prefix
    params = SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=5)
    a = engine.generate([Request(messages=messages, prefix=prefix)], params)
    b = engine.generate([Request(text=text)], params)
    assert a == b


def test_too_long_prompt_names_the_request(sharp_model_dir):
    engine = HFEngine(str(sharp_model_dir), device="cpu", max_model_len=40)
    with pytest.raises(EngineError, match=r"request 1: the prompt is \d+ tokens.*context of 40"):
        engine.generate([chat("Hi"), chat(QUESTIONS[3])], SamplingParams(max_tokens=4))
    [[c]] = engine.generate([chat("Hi")], SamplingParams(temperature=0, max_tokens=100))
    assert c.finish_reason == "length" and c.prompt_tokens + c.completion_tokens == 40


def test_missing_chat_template_is_an_engine_error(sharp_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sharp_model_dir)
    tok.chat_template = None
    engine = HFEngine("tiny", hf_model=HFEngine(str(sharp_model_dir), device="cpu").hf_model, tokenizer=tok)
    with pytest.raises(EngineError, match="no chat template"):
        engine.generate([chat("Hi")], SamplingParams(max_tokens=2))
    [[c]] = engine.generate([Request(text="Hi")], SamplingParams(max_tokens=2))  # raw text still works
    assert c.completion_tokens == 2


def test_inverse_cdf_exact():
    w = torch.tensor([[0.5, 0.0, 0.5]] * 4)
    u = torch.tensor([0.0, 0.25, 0.5, 0.999999])
    assert inverse_cdf(w, u).tolist() == [0, 0, 2, 2]
    assert inverse_cdf(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0.0])).tolist() == [1]
    assert inverse_cdf(torch.tensor([[1.0, 0.0]]), torch.tensor([1 - 1e-12])).tolist() == [0]


def test_sample_tokens_top_p_and_greedy():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    assert sample_tokens(logits, 0, 1.0, torch.tensor([0.9])).tolist() == [1]
    # top_p 0.7 keeps {0.6, 0.3} (0.6 alone does not reach 0.7): renormalised to 2/3, 1/3
    assert sample_tokens(logits, 1.0, 0.7, torch.tensor([0.6])).tolist() == [1]
    assert sample_tokens(logits, 1.0, 0.7, torch.tensor([0.7])).tolist() == [2]
    assert sample_tokens(logits, 1.0, 0.5, torch.tensor([0.99])).tolist() == [1]  # nucleus = {0.6}
    assert sample_tokens(logits, 1.0, 1.0, torch.tensor([0.05])).tolist() == [0]


def test_plan_batches():
    groups = [[0, 1, 2], [3], [4, 5, 6, 7, 8]]
    assert plan_batches([5, 9, 7], groups, 4) == [[(1, [3])], [(2, [4, 5, 6, 7])], [(2, [8]), (0, [0, 1, 2])]]
    with pytest.raises(ValueError):
        plan_batches([1], [[0]], 0)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(1, 0) == derive_seed(1, 0)
    assert len({derive_seed(s, j) for s in range(5) for j in range(5)}) == 25


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_qwen2_dir"])
def test_generating_emits_no_deprecation_warning(fixture, request):
    """Every generating command printed transformers' `past_key_values` deprecation warning."""
    import warnings

    eng = make_engine("hf", str(request.getfixturevalue(fixture)), device="cpu", batch_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eng.generate([chat(q) for q in QUESTIONS[:2]], SamplingParams(n=2, temperature=1.0, max_tokens=4, seed=0))
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "past_key_values" in m or "deprecated" in m.lower()], messages


def test_cache_argument_follows_the_forward_signature():
    from stepwiser.engines.hf import cache_argument

    class New(torch.nn.Module):
        def forward(self, input_ids=None, cache=None):
            return input_ids

    class Old(torch.nn.Module):
        def forward(self, input_ids=None, past_key_values=None):
            return input_ids

    assert cache_argument(New()) == "cache" and cache_argument(Old()) == "past_key_values"


def test_num_threads_engine_option_sets_torch_threads(tiny_model_dir):
    import torch

    from stepwiser.engines import EngineOptions, build_engine

    assert EngineOptions(threads=1).kwargs() == {"batch_size": 64, "num_threads": 1}
    assert "num_threads" not in EngineOptions(engine="vllm", threads=1).kwargs()
    before = torch.get_num_threads()
    try:
        build_engine(str(tiny_model_dir), EngineOptions(threads=1, device="cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="num_threads"):
        HFEngine(str(tiny_model_dir), device="cpu", num_threads=0)
