"""The discriminative judge (the paper's "Disc + SFT" baseline) behind the common judging API.

A disc-SFT model (`stepwiser train-judge --method disc-sft`) reads the multi-turn chat of
`stepwiser.judges.prompts.disc_messages`: the problem with the first chunk, one chunk per user turn, and after each
turn the assistant's "+" (correct) or "-" (mistake). To judge a chunk, the accepted history is filled in with
"+" answers (the history was accepted) and the chat stops after the new chunk's user turn; the chunk score
is P(+) = p("+") / (p("+") + p("-")) from the next-token distribution after the assistant prompt, and the
verdict is Positive when the score is at least `threshold`. Scoring is one batched forward pass per
`batch_size` items (left-padded, with explicit position ids), on transformers (CPU or GPU).
"""
from __future__ import annotations

from stepwiser.errors import StepwiserError
from stepwiser.judges.base import JudgeItem, Judgment
from stepwiser.judges.prompts import DISC_NEG, DISC_POS, disc_messages


def disc_prompt_messages(item: JudgeItem) -> list[dict]:
    """The chat that asks for the verdict on `item.chunk`: history turns answered "+", then the new chunk."""
    chunks = [*item.history, item.chunk]
    return disc_messages(item.problem, chunks, [1] * len(chunks))[:-1]


def answer_token_ids(tokenizer) -> tuple[int, int]:
    """The token ids the template gives the assistant's "+" and "-" answers (first token after the prompt)."""
    ids = []
    probe = [{"role": "user", "content": "Step 1:\nx"}]
    prompt = tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
    for ans in (DISC_POS, DISC_NEG):
        full = tokenizer.apply_chat_template(probe + [{"role": "assistant", "content": ans}], tokenize=True,
                                             return_dict=True)["input_ids"]
        if full[:len(prompt)] != prompt or len(full) <= len(prompt):
            raise StepwiserError("the chat template does not render the assistant answer after the generation "
                                 "prompt; the discriminative judge cannot read P(+) with it")
        ids.append(full[len(prompt)])
    if ids[0] == ids[1]:
        raise StepwiserError("'+' and '-' start with the same token under this tokenizer")
    return ids[0], ids[1]


def plus_probability(logits, pos_id: int, neg_id: int):
    """P(+) from next-token logits (..., V), renormalised over the two answer tokens."""
    import torch

    pair = torch.stack([logits[..., pos_id], logits[..., neg_id]], dim=-1).float()
    return torch.softmax(pair, dim=-1)[..., 0]


def pair_probabilities(model, ids: list[list[int]], pad_id: int, pos_id: int, neg_id: int,
                       batch_size: int = 16) -> list[float]:
    """For each prompt (token ids), P(pos) renormalised over the two next tokens `pos_id` / `neg_id`: one
    batched forward pass per `batch_size` prompts (sorted by length, left-padded, explicit position ids)."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [0.0] * len(ids)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        width = max(len(ids[i]) for i in idx)
        batch = torch.tensor([[pad_id] * (width - len(ids[i])) + ids[i] for i in idx], device=device)
        mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in idx], device=device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(input_ids=batch, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1]
        for i, p in zip(idx, plus_probability(logits, pos_id, neg_id).tolist()):
            out[i] = p
    return out


class DiscriminativeJudge:
    """`DiscriminativeJudge(model).judge(items, k)`: the StepJudge API for a disc-SFT model.

    Every item gets k identical samples (the score is deterministic): verdicts = [score >= threshold] * k,
    scores = [P(+)] * k, texts = ["+" or "-"] * k, tokens = 0."""

    def __init__(self, model: str, threshold: float = 0.5, device: str | None = None, batch_size: int = 16,
                 dtype=None):
        from stepwiser.models.loading import load_model, load_tokenizer, require_chat_template

        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name, self.threshold, self.batch_size = model, threshold, batch_size
        self.tokenizer = load_tokenizer(model)
        require_chat_template(self.tokenizer, model)
        self.pos_id, self.neg_id = answer_token_ids(self.tokenizer)
        self.model = load_model(model, dtype=dtype, device=device)
        self.device = next(self.model.parameters()).device

    def prompt_ids(self, item: JudgeItem) -> list[int]:
        return self.tokenizer.apply_chat_template(disc_prompt_messages(item), add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"]

    def scores(self, items: list[JudgeItem]) -> list[float]:
        """P(+) of each item's new chunk."""
        return pair_probabilities(self.model, [self.prompt_ids(it) for it in items], self.tokenizer.pad_token_id,
                                  self.pos_id, self.neg_id, self.batch_size)

    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]:
        return scored_judgments(self, items, k, (DISC_POS, DISC_NEG))


def scored_judgments(judge, items: list[JudgeItem], k: int, texts: tuple[str, str]) -> list[Judgment]:
    """The judgments of a scoring judge (`judge.scores(items)`, `judge.threshold`): k identical samples per
    item, verdict = [score >= threshold], scores = [P(+)], texts = texts[0] (Positive) or texts[1], tokens 0."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not items:
        return []
    out = []
    for p in judge.scores(items):
        v = int(p >= judge.threshold)
        out.append(Judgment(verdicts=[v] * k, texts=[texts[0] if v else texts[1]] * k, tokens=0, scores=[p] * k))
    return out

