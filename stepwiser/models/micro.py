"""The micro model family (docs/METHOD.md section 5): a word-level domain tokenizer and tiny Llama shapes.

Tokenizer: a `tokenizers` word-level vocabulary (a WordPiece model without continuation prefix) behind a
regex pre-tokenizer (`PIECES`) that cuts text into
`<chunk>`, `</chunk>`, `\\boxed{` (with or without a leading space), words with their leading space
(a word ends before a capital letter: "ONE" is three pieces, and two words a model writes without a
space between them, such as " moreThen", stay two known pieces instead of one unknown), single
digits (with or without a leading space), single punctuation characters (likewise) and single
whitespace characters. Decoding concatenates the pieces, so decode(encode(x)) == x for every
text made only of known pieces. The vocabulary is every piece of the corpus the caller passes
(`build_tokenizer(texts)`), plus the digits and whitespace, after the specials `<pad> <s> </s> <unk>`
and the chat markers `<|system|> <|user|> <|assistant|> <|end|>`, ordered by frequency then text
(deterministic). The chat template (`CHAT_TEMPLATE`) renders each turn as `<|role|>\\n...<|end|>\\n`;
`<|end|>` is the EOS, so a model stops at the end of its turn. Saved as a fast-tokenizer folder that
`AutoTokenizer.from_pretrained` reloads; its tokenizer_config.json carries `"stepwiser_micro": true`.

Coverage: a word the pre-tokenizer cuts out that is not in the vocabulary is split into known pieces,
longest first (two pieces a model writes back to back, " is" + "check", come back as " ischeck": they are
encoded as the same two pieces again); what cannot be built from known pieces is `<unk>`. Texts given to a micro model
are checked first (`check_coverage`, used by the hf engine and by SFT data loading): a text with
pieces outside the vocabulary (e.g. a GSM8K problem) raises `CoverageError` naming those pieces,
never a silent `<unk>`.

Models: `SIZES` (hidden, layers, heads, FFN; tied embeddings) and `init_model`, a randomly
initialised `LlamaForCausalLM` that depends only on (size, vocabulary, positions, seed).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from stepwiser.errors import StepwiserError

MICRO_KEY = "stepwiser_micro"  # tokenizer_config.json key marking a micro tokenizer
PAD, BOS, EOS_PIECE, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS_PIECE, UNK)
ROLES = ("system", "user", "assistant")
END = "<|end|>"
MARKERS = tuple(f"<|{r}|>" for r in ROLES) + (END,)
PIECES = r" ?\\boxed\{|</?chunk>| ?[A-Za-z][a-z]*| ?[0-9]| ?[^\sA-Za-z0-9]|\s"
_PIECES = re.compile(PIECES)
ALPHABET = tuple("0123456789") + tuple(f" {d}" for d in "0123456789") + (" ", "\n")
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('the micro chat template knows the roles system, user and assistant only') }}"
    "{% endif %}"
    "{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
DEFAULT_POSITIONS = 1024

# size -> LlamaConfig shape (tied input/output embeddings)
SIZES = {
    "micro-1m": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512},
    "micro-6m": {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 8, "intermediate_size": 1024},
}


class CoverageError(StepwiserError):
    """A text holds pieces that the micro tokenizer's vocabulary does not have."""


def pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(PIECES), behavior="isolated")


def pieces(text: str) -> list[str]:
    """The pieces `text` is cut into (before the vocabulary lookup)."""
    return [p for p, _ in pre_tokenizer().pre_tokenize_str(text)]


def build_vocab(texts: Iterable[str]) -> dict[str, int]:
    """Piece -> id: specials, chat markers, then the corpus pieces and `ALPHABET` by frequency
    (most frequent first; ties by text)."""
    counts: Counter = Counter(ALPHABET)
    for text in texts:  # Python's re cuts these texts exactly like the pre-tokenizer, 3x faster
        counts.update(_PIECES.findall(text))
    fixed = SPECIALS + MARKERS
    for p in fixed:
        counts.pop(p, None)
    ordered = sorted(counts, key=lambda p: (-counts[p], p))
    return {p: i for i, p in enumerate(fixed + tuple(ordered))}


