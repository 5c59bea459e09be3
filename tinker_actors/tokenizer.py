"""get_tokenizer: the tokenizer of a base model, loaded offline, never downloaded.

A training or sampling client knows its base model's name and, from ``get_info``, maybe a
``tokenizer_id``. :func:`get_tokenizer` turns those into a :class:`Tokenizer` (protocol.md §9.6):

* a local directory (the local server answers ``tokenizer_id`` with an absolute path) or a
  ``tokenizer.json`` file loads directly;
* otherwise the name is resolved like the official client does: cut at the first ``:``;
  ``meta-llama/Llama-3*`` uses ``thinkingmachineslabinc/meta-llama-3-instruct-tokenizer``;
  ``org/model/variant`` uses ``org/model``; ``TML/...`` and ``thinkingmachines/...`` need the
  private ``tml_tokenizers`` package. The result is read from the standard Hugging Face cache
  only (``HF_HUB_OFFLINE=1`` semantics), and a missing one is a
  :class:`TokenizerUnavailableError` that says how to fetch it once.

::

    tok = get_tokenizer("Qwen/Qwen3-8B")
    ids = tok.encode("Hello world", add_special_tokens=False)
    assert tok.decode(ids) == "Hello world"
    hf = tok.to_transformers()          # a PreTrainedTokenizerFast, if transformers is installed

Why our own small class rather than ``transformers`` objects: ``transformers`` is an optional,
heavy import (seconds), its ``AutoTokenizer`` may reach for the network, and a return type that
depends on what happens to be installed is hard to program against. :class:`Tokenizer` wraps a
``tokenizers.Tokenizer`` (the ``tokenizers`` extra) with the methods training code uses:
``encode``, ``decode``, special token ids, vocabulary size; and :meth:`Tokenizer.to_transformers`
gives the ``PreTrainedTokenizerFast`` over the same tokenizer (chat templates included) to code
written for the official client. Loads are cached (LRU, 32 entries).
"""

from __future__ import annotations

import functools
import importlib
import json
import operator
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast, final

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "LLAMA3_TOKENIZER_ID",
    "REMOTE_CODE_REVISIONS",
    "Tokenizer",
    "TokenizerUnavailableError",
    "get_tokenizer",
    "resolve_tokenizer_id",
]

#: Llama 3 models use this ungated copy of their tokenizer.
LLAMA3_TOKENIZER_ID: Final = "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"
#: Tokenizers that exist only as remote code, with the revision the official client pins.
REMOTE_CODE_REVISIONS: Final[dict[str, str]] = {
    "moonshotai/Kimi-K2-Thinking": "612681931a8c906ddb349f8ad0f582cb552189cd",
    "moonshotai/Kimi-K2.5": "4d01dfe0332d63057c186e0b262165819efb6611",
    "moonshotai/Kimi-K2.6": "b5aabbfb20227ed42becbf5541dbffd213942c58",
    "moonshotai/Kimi-K3": "f831ab66814297da540d832a5235f8e904f29d06",
}
_ALIASES: Final = {"moonshotai/Kimi-K2.5-Text-Only": "moonshotai/Kimi-K2.5"}
_PRIVATE_PREFIXES: Final = ("TML/", "thinkingmachines/")
_CACHE_SIZE: Final = 32


class TokenizerUnavailableError(InvalidInputError):
    """The tokenizer cannot be loaded offline; the message says how to make it available."""


