"""Bad values are refused where they are built, naming the value (issue 14).

Each case here was accepted before and either changed a value silently (``from_ints([1.5])``
sent token 1; float64 ``target_tokens`` went out as float32 and the server refused them) or
reached the server as something it refuses (NaN sent as ``null``), which for a training client
also breaks its request order. Lossless conversions stay silent (``filterwarnings = error``
makes any warning fail these tests).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    AdamParams,
    Datum,
    DimuonParams,
    EncodedTextChunk,
    ImageChunk,
    LoraConfig,
    ModelInput,
    SamplingParams,
    TensorData,
)

# -- token ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "named"),
    [
        ([1.5, 2.5], r"tokens\[0\] = 1\.5 is not a token id: it has a fractional part"),
        ([1, True], r"tokens\[1\] = True is not a token id: it is a bool"),
        ([np.bool_(False)], r"tokens\[0\] = .*False.* it is a bool"),
        ([float("nan")], r"= nan is not a token id: it is not a finite number"),
        ([float("inf")], r"= inf is not a token id"),
        ([2**63], r"= 9223372036854775808 is not a token id: it does not fit int32"),
        ([2**31], r"= 2147483648 is not a token id: it does not fit int32"),
        ([-(2**31) - 1], r"does not fit int32"),
        (["7"], r"= '7' is not a token id: it is a str"),
        ([None], r"= None is not a token id"),
        (np.array([1.0, 2.5]), r"tokens\[1\] = 2\.5"),
    ],
)
def test_from_ints_refuses_what_is_not_a_token_id(tokens: object, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        ModelInput.from_ints(tokens)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=named):
        EncodedTextChunk(tokens=tokens)  # type: ignore[arg-type]


def test_from_ints_converts_lossless_values_to_ints() -> None:
    mi = ModelInput.from_ints([1.0, np.int64(2), np.int32(3), 2**31 - 1, -(2**31)])  # type: ignore[list-item]
    assert mi.to_ints() == [1, 2, 3, 2**31 - 1, -(2**31)]
    assert all(type(t) is int for t in mi.to_ints())
    assert ModelInput.from_ints(np.array([4, 5])).to_ints() == [4, 5]
    assert ModelInput.from_ints((6, 7)).to_ints() == [6, 7]
    ids = [1, 2]
    held = ModelInput.from_ints(ids)
    ids.append(3)  # from_ints copies, so the caller's list stays theirs
    assert held.to_ints() == [1, 2]


def test_token_ids_are_checked_on_every_path() -> None:
    with pytest.raises(InvalidInputError, match=r"1\.5"):
        ModelInput.from_ints([1]).append_int(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"must be 1-D"):
        ModelInput.from_ints(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(msgspec.ValidationError, match="int32"):
        msgspec.json.decode(
            b'{"chunks":[{"type":"encoded_text","tokens":[4294967296]}]}', type=ModelInput
        )
    with pytest.raises(InvalidInputError, match=r"chunks\[0\] must be"):
        ModelInput(chunks=[[1, 2]])  # type: ignore[list-item]
    assert ModelInput(chunks=[{"type": "encoded_text", "tokens": [1]}]).to_ints() == [1]  # type: ignore[list-item]


# -- tensors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: TensorData(data=[1e20], dtype="int64"), r"1e\+20 at index 0 is not an integer"),
        (lambda: TensorData(data=[1.0, 2.5], dtype="int64"), r"2\.5 at index 1"),
        (lambda: TensorData(data=[2**70], dtype="int64"), r"1180591620717411303424"),
        (lambda: TensorData(data=[1e40], dtype="float32"), r"1e\+40 at index 0 does not fit"),
        (lambda: TensorData(data=[2**24 + 1], dtype="float32"), r"16777217 at index 0"),
        (lambda: TensorData.from_numpy(np.array([0.0, 1e39])), r"1e\+39 at index 1"),
        (lambda: TensorData(data=[True], dtype="float32"), r"dtype bool cannot be sent"),
    ],
)
def test_tensor_values_that_would_change_are_refused(build: object, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        build()  # type: ignore[operator]


def test_lossless_tensor_conversions_are_silent() -> None:
    assert TensorData.from_numpy(np.array([0.5, 2.0])).dtype == "float32"
    assert TensorData.from_numpy(np.array([3], dtype=np.int16)).tolist() == [3]
    assert TensorData(data=[1.0, -2.0], dtype="int64").data == [1, -2]
    nan = TensorData(data=[math.nan], dtype="float32")  # NaN is a float32 value, not a change
    assert math.isnan(nan.data[0])


# -- Datum ---------------------------------------------------------------------------------------


MI = ModelInput.from_ints([1, 2, 3])


def test_float_target_tokens_are_sent_as_int64() -> None:
    for value in (np.array([1.0, 2.0, 3.0]), np.array([1, 2, 3], dtype=np.float32)):
        target = Datum(MI, {"target_tokens": value}).loss_fn_inputs["target_tokens"]
        assert (target.dtype, target.tolist()) == ("int64", [1, 2, 3])


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (np.array([1.0, 2.5, 3.0]), r"2\.5 at index 1 is not an integer"),
        (np.array([1.0, np.nan, 3.0]), r"nan at index 1"),
        ([1.5, 2, 3], r"1\.5 at index 0"),
        ([[1.0, 2.0], [3.0, 0.5]], r"0\.5 at index \[1, 1\]"),
    ],
)
def test_fractional_target_tokens_are_refused(value: object, named: str) -> None:
    with pytest.raises(InvalidInputError, match=r"loss_fn_inputs\['target_tokens'\]: " + named):
        Datum(MI, {"target_tokens": value})


def test_integer_arrays_under_float_keys_become_float32() -> None:
    weights = Datum(MI, {"weights": np.array([1, 0, 1])}).loss_fn_inputs["weights"]
    assert (weights.dtype, weights.tolist()) == ("float32", [1.0, 0.0, 1.0])
    with pytest.raises(InvalidInputError, match="beyond"):
        Datum(MI, {"advantages": np.array([2**25, 0, 0])})
    mask = Datum(MI, {"mask": np.array([1, 0, 1])}).loss_fn_inputs["mask"]  # not a known key
    assert mask.dtype == "int64"


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: SamplingParams(max_tokens=1.5), r"max_tokens must be an integer, got 1\.5"),
        (lambda: SamplingParams(max_tokens=True), "max_tokens must be an integer, got True"),
        (lambda: SamplingParams(temperature=math.nan), "temperature must be a finite number"),
        (lambda: SamplingParams(top_p=math.inf), "top_p must be a finite number"),
        (lambda: SamplingParams(seed="1"), "seed must be an integer"),
        (lambda: AdamParams(learning_rate=math.nan), "learning_rate must be a finite number"),
        (lambda: AdamParams(learning_rate="1e-4"), "learning_rate must be a number, got str"),
        (lambda: AdamParams(learning_rate=-1e-4), "learning_rate must be >= 0"),
        (lambda: AdamParams(beta2=1.0), r"beta2 must be in \[0, 1\)"),
        (lambda: AdamParams(eps=-1.0), "eps must be >= 0"),
        (lambda: DimuonParams(learning_rate=True), "learning_rate must be a number"),
        (lambda: LoraConfig(rank=8.5), "rank must be an integer"),
        (lambda: LoraConfig(rank=True), "rank must be an integer"),
        (lambda: LoraConfig(rank=8, train_mlp=1), "train_mlp must be True or False"),
        (lambda: ImageChunk(data="not base64!", format="png"), "must be base64"),
        (lambda: ImageChunk(data=b"x", format="png", expected_tokens=-1), "must be >= 0"),
        (lambda: ImageChunk(data=b"x", format="png", expected_tokens=True), "got True"),
    ],
)
def test_parameters_refuse_values_the_server_would_refuse(build: object, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        build()  # type: ignore[operator]


def test_parameters_normalise_like_0_38() -> None:
    params = SamplingParams(max_tokens=5.0, temperature=0, top_p=1)  # type: ignore[arg-type]
    assert (params.max_tokens, params.temperature, params.top_p) == (5, 0.0, 1.0)
    assert type(params.max_tokens) is int
    assert type(params.temperature) is float
    assert msgspec.json.encode(AdamParams(learning_rate=1)).startswith(b'{"learning_rate":1.0,')
    assert LoraConfig(rank=np.int64(8)).rank == 8  # type: ignore[arg-type]
    assert ImageChunk(data=b"x", format="png", expected_tokens=2.0).expected_tokens == 2  # type: ignore[arg-type]