def build_tokenizer(texts: Iterable[str], max_length: int = DEFAULT_POSITIONS):
    """A micro `PreTrainedTokenizerFast` whose vocabulary is the pieces of `texts` (see the module doc)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = build_vocab(texts)
    # WordPiece without a continuation prefix: a known word is one piece; a word the pre-tokenizer cuts out
    # that is not in the vocabulary is split into known pieces, longest first (a model writes " is" then
    # "check", which pre-tokenize again as " ischeck"); only what cannot be built from pieces is <unk>.
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK, continuing_subword_prefix="",
                                         max_input_chars_per_word=200))
    backend.pre_tokenizer = pre_tokenizer()
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=END, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[EOS_PIECE, *MARKERS], chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=max_length, **{MICRO_KEY: True})


def is_micro(tokenizer) -> bool:
    """Whether `tokenizer` is a micro tokenizer (its config carries MICRO_KEY)."""
    return bool(getattr(tokenizer, "init_kwargs", {}).get(MICRO_KEY))


def load_micro_tokenizer(path: str | Path):
    """The micro tokenizer saved in folder `path` (StepwiserError if there is none)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise StepwiserError(f"{path}: no tokenizer.json; give a folder written by `stepwiser init-model`")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not is_micro(tokenizer):
        raise StepwiserError(f"{path}: not a micro tokenizer (its tokenizer_config.json lacks "
                             f"\"{MICRO_KEY}\": true)")
    return tokenizer


def unknown_pieces(tokenizer, texts: Iterable[str]) -> tuple[Counter, list[int]]:
    """(count of each piece mapped to <unk>, indices of the texts holding one). Chat markers and
    other special tokens in the texts are known."""
    backend = tokenizer.backend_tokenizer
    unk = tokenizer.unk_token_id
    texts = list(texts)
    found: Counter = Counter()
    where = []
    for i, enc in enumerate(backend.encode_batch(texts, add_special_tokens=False)):
        bad = [texts[i][a:b] for t, (a, b) in zip(enc.ids, enc.offsets) if t == unk]
        if bad:
            found.update(bad)
            where.append(i)
    return found, where


def check_coverage(tokenizer, texts: Iterable[str], what: str = "text",
                   names: list[str] | None = None) -> None:
    """Raise CoverageError when a text has pieces outside the vocabulary (naming them and the first
    text holding one: `names[i]`, default `#i`); no-op for tokenizers that are not micro ones."""
    if not is_micro(tokenizer):
        return
    texts = list(texts)
    found, where = unknown_pieces(tokenizer, texts)
    if not found:
        return
    shown = ", ".join(f"{p!r}" + (f" (x{n})" if n > 1 else "") for p, n in found.most_common(12))
    more = f" and {len(found) - 12} more" if len(found) > 12 else ""
    first = names[where[0]] if names else f"#{where[0]}"
    raise CoverageError(
        f"{what} outside the micro tokenizer's vocabulary: {len(found)} unknown piece(s) in "
        f"{len(where)} of {len(texts)} text(s) (first: {first}): {shown}{more}; a micro model knows "
        f"only the synthetic arithmetic domain (stepwiser data synth): use a general model, or rebuild "
        f"the tokenizer (stepwiser init-model) from a corpus with these texts")


def micro_config(size: str, tokenizer, max_positions: int = DEFAULT_POSITIONS):
    """The LlamaConfig of `size` for `tokenizer`'s vocabulary."""
    from transformers import LlamaConfig

    if size not in SIZES:
        raise StepwiserError(f"unknown micro size {size!r}; allowed: {', '.join(SIZES)}")
    if max_positions < 16:
        raise StepwiserError(f"max_positions must be >= 16, got {max_positions}")
    shape = SIZES[size]
    return LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=max_positions, tie_word_embeddings=True,
        num_key_value_heads=shape["num_attention_heads"], rms_norm_eps=1e-5, initializer_range=0.02,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **shape)


def init_model(size: str, tokenizer, seed: int, max_positions: int = DEFAULT_POSITIONS):
    """A randomly initialised float32 LlamaForCausalLM of `size` (same arguments -> same weights);
    torch's global random state is left as it was."""
    import torch
    from transformers import LlamaForCausalLM

    config = micro_config(size, tokenizer, max_positions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def parameter_count(model) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
