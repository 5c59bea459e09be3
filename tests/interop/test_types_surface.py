"""tinker_actors.types holds every public name of tinker.types 0.38, with the same fields.

For every class of the official namespace (pydantic model or dataclass) the counterpart here must
have the same field names and defaults, and take positional arguments in the same order where
0.38 does (its dataclasses). Differences are allowed only where ``DIFFERENCES`` lists them with
the reason; a difference that is fixed must be removed from the list (the test checks that each
listed one still exists).
"""

from __future__ import annotations

import dataclasses
import inspect
import types as pytypes
import typing
from typing import Any

import msgspec
import numpy as np
import pytest

tinker = pytest.importorskip(
    "tinker", reason="the official SDK (tinker==0.38.0) is an interop-only peer"
)
pydantic = pytest.importorskip("pydantic")

import tinker.types as official  # noqa: E402

import tinker_actors.types as ours  # noqa: E402
from tinker_actors.types import TensorData  # noqa: E402

pytestmark = pytest.mark.interop

OFFICIAL_NAMES = sorted(
    name
    for name, value in vars(official).items()
    if not name.startswith("_")
    and not isinstance(value, pytypes.ModuleType)
    and name != "annotations"  # ``from __future__ import annotations`` leaks into the namespace
)

REQUIRED = "<required>"


@dataclasses.dataclass(frozen=True)
class Tag:
    """Our tagged Structs' discriminator: always written, so a match for a required literal."""

    value: str


# The one place that lists how our fields deliberately differ from 0.38's, and why.
# "+name": a field only we have; "-name": a field only 0.38 has; "name": a different default.
DIFFERENCES: dict[str, dict[str, str]] = {
    "AdamOptimizerConfig": {
        "+version": "inherited from the open OptimizerConfig base; must stay unset, never sent"
    },
    "ForwardBackwardRequest": {
        "+forward_only": "forward and forward_backward share this one protobuf message",
        "seq_id": "0 means unset on the protobuf wire (varint); None is accepted and becomes 0",
    },
    "OptimStepRequest": {
        "-optim_params": "a read-only property here; 0.38 also takes it under the two wire names",
        "+adam_params": "the wire field of Adam steps (0.38 accepts it as an alias)",
        "+optimizer_params": "the wire field of other families (0.38 accepts it as an alias)",
    },
    "PromptProvenanceSpan": {"+type": "the tag of the span union (a class attribute in 0.38)"},
    "SampledProvenanceSpan": {"+type": "the tag of the span union (a class attribute in 0.38)"},
    "SampledSequence": {
        "sequence_id": "optional: a sequence decoded without its submission has no id yet",
        "tokens_np": "an empty int32 array rather than None, so tokens_np is always an array",
    },
    "ModelInput": {"chunks": "defaults to no chunks (0.38 requires the argument)"},
    "ModelData": {
        "+vocab_size": "an extension the local server reports; the client checks token ids",
        "+max_context_length": "an extension the local server reports; the client checks lengths",
    },
    "CreateSessionRequest": {
        "tags": "defaults to [] (0.38 requires it)",
        "user_metadata": "defaults to {} (0.38 requires it)",
    },
    "RequestFailedResponse": {
        "category": "defaults to 'unknown' so an older server's answer without it still decodes"
    },
    **{
        name: {"type": "a response's literal type is written as the literal, not null"}
        for name in (
            "GetInfoResponse",
            "LoadWeightsResponse",
            "SaveWeightsResponse",
            "SaveWeightsForSamplerResponse",
            "SaveWeightsForSamplerResponseInternal",
            "SaveWeightsExternalResponse",
            "SaveWeightsExternalResponseInternal",
            "UnloadModelResponse",
        )
    },
}


def _normal(value: Any) -> Any:
    """A default, comparable across pydantic models, msgspec Structs and dataclasses."""
    if value is msgspec.UNSET:
        return None
    if isinstance(value, np.ndarray):
        return ("ndarray", str(value.dtype), value.tolist())
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    return value


def _official_fields(cls: type) -> dict[str, Any] | None:
    if isinstance(cls, type) and issubclass(cls, pydantic.BaseModel):
        return {
            name: REQUIRED if info.is_required() else info.get_default(call_default_factory=True)
            for name, info in cls.model_fields.items()
        }
    if dataclasses.is_dataclass(cls) and not cls.__dataclass_params__.init:  # type: ignore[attr-defined]
        # TensorData: a hand-written __init__ is the constructor that matters.
        params = inspect.signature(cls).parameters
        return {n: REQUIRED if p.default is p.empty else p.default for n, p in params.items()}
    if dataclasses.is_dataclass(cls):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name.startswith("_"):
                continue
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = REQUIRED
        return out
    return None