@final
class Tokenizer:
    """A loaded tokenizer: text to token ids and back. Get one from :func:`get_tokenizer`.

    Attributes:
        name: what it was loaded from (a Hugging Face id or a local path).
    """

    __slots__ = ("_backend", "_config", "name")

    def __init__(self, backend: Any, *, name: str, config: dict[str, Any] | None = None) -> None:
        self._backend = backend
        self._config = config or {}
        self.name = name

    def __repr__(self) -> str:
        return f"<Tokenizer {self.name!r} vocab={self.vocab_size}>"

    @property
    def backend(self) -> Any:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return int(self._backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Return the token ids of ``text`` (with the model's BOS etc. unless told not to)."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        return list(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Return the text of ``ids``.

        Raises:
            InvalidInputError: ``ids`` holds something other than non-negative ints.
        """
        try:
            clean = [operator.index(i) for i in ids]
        except TypeError:
            clean = [-1]
        if any(i < 0 for i in clean):
            raise InvalidInputError(f"decode() takes token ids (a list of ints >= 0), got {ids!r}")
        return str(self._backend.decode(clean, skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        """Return the id of ``token``, or None if it is not in the vocabulary."""
        value = self._backend.token_to_id(token)
        return None if value is None else int(value)

    def _special(self, key: str) -> str | None:
        value = self._config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) else None

    @property
    def eos_token(self) -> str | None:
        """The end-of-sequence token (from ``tokenizer_config.json``), if declared."""
        return self._special("eos_token")

    @property
    def eos_token_id(self) -> int | None:
        """The end-of-sequence token's id, if declared."""
        token = self.eos_token
        return None if token is None else self.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        """The beginning-of-sequence token's id, if declared."""
        token = self._special("bos_token")
        return None if token is None else self.token_to_id(token)

    @property
    def pad_token_id(self) -> int | None:
        """The padding token's id, if declared."""
        token = self._special("pad_token")
        return None if token is None else self.token_to_id(token)

    def to_transformers(self) -> Any:
        """Return a ``transformers.PreTrainedTokenizerFast`` over this tokenizer.

        Special tokens and the chat template come from ``tokenizer_config.json``.

        Raises:
            TokenizerUnavailableError: ``transformers`` is not installed.
        """
        try:
            transformers = importlib.import_module("transformers")
        except ImportError as exc:
            raise TokenizerUnavailableError(
                "to_transformers() needs the transformers package: pip install transformers"
            ) from exc
        kwargs: dict[str, Any] = {
            key: value
            for key in ("bos_token", "eos_token", "pad_token", "unk_token")
            if (value := self._special(key)) is not None
        }
        template = self._config.get("chat_template")
        if isinstance(template, str):
            kwargs["chat_template"] = template
        return transformers.PreTrainedTokenizerFast(tokenizer_object=self._backend, **kwargs)


def resolve_tokenizer_id(model_name: str, tokenizer_id: str | None = None) -> str:
    """Return the Hugging Face id (or path) the tokenizer of ``model_name`` loads from.

    Raises:
        InvalidInputError: ``model_name`` is empty or not a string.
    """
    if not isinstance(model_name, str) or not model_name:
        raise InvalidInputError(f"model_name must be a non-empty string, got {model_name!r}")
    if tokenizer_id is not None:
        if not isinstance(tokenizer_id, str) or not tokenizer_id:
            raise InvalidInputError(
                f"tokenizer_id must be a non-empty string or None, got {tokenizer_id!r}"
            )
        return _ALIASES.get(tokenizer_id, tokenizer_id)
    name = model_name.split(":", 1)[0]
    if name.startswith("meta-llama/Llama-3"):
        return LLAMA3_TOKENIZER_ID
    if name.count("/") == 2:
        org, model, _variant = name.split("/")
        return f"{org}/{model}"
    return _ALIASES.get(name, name)


def get_tokenizer(
    model_name: str, tokenizer_id: str | None = None, *, cache_dir: str | Path | None = None
) -> Tokenizer:
    """Load the tokenizer of ``model_name`` offline (results cached, LRU 32).

    Args:
        model_name: the base model (``info.model_data.model_name`` or a sampler's base model).
        tokenizer_id: ``info.model_data.tokenizer_id``: a Hugging Face id or a local directory.
        cache_dir: the Hugging Face hub cache to read (default: ``HF_HUB_CACHE`` /
            ``HF_HOME/hub`` / ``~/.cache/huggingface/hub``).

    Raises:
        TokenizerUnavailableError: not in the cache (nothing is downloaded), the ``tokenizers``
            package is missing, or the tokenizer exists only as remote code or a private package.
        InvalidInputError: an empty name.
    """
    resolved = resolve_tokenizer_id(model_name, tokenizer_id)
    return _load(resolved, None if cache_dir is None else str(cache_dir))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load(resolved: str, cache_dir: str | None) -> Tokenizer:
    local = Path(resolved).expanduser()
    if os.path.isabs(resolved) or resolved.startswith((".", "~")) or local.exists():
        return _load_local(local)
    if resolved.startswith(_PRIVATE_PREFIXES):
        return _load_private(resolved)
    return _load_cached(resolved, cache_dir)


def _tokenizers_module() -> Any:
    try:
        return importlib.import_module("tokenizers")
    except ImportError as exc:
        raise TokenizerUnavailableError(
            "get_tokenizer needs the tokenizers package: pip install 'tinker-actors[tokenizers]'"
        ) from exc


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # special tokens are a convenience; the tokenizer itself still loads
    return config if isinstance(config, dict) else {}


def _from_file(tokenizer_json: Path, name: str) -> Tokenizer:
    tokenizers = _tokenizers_module()
    try:
        backend = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # the Rust side raises plain Exception for a corrupt file
        raise TokenizerUnavailableError(
            f"{tokenizer_json} is not a valid tokenizer.json ({exc}); re-fetch or rebuild it"
        ) from exc
    return Tokenizer(backend, name=name, config=_read_config(tokenizer_json.parent))


def _load_local(path: Path) -> Tokenizer:
    tokenizer_json = path / "tokenizer.json" if path.is_dir() else path
    if not tokenizer_json.is_file():
        raise TokenizerUnavailableError(
            f"no tokenizer at {path}: expected a directory holding tokenizer.json (Hugging Face "
            "layout) or a tokenizer.json file"
        )
    return _from_file(tokenizer_json, str(path))


def _load_private(tokenizer_id: str) -> Tokenizer:
    try:
        module = importlib.import_module("tml_tokenizers.tinker_tokenizers")
    except ImportError as exc:
        raise TokenizerUnavailableError(
            f"{tokenizer_id} is a Thinking Machines tokenizer: it needs the private tml_tokenizers "
            "package. Prefer building prompts with tml-renderers: "
            "https://pypi.org/project/tml-renderers/"
        ) from exc
    tokenizer = module.get_tinker_tokenizer(tokenizer_id)
    if tokenizer is None:
        raise TokenizerUnavailableError(f"tml_tokenizers has no tokenizer {tokenizer_id!r}")
    # tml_tokenizers returns its own tokenizer object; it is handed over as is.
    return cast("Tokenizer", tokenizer)


def _load_cached(tokenizer_id: str, cache_dir: str | None) -> Tokenizer:
    _tokenizers_module()
    revision = REMOTE_CODE_REVISIONS.get(tokenizer_id)
    hub = importlib.import_module("huggingface_hub")  # a dependency of tokenizers
    # try_to_load_from_cache only reads the cache; it never touches the network.
    found = hub.try_to_load_from_cache(
        tokenizer_id, "tokenizer.json", cache_dir=cache_dir, revision=revision
    )
    if isinstance(found, str) and Path(found).is_file():
        return _from_file(Path(found), tokenizer_id)
    where = cache_dir or str(hub.constants.HF_HUB_CACHE)
    if revision is not None:
        raise TokenizerUnavailableError(
            f"the tokenizer {tokenizer_id!r} exists only as remote code (revision {revision}); "
            "tinker_actors does not run remote code. Load it with transformers: "
            f"AutoTokenizer.from_pretrained({tokenizer_id!r}, revision={revision!r}, "
            "trust_remote_code=True)"
        )
    raise TokenizerUnavailableError(
        f"the tokenizer {tokenizer_id!r} is not in the Hugging Face cache ({where}) and "
        "tinker_actors never downloads. Fetch it once with "
        f"`hf download {tokenizer_id} tokenizer.json tokenizer_config.json` (or "
        "huggingface-cli download ...), point HF_HUB_CACHE / cache_dir at a cache that has it, "
        "or pass a local directory holding tokenizer.json as tokenizer_id"
    )
