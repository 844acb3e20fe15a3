"""The shared-prompt GRPO path equals TRL's full-sequence computation (values, gradients, generation)."""
import pytest
import torch

from stepwiser.train.grpo_shared_prompt import distinct_rows, shared_prompt_generate, shared_prompt_logps


def _model(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                      eos_token_id=3, bos_token_id=1)
    return LlamaForCausalLM(cfg).float()


def _batch():
    """3 distinct left-padded prompts x 2 completions each (right-padded), rows shuffled."""
    prompts = [[0, 0, 5, 6, 7, 8], [0, 9, 10, 11, 12, 13], [14, 15, 16, 17, 18, 19]]
    pmask = [[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1], [1] * 6]
    comps = [[20, 21, 3], [22, 3, 0], [23, 24, 3], [25, 3, 0], [26, 27, 3], [28, 29, 30]]
    cmask = [[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]]
    order = [3, 0, 5, 1, 4, 2]
    ids = torch.tensor([prompts[i // 2] + comps[i] for i in order])
    mask = torch.tensor([pmask[i // 2] + cmask[i] for i in order])
    return ids, mask


def _trl_logps(model, ids, mask, keep, temperature):
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, temperature=temperature, outputs=("log_probs", "entropy"))
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-keep] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -keep:], out.entropy[:, -keep:]


def test_distinct_rows_inverse():
    ids, mask = _batch()
    distinct, dmask, inverse = distinct_rows(ids[:, :6], mask[:, :6])
    assert distinct.shape == (3, 6)
    assert torch.equal(distinct[inverse], ids[:, :6]) and torch.equal(dmask[inverse], mask[:, :6])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logps_entropy_and_gradients_equal_trl(temperature):
    ids, mask = _batch()
    weights = torch.randn(ids.size(0), 3)
    ref_model, model = _model(), _model()
    ref_lp, ref_ent = _trl_logps(ref_model, ids, mask, 3, temperature)
    lp, ent = shared_prompt_logps(model, ids, mask, 3, temperature, compute_entropy=True)
    assert torch.allclose(lp, ref_lp, atol=1e-5) and torch.allclose(ent, ref_ent, atol=1e-5)
    ((ref_lp * weights * mask[:, 6:]).sum() + ref_ent.sum()).backward()
    ((lp * weights * mask[:, 6:]).sum() + ent.sum()).backward()
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_logps_break_when_prompt_rows_are_mixed_up():
    """The check above can fail: completions scored under another row's prompt differ."""
    ids, mask = _batch()
    model = _model()
    ref_lp, _ = _trl_logps(_model(), ids, mask, 3, 1.0)
    swapped = ids.clone()
    swapped[:, :6] = ids[[1, 0, 3, 2, 5, 4], :6]
    lp, _ = shared_prompt_logps(model, swapped, mask, 3)
    assert not torch.allclose(lp, ref_lp, atol=1e-3)


def test_generate_equals_plain_generate():
    """Same tokens and the same next-token logits at every step, on left-padded prompts (where generate's
    positions start at the first real token: a prefill numbered from column 0 fails this)."""
    model = _model()
    ids, mask = _batch()
    prompt, pmask = ids[:, :6], mask[:, :6]
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=-1, output_logits=True,
              return_dict_in_generate=True)
    plain = model.generate(input_ids=prompt, attention_mask=pmask, **kw)
    shared = shared_prompt_generate(model, model.generate, input_ids=prompt, attention_mask=pmask, **kw)
    assert torch.equal(plain.sequences, shared.sequences)
    for a, b in zip(plain.logits, shared.logits, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
