"""A GGUF model's tokenizer, rebuilt from the file's metadata as a Hugging Face tokenizer.

A GGUF file of a ``gpt2``-style (byte-level BPE) model carries the vocabulary
(``tokenizer.ggml.tokens``), the merges, each token's type (3 = control, the special tokens),
the special token ids and the chat template. From those this module writes a directory in the
Hugging Face layout (``tokenizer.json``, ``tokenizer_config.json`` with the chat template,
``special_tokens_map.json``) that ``tokenizers`` and ``transformers`` load offline, exactly as
:mod:`._tokenizer` does for the local models.

The pre-tokenizer follows the file's ``tokenizer.ggml.pre``: ``smollm`` (SmolLM2) splits digits
one by one before the byte-level split. Other pre-tokenizers are refused rather than guessed.

SmolLM2 has no ids for Qwen's reasoning and tool markers, which tinker-cookbook's Qwen3.5
renderers (the ones it recommends for its default models) need as single tokens: they assert
``</think>`` is one token. So when SmolLM2 is served under a Qwen name, ``<think>`` ...
``</tool_response>`` must be one id each. They take the ids of six control tokens of SmolLM2's
code-model heritage that a chat never uses (``<jupyter_start>`` ... ``<empty_output>``,
:data:`MARKER_SLOTS`), stay inside the model's embedding table (no new ids), and, as in Qwen's
tokenizers and the local models' (:mod:`._tokenizer`), are *not* special: decoding keeps them.

The output directory is named by a digest of the GGUF file, so a changed file never reuses a
stale build; builders write a temporary sibling and rename it into place.
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from tokenizers import Tokenizer

__all__ = ["MARKER_SLOTS", "build_gguf_tokenizer", "ensure_gguf_tokenizer_dir", "file_digest"]

_FORMAT_VERSION = 2  # 2: Qwen's markers in MARKER_SLOTS
_CONTROL = 3  # llama.cpp's token type for control (special) tokens
#: Control tokens a chat never uses -> the Qwen marker that takes its id (see the docstring).
MARKER_SLOTS = {
    "<jupyter_start>": "<think>",
    "<jupyter_text>": "</think>",
    "<jupyter_code>": "<tool_call>",
    "<jupyter_output>": "</tool_call>",
    "<jupyter_script>": "<tool_response>",
    "<empty_output>": "</tool_response>",
}


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """A short content digest of ``path`` (computed once per process per file version)."""
    stat = path.stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


def _fields(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    wanted = (
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.chat_template",
    )
    return {key: reader.fields[key].contents() for key in wanted if key in reader.fields}


def build_gguf_tokenizer(path: Path) -> tuple[Tokenizer, dict[str, Any]]:
    """Build the tokenizer of the GGUF file at ``path``; return it with its config.

    Raises:
        ValueError: a tokenizer model or pre-tokenizer this module does not know.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    fields = _fields(path)
    if fields.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(
            f"{path.name}: tokenizer model {fields.get('tokenizer.ggml.model')!r} is not supported"
        )
    pre = fields.get("tokenizer.ggml.pre")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        raise ValueError(f"{path.name}: pre-tokenizer {pre!r} is not supported (only 'smollm')")
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    types = list(fields["tokenizer.ggml.token_type"])
    markers = _take_marker_slots(tokens, types)
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty == _CONTROL and t not in markers
        ]
    )
    # added as non-special tokens: matched whole in any text, kept by decode; being in the
    # vocabulary already, each keeps the id it took
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in markers])

    def name(key: str) -> str | None:
        index = fields.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[int(index)] if index is not None else None

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 1 << 20,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "bos_token": name("bos"),
        "eos_token": name("eos"),
        "unk_token": name("unknown"),
        "pad_token": name("padding"),
    }
    if "tokenizer.chat_template" in fields:
        config["chat_template"] = fields["tokenizer.chat_template"]
    return tok, config


def _take_marker_slots(tokens: list[str], types: list[int]) -> list[str]:
    """Rename the :data:`MARKER_SLOTS` control tokens in place; return the markers placed.

    A vocabulary without all six slots as control tokens, or one that has a marker already,
    is left as it is.
    """
    index = {t: i for i, t in enumerate(tokens)}
    slots = [index.get(old) for old in MARKER_SLOTS]
    usable = all(i is not None and types[i] == _CONTROL for i in slots)
    if not usable or any(marker in index for marker in MARKER_SLOTS.values()):
        return []
    for i, marker in zip(slots, MARKER_SLOTS.values(), strict=True):
        assert i is not None
        tokens[i] = marker
        types[i] = 1  # a normal token now
    return list(MARKER_SLOTS.values())


def ensure_gguf_tokenizer_dir(cache_dir: Path, path: Path) -> Path:
    """Return a Hugging Face layout directory of ``path``'s tokenizer, building it once."""
    from tinker_actors.local._tokenizer import build_tokenizer_dir_once

    stem = path.name.removesuffix(".gguf")
    target = cache_dir / f"gguf-{stem}-v{_FORMAT_VERSION}-{file_digest(path)}"
    return build_tokenizer_dir_once(cache_dir, target, lambda: build_gguf_tokenizer(path))
