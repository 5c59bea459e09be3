"""A GGUF model's tokenizer, rebuilt from the file's metadata as a Hugging Face tokenizer.

A GGUF file of a ``gpt2``-style (byte-level BPE) model carries the vocabulary
(``tokenizer.ggml.tokens``), the merges, each token's type (3 = control, the special tokens),
the special token ids and the chat template. From those this module writes a directory in the
Hugging Face layout (``tokenizer.json``, ``tokenizer_config.json`` with the chat template,
``special_tokens_map.json``) that ``tokenizers`` and ``transformers`` load offline, exactly as
:mod:`._tokenizer` does for the local models.

The pre-tokenizer follows the file's ``tokenizer.ggml.pre``: ``smollm`` (SmolLM2) splits digits
one by one before the byte-level split. Other pre-tokenizers are refused rather than guessed.

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

__all__ = ["build_gguf_tokenizer", "ensure_gguf_tokenizer_dir", "file_digest"]

_FORMAT_VERSION = 1
_CONTROL = 3  # llama.cpp's token type for control (special) tokens


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
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    types = list(fields["tokenizer.ggml.token_type"])
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty == _CONTROL
        ]
    )

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


def ensure_gguf_tokenizer_dir(cache_dir: Path, path: Path) -> Path:
    """Return a Hugging Face layout directory of ``path``'s tokenizer, building it once."""
    from tinker_actors.local._tokenizer import build_tokenizer_dir_once

    stem = path.name.removesuffix(".gguf")
    target = cache_dir / f"gguf-{stem}-v{_FORMAT_VERSION}-{file_digest(path)}"
    return build_tokenizer_dir_once(cache_dir, target, lambda: build_gguf_tokenizer(path))
