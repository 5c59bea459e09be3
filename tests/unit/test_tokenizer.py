"""get_tokenizer: local directories, name resolution, the offline Hugging Face cache."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tinker_actors.errors import InvalidInputError
from tinker_actors.tokenizer import (
    LLAMA3_TOKENIZER_ID,
    Tokenizer,
    TokenizerUnavailableError,
    get_tokenizer,
    resolve_tokenizer_id,
)

pytest.importorskip("tokenizers")

from tinker_actors.local._tokenizer import ensure_tokenizer_dir

TEXT = "Hello world! 12 + 30 = 42\n\tdef f(x): return x"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tokenizer_dir(tmp_path_factory.mktemp("tok"), 512)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test: loading must be offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("get_tokenizer tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _fake_hub_cache(root: Path, repo_id: str, source: Path, revision: str = "main") -> None:
    """Lay out ``source``'s tokenizer files as the hub cache stores a snapshot of ``repo_id``."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567" if revision == "main" else revision
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, snapshot / name)
    if revision == "main":
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)


# -- name resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "tokenizer_id", "expected"),
    [
        ("Qwen/Qwen3-8B", None, "Qwen/Qwen3-8B"),
        ("Qwen/Qwen3-8B:peft:131072", None, "Qwen/Qwen3-8B"),
        ("meta-llama/Llama-3.1-8B-Instruct", None, LLAMA3_TOKENIZER_ID),
        ("meta-llama/Llama-3.3-70B:x", None, LLAMA3_TOKENIZER_ID),
        ("meta-llama/Llama-2-7b", None, "meta-llama/Llama-2-7b"),
        ("deepseek-ai/DeepSeek-V3.1/base", None, "deepseek-ai/DeepSeek-V3.1"),
        ("moonshotai/Kimi-K2.5-Text-Only", None, "moonshotai/Kimi-K2.5"),
        ("anything", "org/tok", "org/tok"),
        ("meta-llama/Llama-3.1-8B", "org/tok", "org/tok"),
        ("local/tiny", "/abs/dir", "/abs/dir"),
        ("local/tiny", "moonshotai/Kimi-K2.5-Text-Only", "moonshotai/Kimi-K2.5"),
    ],
)
def test_resolution_rules(model: str, tokenizer_id: str | None, expected: str) -> None:
    assert resolve_tokenizer_id(model, tokenizer_id) == expected


@pytest.mark.parametrize(("model", "tokenizer_id"), [("", None), (None, None), ("m", "")])
def test_bad_names_are_refused(model: object, tokenizer_id: object) -> None:
    with pytest.raises(InvalidInputError):
        get_tokenizer(model, tokenizer_id)  # type: ignore[arg-type]


# -- local directories ----------------------------------------------------------------------------


def test_local_directory_round_trips(tok_dir: Path) -> None:
    tok = get_tokenizer("local/tiny", str(tok_dir))
    assert isinstance(tok, Tokenizer)
    ids = tok.encode(TEXT)
    assert ids
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == TEXT
    assert tok.vocab_size == 512
    assert tok.eos_token == "<|endoftext|>"
    assert tok.eos_token_id == tok.token_to_id("<|endoftext|>")
    assert tok.pad_token_id == tok.token_to_id("<|pad|>")
    assert tok.token_to_id("no-such-token-xyz") is None
    assert str(tok_dir) in repr(tok)


def test_a_tokenizer_json_file_loads_too(tok_dir: Path) -> None:
    tok = get_tokenizer("local/tiny", str(tok_dir / "tokenizer.json"))
    assert tok.decode(tok.encode(TEXT)) == TEXT


def test_loads_are_cached(tok_dir: Path) -> None:
    first = get_tokenizer("local/tiny", str(tok_dir))
    assert get_tokenizer("other/name", str(tok_dir)) is first


def test_missing_or_corrupt_local_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(TokenizerUnavailableError, match=r"tokenizer\.json"):
        get_tokenizer("local/tiny", str(tmp_path / "nowhere"))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerUnavailableError, match=r"not a valid tokenizer\.json"):
        get_tokenizer("local/tiny", str(tmp_path))


def test_encode_and_decode_check_their_input(tok_dir: Path) -> None:
    tok = get_tokenizer("local/tiny", str(tok_dir))
    with pytest.raises(TypeError):
        tok.encode([1, 2])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="token ids"):
        tok.decode([1, -2])
    with pytest.raises(InvalidInputError, match="token ids"):
        tok.decode(["a"])  # type: ignore[list-item]


def test_to_transformers_gives_the_same_ids(tok_dir: Path) -> None:
    pytest.importorskip("transformers")
    tok = get_tokenizer("local/tiny", str(tok_dir))
    hf = tok.to_transformers()
    assert hf.encode(TEXT, add_special_tokens=False) == tok.encode(TEXT, add_special_tokens=False)
    assert hf.eos_token == "<|endoftext|>"
    assert hf.decode(tok.encode(TEXT)) == TEXT


# -- the offline hub cache ------------------------------------------------------------------------


def test_hub_cache_is_read_offline(tok_dir: Path, tmp_path: Path) -> None:
    _fake_hub_cache(tmp_path, "acme/model", tok_dir)
    tok = get_tokenizer("acme/model/fp8:131072", cache_dir=tmp_path)
    assert tok.name == "acme/model"
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.eos_token == "<|endoftext|>"


def test_llama3_reads_the_mapped_id_from_the_cache(tok_dir: Path, tmp_path: Path) -> None:
    _fake_hub_cache(tmp_path, LLAMA3_TOKENIZER_ID, tok_dir)
    tok = get_tokenizer("meta-llama/Llama-3.1-8B", cache_dir=tmp_path)
    assert tok.name == LLAMA3_TOKENIZER_ID


def test_hub_cache_honours_hf_hub_cache(
    tok_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_hub_cache(tmp_path, "acme/env-model", tok_dir)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert get_tokenizer("acme/env-model").name == "acme/env-model"


def test_missing_from_the_cache_explains_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(TokenizerUnavailableError) as info:
        get_tokenizer("acme/absent", cache_dir=tmp_path)
    message = str(info.value)
    assert "never downloads" in message
    assert "hf download acme/absent tokenizer.json" in message
    assert str(tmp_path) in message
    assert isinstance(info.value, InvalidInputError)


def test_remote_code_tokenizers_name_their_pinned_revision(tmp_path: Path) -> None:
    with pytest.raises(TokenizerUnavailableError, match="4d01dfe0332d63057c186e0b262165819efb6611"):
        get_tokenizer("moonshotai/Kimi-K2.5-Text-Only", cache_dir=tmp_path)


def test_pinned_revision_is_read_when_cached(tok_dir: Path, tmp_path: Path) -> None:
    revision = "f831ab66814297da540d832a5235f8e904f29d06"
    _fake_hub_cache(tmp_path, "moonshotai/Kimi-K3", tok_dir, revision=revision)
    assert get_tokenizer("moonshotai/Kimi-K3", cache_dir=tmp_path).name == "moonshotai/Kimi-K3"


@pytest.mark.parametrize("name", ["TML/secret-model", "thinkingmachines/x"])
def test_private_tokenizers_need_tml_tokenizers(name: str) -> None:
    with pytest.raises(TokenizerUnavailableError, match="tml_tokenizers"):
        get_tokenizer(name)
