"""Property: every wire Struct survives JSON encode -> decode unchanged.

Strategies are derived from each Struct's msgspec type information, so a new field or a new
Struct is covered without editing this file. Values a Struct's own validation refuses are
discarded; a few fields whose valid values are narrow (paths, modes) get focused strategies so
that most generated examples are valid.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
from typing import Any

import msgspec
import msgspec.inspect as mi
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    CustomLossInput,
    ModelInput,
    RequestStruct,
    TensorData,
    json_dec_hook,
    json_enc_hook,
)

MODULES = (
    "_admin",
    "_auth",
    "_checkpoints",
    "_custom_loss",
    "_futures",
    "_optimizer",
    "_sampling",
    "_service",
    "_session",
    "_telemetry",
    "_training",
)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
DATETIMES = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)
TINKER_PATHS = st.builds(
    "tinker://{}/{}/{}".format,
    st.from_regex(r"[a-z0-9:]{1,8}", fullmatch=True),
    st.sampled_from(["weights", "sampler_weights", "external_weights"]),
    st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True),
)
PROMPTS = st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=8).map(ModelInput.from_ints)

CUSTOM_LOSS_INPUTS = st.builds(
    lambda first_rank, others: [
        CustomLossInput(name="logprobs", rank=first_rank),
        *(CustomLossInput(name=n, rank=r) for n, r in others.items()),
    ],
    st.sampled_from([1, 2]),
    st.dictionaries(
        st.from_regex(r"x[a-z0-9_]{0,8}", fullmatch=True), st.sampled_from([0, 1, 2]), max_size=15
    ),
)

# Field names whose useful values are narrow.
FIELD_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "path": TINKER_PATHS,
    "model_path": TINKER_PATHS,
    "source_path": TINKER_PATHS,
    "tinker_path": TINKER_PATHS,
    "ttl_seconds": st.none() | st.integers(3600, 315_576_000),
    "name": st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    "prompt": PROMPTS,
    "inputs": CUSTOM_LOSS_INPUTS,
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "top_k": st.sampled_from([-1, 1, 50]),
    "limit": st.integers(1, 200),
    "stop": st.none()
    | TEXT
    | st.lists(TEXT, max_size=3)
    | st.lists(st.integers(0, 2**31), max_size=3),
}


def _tensor_data() -> st.SearchStrategy[TensorData]:
    arrays = st.lists(st.integers(-1, 100), min_size=1, max_size=6).map(
        lambda v: np.array(v, dtype=np.int64)
    )
    return arrays.map(TensorData.from_numpy)


def strategy_for(t: mi.Type, field_name: str | None = None) -> st.SearchStrategy[Any]:
    """A strategy producing values of msgspec type ``t``."""
    # Overrides apply to scalar fields, and to ``prompt`` (a ModelInput, tested elsewhere).
    if field_name in FIELD_OVERRIDES and (
        field_name in {"prompt", "inputs"} or not isinstance(t, mi.StructType)
    ):
        return FIELD_OVERRIDES[field_name]
    if isinstance(t, mi.UnionType):
        return st.one_of(*(strategy_for(member, field_name) for member in t.types))
    if isinstance(t, mi.StructType):
        return struct_strategy(t.cls)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        return st.integers(0, 2**31) if field_name and "count" in field_name else INT64
    if isinstance(t, mi.FloatType):
        return FLOATS
    if isinstance(t, mi.StrType):
        return TEXT
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.DateTimeType):
        return DATETIMES
    if isinstance(t, mi.AnyType):
        return JSON_VALUES
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return st.lists(strategy_for(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(strategy_for(t.key_type), strategy_for(t.value_type), max_size=3)
    if isinstance(t, mi.CustomType) and t.cls is TensorData:
        return _tensor_data()
    raise NotImplementedError(f"no strategy for {t!r}")


def _build(cls: type[msgspec.Struct], kwargs: dict[str, Any]) -> msgspec.Struct:
    try:
        return cls(**kwargs)
    except InvalidInputError:
        reject()


def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[msgspec.Struct]:
    """A strategy producing instances of ``cls`` that pass its validation."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    required = {f.name: strategy_for(f.type, f.name) for f in info.fields if f.required}
    # Optional fields are either left out (their default, UNSET included) or generated.
    optional = {f.name: strategy_for(f.type, f.name) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: _build(cls, kw))


def _struct_types() -> list[type[msgspec.Struct]]:
    found: dict[str, type[msgspec.Struct]] = {}
    for name in MODULES:
        module = importlib.import_module(f"tinker_actors.types.{name}")
        for export in module.__all__:
            obj = getattr(module, export)
            if inspect.isclass(obj) and issubclass(obj, msgspec.Struct):
                found[obj.__qualname__] = obj
    return [found[k] for k in sorted(found)]


ALL_STRUCTS = _struct_types()
REQUEST_STRUCTS = [c for c in ALL_STRUCTS if issubclass(c, RequestStruct)]
LENIENT = settings(
    max_examples=300, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)


def test_catalogue_covers_every_module() -> None:
    assert len(ALL_STRUCTS) > 100
    assert {c.__module__.rsplit(".", 1)[1] for c in ALL_STRUCTS} == set(MODULES)


@pytest.mark.parametrize("cls", ALL_STRUCTS, ids=lambda c: c.__name__)
@settings(
    max_examples=3,
    phases=[Phase.generate],
    database=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(data=st.data())
def test_strategy_can_build_every_struct(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    # Guards the property tests below against strategies that only ever get rejected
    # (hypothesis fails this test as unsatisfiable if no valid instance can be drawn).
    assert isinstance(data.draw(struct_strategy(cls)), cls)


@LENIENT
@given(st.sampled_from(ALL_STRUCTS).flatmap(struct_strategy))
def test_every_struct_round_trips(value: msgspec.Struct) -> None:
    data = msgspec.json.encode(value, enc_hook=json_enc_hook)
    decoded = msgspec.json.decode(data, type=type(value), dec_hook=json_dec_hook)
    assert decoded == value
    # Encoding is deterministic, so a second trip yields the same bytes.
    assert msgspec.json.encode(decoded, enc_hook=json_enc_hook) == data


@LENIENT
@given(st.sampled_from(REQUEST_STRUCTS).flatmap(struct_strategy))
def test_requests_never_send_null_for_unset_fields(value: msgspec.Struct) -> None:
    encoded = msgspec.json.decode(msgspec.json.encode(value, enc_hook=json_enc_hook))
    info = mi.type_info(type(value))
    assert isinstance(info, mi.StructType)
    for field in info.fields:
        if (
            not field.required
            and field.default is mi.NODEFAULT
            and field.default_factory is mi.NODEFAULT
        ):
            # An UNSET-default field: absent from the JSON or a real value, never null.
            assert encoded.get(field.encode_name, "absent") is not None
