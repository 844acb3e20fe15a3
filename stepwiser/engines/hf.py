"""The transformers backend (C5): batched sampling on CPU or GPU with shared prompt prefill.

`HFEngine.generate` runs its own decode loop on top of the model's forward pass and KV cache:

* Prompts are tokenized once and deduplicated; each distinct prompt is prefilled **once** (a batch
  of left-padded prompts in one forward pass) and its KV cache is then repeated for all the
  sequences sampled from it (`params.n` samples, and every request with the same prompt). This is
  the saving over `model.generate(num_return_sequences=n)`, which prefills the prompt n times;
  `stats["prefill_tokens"]` counts the prompt tokens actually prefilled. A prompt whose sequences
  do not fit in one batch (more than `batch_size`) is prefilled once per batch it spans.
* Greedy decoding (temperature 0) computes one sequence per distinct prompt and copies it.
* Finished sequences (EOS, a stop string, `max_tokens`, or the model's context) leave the batch.
* Stop strings are matched on the decoded text (special tokens skipped, like vLLM); the returned
  text ends before the first stop string and `finish_reason` is "stop"; EOS is also "stop" (its
  text is not returned); running out of `max_tokens` or context is "length". `completion_tokens`
  counts the generated tokens up to and including the EOS or the token that completed the stop.

Reproducibility: sample j of a request draws its random numbers from its own generator, seeded from
(`request.seed`, else `params.seed`, j) and used by inverse-CDF sampling, one uniform per step.
So with a seed the random stream of a sample does not depend on batch size or on the other
requests; the tokens are then identical whenever the logits are, which holds for a fixed batch
layout and in practice (float rounding of differently padded batches can, rarely, flip a
near-tie). Without any seed the streams come from torch's global generator (`torch.manual_seed`).
The model's generation_config sampling defaults are not used: `SamplingParams` are applied as
given (only its EOS ids are read).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from stepwiser.engines.base import Completion, Engine, EngineError, Request, SamplingParams


@dataclass
class _Seq:
    """One sequence being generated: sample `sample` of request `request`."""
    request: int
    sample: int
    prompt: int  # index of its distinct prompt
    seed: int
    budget: int  # most tokens it may generate (max_tokens, capped by the context)
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None


@dataclass
class Generated:
    """A generation in tokens: `token_ids` include the final EOS / stop-completing token."""
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int


def derive_seed(base: int, sample: int) -> int:
    """The seed of sample `sample` of a request seeded with `base` (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{base}:{sample}".encode()).digest()[:8], "little") >> 1


def inverse_cdf(weights, u):
    """Index drawn from each row of the non-negative `weights` (B, V) by the uniforms `u` (B,) in [0, 1):
    the first index whose cumulative weight exceeds u * total (zero-weight entries are never drawn)."""
    import torch

    cum = weights.double().cumsum(-1)
    total = cum[:, -1:]
    x = torch.minimum(u.double()[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cum, x, right=True)[:, 0]


def sample_tokens(logits, temperature: float, top_p: float, u):
    """Next tokens for `logits` (B, V): argmax when temperature is 0, else a draw from
    softmax(logits / temperature) restricted to the top-p nucleus (the smallest set of most likely
    tokens whose probability reaches top_p), using the uniforms `u` (B,)."""
    import torch

    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1:
        return inverse_cdf(probs, u)
    # the nucleus usually lies in the top few hundred tokens: a top-k is much cheaper than a full sort
    sorted_probs, order = probs.topk(min(256, probs.shape[-1]), dim=-1)
    if not bool((sorted_probs.sum(-1) >= top_p).all()):
        sorted_probs, order = probs.sort(-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    return order.gather(-1, inverse_cdf(sorted_probs, u)[:, None])[:, 0]


def cache_argument(model) -> str:
    """The forward keyword of `model` for its KV cache: ``cache`` in recent transformers (which warn
    that ``past_key_values`` is deprecated), ``past_key_values`` before."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def plan_batches(lengths: list[int], groups: list[list[int]], batch_size: int) -> list[list[tuple[int, list[int]]]]:
    """Pack the sequences of each distinct prompt (`groups[p]`, prompt p of `lengths[p]` tokens) into
    batches of at most `batch_size` sequences, longest prompts first; a batch is a list of
    (prompt, sequences). A group larger than `batch_size` is split over several batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pieces = [(p, g[i:i + batch_size]) for p, g in enumerate(groups) for i in range(0, len(g), batch_size)]
    pieces.sort(key=lambda piece: -lengths[piece[0]])
    batches, current, size = [], [], 0
    for prompt, seqs in pieces:
        if current and size + len(seqs) > batch_size:
            batches.append(current)
            current, size = [], 0
        current.append((prompt, seqs))
        size += len(seqs)
    if current:
        batches.append(current)
    return batches


class HFEngine(Engine):
    """Generation with transformers. `model` is a C5 model string; `device` defaults to cuda when
    available, `dtype` to bfloat16 on GPU and float32 on CPU; `batch_size` bounds the sequences
    decoded together; `max_model_len` overrides the context length (default: the model's
    max_position_embeddings). `hf_model`/`tokenizer` use already loaded objects (e.g. during
    training) instead of loading `model`."""

    name = "hf"

    def __init__(self, model: str, device: str | None = None, dtype=None, batch_size: int = 64,
                 max_model_len: int | None = None, progress: bool = False, *, hf_model=None, tokenizer=None,
                 num_threads: int | None = None):
        from stepwiser.models.loading import load_model, load_tokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_threads is not None:
            import torch

            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            torch.set_num_threads(num_threads)
        self.model = model
        self.hf_model = hf_model if hf_model is not None else load_model(model, dtype=dtype, device=device)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
        self.device = next(self.hf_model.parameters()).device
        self.batch_size = batch_size
        self.progress = progress
        config = self.hf_model.config
        self.max_model_len = max_model_len or getattr(config, "max_position_embeddings", None) or 1 << 30
        self.eos_ids = self._eos_ids()
        self.stats = {"calls": 0, "batches": 0, "prefill_tokens": 0, "generated_tokens": 0}

    def _eos_ids(self) -> set[int]:
        ids = set()
        for source in (getattr(self.hf_model, "generation_config", None), self.hf_model.config, self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            ids.update(value if isinstance(value, (list, tuple)) else [] if value is None else [value])
        return ids

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        from stepwiser.errors import StepwiserError
        from stepwiser.models.loading import require_chat_template

        try:
            require_chat_template(self.tokenizer, self.model)
        except StepwiserError as e:
            raise EngineError(str(e)) from None
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def encode(self, requests: list[Request]) -> list[list[int]]:
        """The prompt token ids of each request (the text is used verbatim: no BOS is added). A micro
        model's prompts are checked first: pieces outside its vocabulary raise, naming them."""
        from stepwiser.models.micro import CoverageError, check_coverage

        texts = [self.prompt_text(request) for request in requests]
        try:
            check_coverage(self.tokenizer, texts, what=f"prompts for the micro model {self.model!r}",
                           names=[f"request {i}" for i in range(len(texts))])
        except CoverageError as e:
            raise EngineError(str(e)) from None
        ids = []
        for i, text in enumerate(texts):
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not tokens:
                raise EngineError(f"request {i} has an empty prompt")
            if len(tokens) >= self.max_model_len:
                raise EngineError(f"request {i}: the prompt is {len(tokens)} tokens, but the model "
                                  f"{self.model!r} has a context of {self.max_model_len} tokens; shorten it")
            ids.append(tokens)
        return ids

    def generate(self, requests: list[Request], params: SamplingParams) -> list[list[Completion]]:
        out = []
        for generations in self.generate_tokens(requests, params):
            out.append([self._completion(g, params.stop) for g in generations])
        return out

    def _completion(self, g: Generated, stop: list[str]) -> Completion:
        ids = g.token_ids[:-1] if g.finish_reason == "stop" and g.token_ids[-1] in self.eos_ids else g.token_ids
        text, finish = self._decode(ids), g.finish_reason
        cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Completion(text, g.prompt_tokens, len(g.token_ids), finish)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def generate_tokens(self, requests: list[Request], params: SamplingParams) -> list[list[Generated]]:
        """Like `generate`, in tokens: for each request, `params.n` Generated (before stop-string cutting)."""
        import torch
        from tqdm.auto import tqdm

        self.stats["calls"] += 1
        prompt_ids = self.encode(requests)
        distinct: dict[tuple[int, ...], int] = {}
        prompts = [distinct.setdefault(tuple(ids), len(distinct)) for ids in prompt_ids]
        unique = [list(key) for key in distinct]
        seqs, owner = self._sequences(requests, params, prompts, unique)
        groups = [[] for _ in unique]
        for index, seq in enumerate(seqs):
            groups[seq.prompt].append(index)
        training = self.hf_model.training  # a model passed in by a trainer: no dropout while sampling
        self.hf_model.eval()
        try:
            with tqdm(total=len(seqs), desc="generate", unit="seq", disable=not self.progress) as bar:
                for batch in plan_batches([len(u) for u in unique], groups, self.batch_size):
                    with torch.inference_mode():
                        self._run_batch([unique[p] for p, _ in batch], [[seqs[i] for i in g] for _, g in batch],
                                        params)
                    bar.update(sum(len(g) for _, g in batch))
        finally:
            self.hf_model.train(training)
        return [[Generated(list(seqs[owner[i, j]].tokens), seqs[owner[i, j]].finish, len(prompt_ids[i]))
                 for j in range(params.n)] for i in range(len(requests))]

    def _sequences(self, requests, params, prompts, unique):
        """The sequences to decode and, for each (request, sample), the index of the one it reads.
        Greedy decoding needs one sequence per distinct prompt."""
        import torch

        seqs, owner, first = [], {}, {}
        for i, request in enumerate(requests):
            base = request.seed if request.seed is not None else params.seed
            budget = min(params.max_tokens, self.max_model_len - len(unique[prompts[i]]))
            for j in range(params.n):
                if params.greedy:
                    if prompts[i] not in first:
                        first[prompts[i]] = len(seqs)
                        seqs.append(_Seq(i, j, prompts[i], 0, budget))
                    owner[i, j] = first[prompts[i]]
                    continue
                seed = derive_seed(base, j) if base is not None else int(torch.randint(0, 2**62, ()).item())
                owner[i, j] = len(seqs)
                seqs.append(_Seq(i, j, prompts[i], seed, budget))
        return seqs, owner

    def _run_batch(self, prompts: list[list[int]], groups: list[list[_Seq]], params: SamplingParams) -> None:
        """Prefill `prompts` once, repeat each one's cache for its sequences, decode until all finish."""
        import torch
        from transformers import DynamicCache

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.hf_model.config)
        kv = {cache_argument(self.hf_model): cache}
        logits = self.hf_model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                               **kv, use_cache=True, logits_to_keep=1).logits[:, -1]
        self.stats["batches"] += 1
        self.stats["prefill_tokens"] += sum(len(p) for p in prompts)
        counts = torch.tensor([len(g) for g in groups], device=self.device)
        if any(len(g) != 1 for g in groups):  # share the prefill: repeat each prompt's cache per sequence
            rows = torch.repeat_interleave(torch.arange(len(prompts), device=self.device), counts)
            cache.batch_select_indices(rows)
            logits, mask = logits[rows], mask[rows]
        active = [seq for group in groups for seq in group]
        next_pos = mask.sum(-1)
        uniforms = self._uniforms(active, params)
        for step in range(max(seq.budget for seq in active)):
            tokens = sample_tokens(logits.float(), params.temperature, params.top_p, uniforms[:, step])
            self.stats["generated_tokens"] += len(active)
            keep = [r for r, (seq, t) in enumerate(zip(active, tokens.tolist())) if not self._push(seq, t, params)]
            if not keep:
                return
            if len(keep) < len(active):  # drop finished sequences from the batch
                rows = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(rows)
                active = [active[r] for r in keep]
                tokens, mask, next_pos, uniforms = tokens[rows], mask[rows], next_pos[rows], uniforms[rows]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
            logits = self.hf_model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                                   **kv, use_cache=True, logits_to_keep=1).logits[:, -1]
            next_pos = next_pos + 1
        assert all(seq.finish for seq in active), "a sequence outlived its budget"

    def _uniforms(self, seqs: list[_Seq], params: SamplingParams):
        """(B, steps) uniforms: row b from sequence b's own seeded generator (unused when greedy)."""
        import torch

        steps = max(seq.budget for seq in seqs)
        if params.greedy:
            return torch.zeros(len(seqs), steps, device=self.device)
        rows = [torch.rand(steps, generator=torch.Generator().manual_seed(seq.seed), dtype=torch.float64)
                for seq in seqs]
        return torch.stack(rows).to(self.device)

    def _push(self, seq: _Seq, token: int, params: SamplingParams) -> bool:
        """Append `token` to `seq`; True (and seq.finish set) when the sequence is finished."""
        seq.tokens.append(token)
        if token in self.eos_ids or (params.stop and self._ends_with_stop(seq.tokens, params.stop)):
            seq.finish = "stop"
        elif len(seq.tokens) >= seq.budget:
            seq.finish = "length"
        return seq.finish is not None

    def _ends_with_stop(self, tokens: list[int], stop: list[str]) -> bool:
        """Whether a stop string appeared in the text with the last token (checked after every token,
        so looking at a window of recent tokens that covers the longest stop string suffices)."""
        window = 2 * max(len(s) for s in stop) + 8
        tail = self._decode(tokens[-window:])
        return any(s and s in tail for s in stop)
