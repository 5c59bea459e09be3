"""Offline tokenizers for the local server's base models.

Nothing can be downloaded at run time, so each local base model's tokenizer is a byte-level BPE
trained in-process, deterministically, on a small corpus: a hand-written text shipped in the
package (``data/corpus.txt``) plus lines generated from a fixed seed (numbers, key/value pairs,
arithmetic, letter and number sequences) so that the merges cover what the synthetic training
tasks use. Byte-level means every string round-trips exactly, whatever the corpus missed.

The trained tokenizer is written to a directory in the Hugging Face layout
(``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``), so both
``tokenizers.Tokenizer.from_file`` and ``transformers.AutoTokenizer.from_pretrained(<dir>)``
(what the official client's ``get_tokenizer()`` calls) load it offline. The directory name carries
a digest of everything that shapes the result, so a changed corpus or vocabulary never reuses a
stale cache, and concurrent builders never see a half-written directory (write to a temporary
sibling, then rename).

Example::

    path = ensure_tokenizer_dir(Path("~/.cache/tinker-actors").expanduser(), vocab_size=4096)
    tok = load_tokenizer(path)
    assert tok.decode(tok.encode("hello").ids) == "hello"
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinker_actors.local._chat_template import CHAT_TEMPLATE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tokenizers import Tokenizer

    from tinker_actors.local._catalogue import BaseModelSpec

__all__ = [
    "EOS_TOKEN",
    "MARKER_TOKENS",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "TokenizerText",
    "build_tokenizer",
    "build_tokenizer_dir_once",
    "corpus_lines",
    "ensure_model_tokenizer_dir",
    "ensure_tokenizer_dir",
    "load_tokenizer",
    "tokenizer_digest",
]

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
#: Special tokens take the lowest ids, in this order (EOS is id 0).
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, "<|im_start|>", "<|im_end|>")
#: Qwen's reasoning and tool markers, one id each right after the special tokens, and, as in
#: Qwen's own tokenizers, *not* special: ``decode(skip_special_tokens=True)`` keeps them and a
#: backend with ``encode_special_tokens`` still reads them whole. tinker-cookbook's Qwen3 and
#: Qwen3.5 renderers (the recommended ones for its default models) need exactly that: they
#: assert ``</think>`` is one token and encode message content with special tokens split but
#: a tool call's ``<tool_call>`` intact, so a sampled tool call re-renders to the same tokens.
MARKER_TOKENS = (
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)
_FORMAT_VERSION = 3  # 3: tokenizer_config.json has the chat template
_GENERATED_LINES = 6000
_WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "silver",
    "quick",
    "slow",
    "north",
    "south",
    "model",
    "token",
    "batch",
    "loss",
    "step",
    "train",
    "sample",
    "weight",
    "gradient",
    "learn",
    "value",
    "key",
    "door",
    "house",
    "light",
    "water",
    "fire",
    "tree",
]


def corpus_lines(seed: int = 0) -> Iterator[str]:
    """Yield the training corpus: the shipped text, then seeded generated lines."""
    text = resources.files("tinker_actors.local").joinpath("data/corpus.txt").read_text("utf-8")
    yield from text.splitlines()
    rng = random.Random(seed)
    for i in range(_GENERATED_LINES):
        kind = i % 6
        if kind == 0:
            a, b = rng.randrange(1000), rng.randrange(1000)
            yield f"{a} + {b} = {a + b}"
        elif kind == 1:
            key = "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 6))
            )
            yield f"{key}: {rng.randrange(100000)}"
        elif kind == 2:
            start, stride = rng.randrange(50), rng.randint(1, 9)
            yield " ".join(str(start + stride * k) for k in range(rng.randint(4, 12)))
        elif kind == 3:
            offset = rng.randrange(20)
            yield " ".join(chr(ord("a") + (offset + k) % 26) for k in range(rng.randint(4, 12)))
        elif kind == 4:
            yield " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14))) + "."
        else:
            name = rng.choice(_WORDS)
            yield f'{{"{name}": {rng.randrange(100)}, "ok": {str(rng.random() < 0.5).lower()}}}'


def tokenizer_digest(vocab_size: int) -> str:
    """Return a short digest of everything that determines the trained tokenizer."""
    import tokenizers

    h = hashlib.sha256()
    h.update(f"v{_FORMAT_VERSION}|{vocab_size}|{tokenizers.__version__}|".encode())
    h.update("|".join(SPECIAL_TOKENS + MARKER_TOKENS).encode())
    h.update(CHAT_TEMPLATE.encode())
    for line in corpus_lines():
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def build_tokenizer(vocab_size: int) -> Tokenizer:
    """Train the byte-level BPE tokenizer of ``vocab_size`` entries (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    minimum = 256 + len(SPECIAL_TOKENS) + len(MARKER_TOKENS)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be at least {minimum} (bytes + special and marker tokens)"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *MARKER_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    # The trainer gives the markers their low ids but registers them as special; clearing the
    # flag in the serialized form is the only way that also clears it in the added vocabulary
    # (``add_tokens`` with ``special=False`` rewrites the flag but decode still skips them).
    data = json.loads(tok.to_str())
    for added in data["added_tokens"]:
        if added["content"] in MARKER_TOKENS:
            added["special"] = False
    return Tokenizer.from_str(json.dumps(data))


def ensure_tokenizer_dir(cache_dir: Path, vocab_size: int) -> Path:
    """Return a directory holding the tokenizer in Hugging Face layout, building it once."""

    def build() -> tuple[Tokenizer, dict[str, Any]]:
        specials = {"eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN, "bos_token": EOS_TOKEN}
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": 1 << 20,
            "clean_up_tokenization_spaces": False,
            **specials,
            "chat_template": CHAT_TEMPLATE,
        }
        return build_tokenizer(vocab_size), config

    target = cache_dir / f"local-bpe-{vocab_size}-{tokenizer_digest(vocab_size)}"
    return build_tokenizer_dir_once(cache_dir, target, build)


def build_tokenizer_dir_once(
    cache_dir: Path, target: Path, build: Callable[[], tuple[Tokenizer, dict[str, Any]]]
) -> Path:
    """Return ``target``, first writing ``build()``'s tokenizer and config there if it is absent.

    The files are written to a staging directory and renamed into place, so a reader never sees
    a half-written tokenizer; the special tokens map is the config's ``*_token`` entries.
    """
    if (target / "tokenizer.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        tok, config = build()
        tok.save(str(staging / "tokenizer.json"))
        (staging / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        specials = {k: v for k, v in config.items() if k.endswith("_token") and v is not None}
        (staging / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
        try:
            os.rename(staging, target)
        except OSError:
            # another process finished first; its result is identical (deterministic build)
            if not (target / "tokenizer.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def ensure_model_tokenizer_dir(cache_dir: Path, spec: BaseModelSpec) -> Path:
    """Return the Hugging Face layout directory of ``spec``'s tokenizer, building it once."""
    if spec.tokenizer == "gguf":
        from tinker_actors.local._gguf_tokenizer import ensure_gguf_tokenizer_dir

        if spec.source is None:
            raise ValueError(f"{spec.name}: a gguf tokenizer needs the model's source file")
        return ensure_gguf_tokenizer_dir(cache_dir, spec.source)
    return ensure_tokenizer_dir(cache_dir, spec.vocab_size)


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load a tokenizer written by :func:`ensure_tokenizer_dir`."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(directory / "tokenizer.json"))


class TokenizerText:
    """Token ids to text with a model's tokenizer, special tokens left out; :meth:`stream`
    decodes a completion one token at a time (what stop strings are searched in)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    def __call__(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def stream(self) -> Callable[[int], str]:
        """A function of each next token that returns the text it adds ("" while the token
        only begins a character); joined, those texts are the whole completion's decoding."""
        from tokenizers.decoders import DecodeStream

        stream, tokenizer = DecodeStream(skip_special_tokens=True), self._tokenizer

        def push(token: int) -> str:
            return stream.step(tokenizer, token) or ""

        return push