def _our_fields(cls: type) -> dict[str, Any]:
    if issubclass(cls, msgspec.Struct):
        out: dict[str, Any] = {}
        for f in msgspec.structs.fields(cls):
            if f.default is not msgspec.NODEFAULT:
                out[f.name] = f.default
            elif f.default_factory is not msgspec.NODEFAULT:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = REQUIRED
        config = cls.__struct_config__
        if config.tag_field is not None:
            out[config.tag_field] = Tag(config.tag)
        return out
    if dataclasses.is_dataclass(cls):
        return {
            f.name: (
                f.default
                if f.default is not dataclasses.MISSING
                else f.default_factory()
                if f.default_factory is not dataclasses.MISSING
                else REQUIRED
            )
            for f in dataclasses.fields(cls)
        }
    if cls is TensorData:
        params = inspect.signature(TensorData).parameters
        return {n: p.default for n, p in params.items() if p.kind is not p.KEYWORD_ONLY}
    raise AssertionError(f"{cls!r} is neither a Struct, a dataclass nor TensorData")


CLASSES = [
    name
    for name in OFFICIAL_NAMES
    if isinstance(getattr(official, name), type) and _official_fields(getattr(official, name))
]


def _differences(name: str) -> list[str]:
    theirs = _official_fields(getattr(official, name))
    assert theirs is not None
    mine = _our_fields(getattr(ours, name))
    found = [f"+{f}" for f in mine.keys() - theirs.keys()]
    found += [f"-{f}" for f in theirs.keys() - mine.keys()]
    for field in theirs.keys() & mine.keys():
        a, b = theirs[field], mine[field]
        if isinstance(b, Tag):
            # A literal field of 0.38, required or defaulting to the tag, is our tag.
            if a is not REQUIRED and a != b.value:
                found.append(field)
        elif (a is REQUIRED) != (b is REQUIRED) or _normal(a) != _normal(b):
            found.append(field)
    return sorted(found)


def test_the_official_namespace_is_what_this_test_expects() -> None:
    # 153 names in 0.38, one of them the ``annotations`` future import.
    assert len(OFFICIAL_NAMES) == 152
    assert tinker.__version__ == "0.38.0"


@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_every_official_name_exists(name: str) -> None:
    assert hasattr(ours, name), f"tinker_actors.types lacks {name}"
    assert name in ours.__all__


@pytest.mark.parametrize("name", CLASSES)
def test_fields_and_defaults_match_or_are_documented(name: str) -> None:
    found = _differences(name)
    allowed = DIFFERENCES.get(name, {})
    unexplained = [d for d in found if d not in allowed]
    assert not unexplained, f"{name}: undocumented differences {unexplained}"
    stale = [d for d in allowed if d not in found]
    assert not stale, f"{name}: DIFFERENCES lists {stale}, which no longer differ"


def test_every_documented_difference_names_an_official_class() -> None:
    assert set(DIFFERENCES) <= set(CLASSES)


def _positional(cls: type) -> list[str]:
    params = inspect.signature(cls).parameters.values()
    return [
        p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and not p.name.startswith("_")
    ]


POSITIONAL = [
    name
    for name in CLASSES
    if dataclasses.is_dataclass(getattr(official, name)) and _positional(getattr(official, name))
]


@pytest.mark.parametrize("name", POSITIONAL)
def test_positional_arguments_follow_0_38(name: str) -> None:
    theirs = _positional(getattr(official, name))
    mine = _positional(getattr(ours, name))
    assert mine[: len(theirs)] == theirs


def test_every_dataclass_with_positional_arguments_is_checked() -> None:
    # Datum, TensorData, SampledSequence, SampleResponse, ForwardBackward* ... take positional
    # arguments in 0.38; the provenance spans are keyword-only there and here.
    assert {"Datum", "TensorData", "SampledSequence", "ForwardBackwardOutput"} <= set(POSITIONAL)
    assert "PromptProvenanceSpan" not in POSITIONAL


ALIASES = [
    name
    for name in OFFICIAL_NAMES
    if not isinstance(getattr(official, name), type)
    and typing.get_origin(getattr(official, name)) is typing.Literal
]


@pytest.mark.parametrize("name", ALIASES)
def test_literal_aliases_have_the_same_values(name: str) -> None:
    assert typing.get_args(getattr(ours, name)) == typing.get_args(getattr(official, name))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ModelID", str),
        ("RequestID", str),
        ("LossFnInputs", dict[str, TensorData]),
        ("LossFnOutput", dict[str, TensorData]),
        ("ProvenanceSpans", list[ours.PromptProvenanceSpan | ours.SampledProvenanceSpan]),
    ],
)
def test_simple_aliases(name: str, expected: object) -> None:
    assert getattr(ours, name) == expected


def test_union_aliases_hold_our_counterparts() -> None:
    assert set(typing.get_args(ours.OptimParams)) == {ours.AdamParams, ours.DimuonParams}
    members = {t.__name__ for t in typing.get_args(ours.FutureRetrieveResponse)}
    assert members == {t.__name__ for t in typing.get_args(official.FutureRetrieveResponse)}
    chunk_kinds = typing.get_args(typing.get_args(official.ModelInputChunk)[0])
    assert {t.__name__ for t in typing.get_args(ours.ModelInputChunk)} == {
        t.__name__ for t in chunk_kinds
    }
