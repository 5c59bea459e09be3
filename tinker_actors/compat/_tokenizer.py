"""``get_tokenizer()`` as 0.38 has it: a ``transformers`` tokenizer, from the hub if need be.

Resolution order:

1. the offline paths of :func:`tinker_actors.get_tokenizer` (a local directory such as the one
   the local server reports as ``tokenizer_id``, a local directory named like the model, or
   the Hugging Face cache), turned into a ``PreTrainedTokenizerFast``;
2. otherwise, unless ``HF_HUB_OFFLINE`` is set, ``AutoTokenizer.from_pretrained`` on the same
   resolved id, which downloads it as the official client does (``trust_remote_code`` and the
   pinned revision only for the ids 0.38 pins).

Offline and not found, the error says how to make the tokenizer available.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

from tinker_actors.tokenizer import (
    REMOTE_CODE_REVISIONS,
    TokenizerUnavailableError,
    get_tokenizer,
    resolve_tokenizer_id,
)

__all__ = ["load_hf_tokenizer"]

_TRUE = frozenset({"1", "true", "yes", "on"})


def _offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.lru_cache(maxsize=32)
def load_hf_tokenizer(model_name: str, tokenizer_id: str | None = None) -> Any:
    """Return the ``transformers`` tokenizer of ``model_name`` (cached per name and id).

    Raises:
        TokenizerUnavailableError: not available offline, and downloading is off or failed.
    """
    try:
        return get_tokenizer(model_name, tokenizer_id).to_transformers()
    except TokenizerUnavailableError as offline_error:
        if _offline():
            raise
        resolved = resolve_tokenizer_id(model_name, tokenizer_id)
        try:
            transformers = importlib.import_module("transformers")
        except ImportError:
            raise offline_error from None
        kwargs: dict[str, Any] = {}
        revision = REMOTE_CODE_REVISIONS.get(resolved)
        if revision is not None:
            kwargs = {"trust_remote_code": True, "revision": revision}
        try:
            return transformers.AutoTokenizer.from_pretrained(resolved, **kwargs)
        except Exception as exc:
            raise TokenizerUnavailableError(
                f"could not load the tokenizer {resolved!r} offline ({offline_error}) nor "
                f"download it ({type(exc).__name__}: {exc})"
            ) from exc
