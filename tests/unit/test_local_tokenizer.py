"""Offline tokenizers and the model catalogue of the local server."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="tokenizers is not installed: pip install -e '.[server]'")

from tokenizers import Tokenizer

from tinker_actors.local._catalogue import CATALOGUE, UnknownModelError, lookup_model
from tinker_actors.local._tokenizer import (
    EOS_TOKEN,
    MARKER_TOKENS,
    SPECIAL_TOKENS,
    build_tokenizer,
    ensure_tokenizer_dir,
    load_tokenizer,
)

VOCAB = 1024  # smaller than the catalogue's for speed; the code path is the same


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tokenizer_dir(tmp_path_factory.mktemp("tok"), VOCAB)


def test_vocab_size_and_specials(tok_dir: Path) -> None:
    tok = load_tokenizer(tok_dir)
    assert tok.get_vocab_size() == VOCAB
    for expected_id, token in enumerate(SPECIAL_TOKENS + MARKER_TOKENS):
        assert tok.token_to_id(token) == expected_id


def test_markers_are_whole_and_not_special(tok_dir: Path) -> None:
    # as in Qwen's tokenizers: "<think>" and the tool tags are one id each, kept by
    # decode(skip_special_tokens=True), and still whole when special tokens are split
    # (tinker-cookbook's Qwen renderers encode message content that way)
    tok = load_tokenizer(tok_dir)
    text = "<|im_start|>assistant\n<think>\nhm</think>\n<tool_call>\n{}\n</tool_call><|im_end|>"
    ids = tok.encode(text).ids
    for marker in MARKER_TOKENS[:4]:
        assert tok.token_to_id(marker) in ids
    assert tok.decode(ids, skip_special_tokens=True) == (
        "assistant\n<think>\nhm</think>\n<tool_call>\n{}\n</tool_call>"
    )
    tok.encode_special_tokens = True
    split = tok.encode(text).ids
    assert tok.token_to_id("<|im_start|>") not in split
    assert tok.token_to_id("</think>") in split
    assert tok.token_to_id("</tool_call>") in split
    assert tok.decode(split) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_byte_level_round_trip(text: str) -> None:
    # special-token text (e.g. "<|pad|>", which hypothesis draws from the package's literals)
    # encodes to its special id; decode drops those unless asked to keep them (the markers,
    # not special, it keeps)
    tok = _shared_tokenizer()
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text
    ordinary = text
    while any(special in ordinary for special in SPECIAL_TOKENS):  # (a removal can join one)
        for special in SPECIAL_TOKENS:
            ordinary = ordinary.replace(special, "")
    assert tok.decode(tok.encode(ordinary).ids) == ordinary


@functools.cache
def _shared_tokenizer() -> Tokenizer:
    return build_tokenizer(VOCAB)


def test_training_is_deterministic_across_processes() -> None:
    code = (
        "from tinker_actors.local._tokenizer import build_tokenizer;"
        f"import hashlib; print(hashlib.sha256(build_tokenizer({VOCAB}).to_str().encode()).hexdigest())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(runs) == 1


def test_cache_dir_is_reused(tmp_path: Path) -> None:
    first = ensure_tokenizer_dir(tmp_path, VOCAB)
    stamp = (first / "tokenizer.json").stat().st_mtime_ns
    second = ensure_tokenizer_dir(tmp_path, VOCAB)
    assert first == second
    assert (second / "tokenizer.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging left behind


def test_official_client_loader_reads_it_offline(
    tok_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers comes with tinker")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    auto = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
    ours = load_tokenizer(tok_dir)
    text = "Q: What is 12 + 30? A: 42"
    assert auto.encode(text, add_special_tokens=False) == ours.encode(text).ids
    assert auto.eos_token == EOS_TOKEN
    assert auto.decode(ours.encode(text).ids) == text


def test_too_small_vocab_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        build_tokenizer(100)


def test_catalogue_lookup() -> None:
    assert lookup_model("local/tiny").d_model == 128
    assert lookup_model("local/tiny:peft") is CATALOGUE["local/tiny"]
    with pytest.raises(UnknownModelError, match="local/small"):
        lookup_model("Qwen/Qwen3-8B")
