"""Off-the-shelf discriminative PRMs of the Qwen2.5-Math-PRM family (`eval processbench --prm MODEL`).

Usage as on the model card: the chat is [system "Please reason step by step, and put your final answer
within \\boxed{}.", user = the problem, assistant = the steps joined by the step token ``<extra_0>``
with one more after the last step]; the template is applied without a generation prompt; at each
``<extra_0>`` position the 2-class head gives logits, softmax -> P(positive) = class 1. The prediction
is the first step with P(positive) < threshold, or -1.

Supported checkpoints, with transformers only (no remote code is run):
- ``architectures = ["Qwen2ForProcessRewardModel"]`` (Qwen/Qwen2.5-Math-PRM-7B, -72B,
  Qwen/Qwen2.5-Math-7B-PRM800K): a Qwen2 decoder and the head
  ``score = Sequential(Linear(h, h), ReLU(), Linear(h, 2))``, reimplemented here with the same
  weight names, so the published weights load into it;
- any ``*ForTokenClassification`` checkpoint with 2 labels (e.g. ``Qwen2ForTokenClassification``, a
  single linear head), read the same way.
The tokenizer must encode the step token as one token (Qwen2.5-Math-PRM tokenizers do).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

from stepwiser.errors import StepwiserError
from stepwiser.data.bench import BenchItem

PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TOKEN = "<extra_0>"
PRM_ARCH = "Qwen2ForProcessRewardModel"


@functools.lru_cache(maxsize=1)
def prm_class():
    """`Qwen2ForProcessRewardModel`: the Qwen2.5-Math-PRM architecture as a transformers model."""
    from torch import nn
    from transformers.modeling_outputs import TokenClassifierOutput
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Model, Qwen2PreTrainedModel

    class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.num_labels = 2
            self.model = Qwen2Model(config)
            h = config.hidden_size
            self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, self.num_labels))
            self.post_init()

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                **kwargs).last_hidden_state
            return TokenClassifierOutput(logits=self.score(hidden))

    return Qwen2ForProcessRewardModel


def load_prm_model(name: str, dtype=None, device: str | None = None):
    """The PRM `name` (C5 model string) in eval mode; StepwiserError for an unsupported architecture."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    from stepwiser.models.loading import default_device, resolve_model, torch_dtype

    path = resolve_model(name)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    arch = (getattr(config, "architectures", None) or [""])[0]
    if arch == PRM_ARCH:
        cls = prm_class()
    elif arch.endswith("ForTokenClassification"):
        cls = AutoModelForTokenClassification
        if config.num_labels != 2:
            raise StepwiserError(f"{name}: a token-classification PRM needs 2 labels, this one has {config.num_labels}")
    else:
        raise StepwiserError(f"{name}: architecture {arch or 'unknown'!r} is not a supported PRM; supported: "
                             f"{PRM_ARCH} (Qwen2.5-Math-PRM) or a 2-label *ForTokenClassification model")
    device = device or default_device()
    model = cls.from_pretrained(path, config=config, dtype=torch_dtype(dtype, device))
    return model.to(device).eval()


def prm_messages(problem: str, steps: Iterable[str], step_token: str = STEP_TOKEN) -> list[dict]:
    return [{"role": "system", "content": PRM_SYSTEM}, {"role": "user", "content": problem},
            {"role": "assistant", "content": step_token.join(steps) + step_token}]


def first_below(scores: Iterable[float], threshold: float) -> int:
    """Index of the first step with P(positive) < threshold, or -1."""
    return next((i for i, p in enumerate(scores) if p < threshold), -1)


class ProcessRewardModel:
    """`ProcessRewardModel(model).step_scores(items)`: P(positive) of every step of each item."""

    def __init__(self, model: str, threshold: float = 0.5, device: str | None = None, dtype=None,
                 batch_size: int = 8, step_token: str = STEP_TOKEN):
        from stepwiser.models.loading import load_tokenizer

        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name, self.threshold, self.batch_size, self.step_token = model, threshold, batch_size, step_token
        self.tokenizer = load_tokenizer(model)
        ids = self.tokenizer.encode(step_token, add_special_tokens=False)
        if len(ids) != 1:
            raise StepwiserError(f"the tokenizer of {model} does not encode the step token {step_token!r} as one "
                                 f"token (got {len(ids)}); a Qwen2.5-Math-PRM tokenizer does")
        self.sep_id = ids[0]
        self.model = load_prm_model(model, dtype=dtype, device=device)
        self.device = next(self.model.parameters()).device

    def encode(self, item: BenchItem) -> list[int]:
        text = self.tokenizer.apply_chat_template(prm_messages(item.problem, item.steps, self.step_token),
                                                  tokenize=False, add_generation_prompt=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if ids.count(self.sep_id) != len(item.steps):
            raise StepwiserError(f"item {item.id!r} ({item.subset}): {ids.count(self.sep_id)} step tokens for "
                                 f"{len(item.steps)} steps (does a step contain {self.step_token!r}?)")
        return ids

    def step_scores(self, items: list[BenchItem]) -> list[list[float]]:
        """P(positive) per step, one batched forward pass per `batch_size` items (right padding)."""
        import torch

        ids = [self.encode(it) for it in items]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[list[float]] = [[] for _ in ids]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            batch = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in idx], device=self.device)
            mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in idx], device=self.device)
            with torch.no_grad():
                probs = torch.softmax(self.model(input_ids=batch, attention_mask=mask).logits.float(), dim=-1)
            for row, i in enumerate(idx):
                at = [p for p, t in enumerate(ids[i]) if t == self.sep_id]
                out[i] = probs[row, at, 1].tolist()
        return out

    def predict(self, items: Iterable[BenchItem], window: int = 64) -> Iterator[tuple[BenchItem, dict]]:
        items = list(items)
        for b in range(0, len(items), window):
            batch = items[b:b + window]
            for it, scores in zip(batch, self.step_scores(batch)):
                yield it, {"prediction": first_below(scores, self.threshold), "unparsed": False,
                           "steps_judged": len(scores), "scores": scores,
                           "step_verdicts": [int(p >= self.threshold) for p in scores]}
