"""GRPO with each distinct prompt computed once per batch (exact; a speed-up, not a change of method).

GRPO samples `num_generations` completions of every prompt, and TRL's GRPOTrainer runs each of them as a
full prompt + completion sequence: for generation (the prompt's prefill) and for the loss (forward and
backward). A judge's prompt is long (the problem, the history, the chunk: 137 tokens with the compact
micro prompt) and its no-CoT completion short (the boxed verdict, about 6 tokens), so nearly all of that
work repeats the same prompt `num_generations` times. Causal attention makes the prompt's keys and values
independent of what follows, so they can be computed once per distinct prompt and shared:

- `shared_prompt_logps`: the per-token log-probabilities (and entropies) of the completions from one forward
  of the distinct prompts (their KV cache, selected per row) and one forward of the completion tokens on
  top. Gradients flow through the shared cache (index backward sums the rows' contributions), so the loss,
  its gradient and every logged metric equal the full-sequence computation up to float rounding (a test
  pins this against TRL's own computation).
- `shared_prompt_generate`: the prefill of the distinct prompts once, then `generate` continues every row
  from a copy of its prompt's cache, as transformers' documented prefix-cache reuse does.

Positions are the same as in the computation replaced, which differ between the two with left padding:
TRL's loss forward numbers every column from 0 (pads included), `generate` numbers from the first real
token (attention_mask.cumsum - 1); the attention mask is the full one.
"""
from __future__ import annotations


def distinct_rows(ids, mask):
    """(distinct ids, their masks, inverse index) of the rows of `ids` + `mask` (inverse[i] = row of i)."""
    import torch

    key = torch.cat([ids, mask.to(ids.dtype)], dim=1)
    distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
    width = ids.size(1)
    return distinct[:, :width], distinct[:, width:].to(mask.dtype), inverse


def _cache_kw(model) -> str:
    """The name of the KV-cache argument and output: `cache` (transformers >= 5.2x), else `past_key_values`."""
    import inspect

    forward = getattr(model, "get_base_model", lambda: model)().forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def _prompt_cache(model, ids, mask, inverse, padding_positions: bool = False):
    """(the KV cache of the distinct prompt rows expanded to the batch rows, the batch rows' logits at the
    last prompt position). Positions count from 0 at the first column (as TRL's loss forward does), or with
    `padding_positions` from the first unpadded token (as `generate` does with left padding)."""
    extra = {}
    if padding_positions:
        extra["position_ids"] = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1, **extra)
    cache = getattr(out, _cache_kw(model))
    cache.batch_select_indices(inverse)
    return cache, out.logits[:, -1][inverse]


def shared_prompt_logps(model, input_ids, attention_mask, logits_to_keep: int, temperature: float = 1.0,
                        compute_entropy: bool = False):
    """Per-token log-probabilities (batch, logits_to_keep) of the last `logits_to_keep` tokens of every row,
    under logits / `temperature` (as TRL scores them), and their entropies when asked (else None)."""
    import torch

    cut = input_ids.size(1) - logits_to_keep
    assert cut > 0, "a completion needs a prompt before it"
    ids, mask, inverse = distinct_rows(input_ids[:, :cut], attention_mask[:, :cut])
    cache, first = _prompt_cache(model, ids, mask, inverse)
    completion = input_ids[:, cut:]
    out = model(input_ids=completion, attention_mask=attention_mask, use_cache=True, **{_cache_kw(model): cache})
    logits = torch.cat([first[:, None], out.logits[:, :-1]], dim=1).float() / temperature
    logp = logits.log_softmax(-1)
    keep = attention_mask[:, cut:].bool()   # TRL's fused head gives 0 where the label is padding
    token_logp = logp.gather(-1, completion[..., None]).squeeze(-1).masked_fill(~keep, 0.0)
    entropy = (-(logp.exp() * logp).sum(-1)).masked_fill(~keep, 0.0) if compute_entropy else None
    return token_logp, entropy


def shared_prompt_generate(model, generate, input_ids, attention_mask, **generate_kwargs):
    """`generate(input_ids=..., attention_mask=..., ...)` (the model's own generate) with the prefill of each
    distinct prompt done once by `model` (all but the last prompt token, which `generate` feeds itself)."""
    import torch

    if input_ids.size(1) < 2:
        return generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
    ids, mask, inverse = distinct_rows(input_ids[:, :-1], attention_mask[:, :-1])
    with torch.no_grad():
        cache, _ = _prompt_cache(model, ids, mask, inverse, padding_positions=True)
    return generate(input_ids=input_ids, attention_mask=attention_mask, **{_cache_kw(model): cache},
                    **generate_kwargs)


def shared_prompt_applies(trainer, multimodal: dict | None = None) -> bool:
    """Whether the shared-prompt path can replace TRL's: one process (DDP expects one forward per backward),
    TRL's own transformers generation (not vLLM, not continuous batching) and a text-only batch."""
    return (trainer.accelerator.num_processes == 1 and not trainer.use_vllm
            and not getattr(trainer, "use_transformers_continuous_batching", False)
            and not getattr(trainer, "_is_vlm", False) and not multimodal)


class SharedPromptMixin:
    """Put before TRL's GRPOTrainer in a subclass's bases: its log-probabilities and its transformers
    generation then compute each distinct prompt once (module doc). `shared_prompt = False` turns it off;
    where `shared_prompt_applies` is false, TRL's own code runs."""

    shared_prompt = True

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        if not (self.shared_prompt and shared_prompt_applies(self) and not compute_aux_loss
                and all(v is None for v in multimodal.values())):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        import torch

        step = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), step):
            with self.accelerator.autocast():
                lp, ent = shared_prompt_logps(model, input_ids[start:start + step],
                                              attention_mask[start:start + step], logits_to_keep,
                                              self.temperature, compute_entropy)
            logps.append(lp)
            entropies.append(ent)
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if not (self.shared_prompt and shared_prompt_applies(self, multimodal_fields) and not images
                and not has_tool_images):
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        model = self.accelerator.unwrap_model(self.model)
        plain = model.generate
        model.generate = lambda **kw: shared_prompt_generate(model, plain, **kw)
        try:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        finally:
            del model.generate
