"""The local server's base models: one catalogue shared by every backend.

A client written against ``local/tiny`` runs unchanged on the null backend (instant, shaped
results) and on the torch backend (a real seeded transformer), because both read their
architecture, context length and tokenizer from here.

Example::

    spec = lookup_model("local/tiny")
    spec.context_length, spec.vocab_size       # (1024, 4096)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CATALOGUE", "BaseModelSpec", "UnknownModelError", "lookup_model"]


@dataclass(frozen=True, kw_only=True)
class BaseModelSpec:
    """A base model the local server can train and sample.

    Attributes:
        name: the ``base_model`` string clients pass (e.g. ``local/tiny``).
        context_length: the longest prompt + completion, in tokens.
        vocab_size: tokenizer and embedding size; the tokenizer is trained to exactly this size.
        d_model, n_layers, n_heads, d_ff: transformer shape (used by the torch backend).
        seed: weights are initialised from this seed, so every machine has the same base model.
        arch: the architecture label reported by ``get_info``.
    """

    name: str
    context_length: int
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    seed: int
    arch: str = "local-transformer"


CATALOGUE: MappingProxyType[str, BaseModelSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            BaseModelSpec(
                name="local/tiny",
                context_length=1024,
                vocab_size=4096,
                d_model=128,
                n_layers=2,
                n_heads=4,
                d_ff=384,
                seed=1,
            ),
            BaseModelSpec(
                name="local/small",
                context_length=2048,
                vocab_size=4096,
                d_model=256,
                n_layers=4,
                n_heads=8,
                d_ff=768,
                seed=2,
            ),
        )
    }
)


class UnknownModelError(LookupError):
    """The requested base model is not in the local catalogue."""


def lookup_model(name: str) -> BaseModelSpec:
    """Return the spec for ``name`` (a ``:suffix`` is ignored, as the SDK does for tokenizers).

    Raises:
        UnknownModelError: with the list of models that exist.
    """
    spec = CATALOGUE.get(name.split(":", 1)[0])
    if spec is None:
        known = ", ".join(sorted(CATALOGUE))
        raise UnknownModelError(f"unknown base model {name!r}; the local server has: {known}")
    return spec
