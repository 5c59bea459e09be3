"""The fast forward_backward framing gives the very bytes of the general encoder.

``encode_request_body(req)`` frames text-and-dense-tensor datums with
``transport/proto/_request_fast.py`` and everything else with the general ``MessageWriter``
path; ``fast=False`` uses the general path for every datum (the encoder as it was before the fast
framing). Tokens may reach the encoder packed at construction (``from_ints`` of a list or of a
numpy array) or as a plain list packed at encode time; all must give the same bytes.
"""

from __future__ import annotations

import contextlib
import copy
import pickle

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_wire import INT32, names, requests

from tinker_actors.clients._checks import (
    BadTrainingInputError,
    ModelLimits,
    _check_tokens,
    check_forward_data,
)
from tinker_actors.errors import InvalidInputError
from tinker_actors.transport.proto import (
    decode_forward_backward_request,
    encode_forward_backward_request,
)
from tinker_actors.transport.proto._request import encode_request_body
from tinker_actors.transport.proto._request_fast import KnownTokens
from tinker_actors.types._datum import Datum
from tinker_actors.types._forward_backward import ForwardBackwardInput, ForwardBackwardRequest
from tinker_actors.types._model_input import EncodedTextChunk, ModelInput, packed_tokens
from tinker_actors.types._tensor import TensorData

BUILDS = ("from_ints list", "from_ints int64", "from_ints int32", "chunk list", "chunk array")


def _text(tokens: list[int], how: str) -> ModelInput:
    if how == "from_ints list":
        return ModelInput.from_ints(tokens)
    if how == "from_ints int64":
        return ModelInput.from_ints(np.array(tokens, dtype=np.int64))
    if how == "from_ints int32":
        return ModelInput.from_ints(np.array(tokens, dtype=np.int32))
    if how == "chunk list":
        return ModelInput(chunks=[EncodedTextChunk(tokens=tokens)])
    return ModelInput(chunks=[EncodedTextChunk(tokens=np.array(tokens, dtype=np.int64))])  # type: ignore[arg-type]


@st.composite
def text_datums(draw: st.DrawFn) -> Datum:
    """Datums the fast framing handles: text chunks built every way, dense tensors."""
    chunks: list[ModelInput] = [
        _text(draw(st.lists(INT32, max_size=40)), draw(st.sampled_from(BUILDS)))
        for _ in range(draw(st.integers(0, 3)))
    ]
    model_input = ModelInput(chunks=[c for mi in chunks for c in mi.chunks])
    inputs: dict[str, TensorData] = {}
    for name in draw(st.lists(names, max_size=3, unique=True)):
        n = draw(st.integers(0, 40))
        if draw(st.booleans()):
            arr = np.array(draw(st.lists(INT32, min_size=n, max_size=n)), dtype=np.int64)
        else:
            arr = np.arange(n, dtype=np.float32) / 7
        shape = draw(st.sampled_from(["none", "declared", "2d"]))
        if shape == "none":
            inputs[name] = TensorData(data=arr, dtype=str(arr.dtype))  # type: ignore[arg-type]
        elif shape == "2d" and n % 2 == 0:
            inputs[name] = TensorData.from_numpy(arr.reshape(2, n // 2))
        else:
            inputs[name] = TensorData.from_numpy(arr)
    return Datum(model_input=model_input, loss_fn_inputs=inputs)


def _request(data: list[Datum], seq_id: int = 3) -> ForwardBackwardRequest:
    return ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
        model_id="m",
        seq_id=seq_id,
    )


@settings(max_examples=150, deadline=None)
@given(requests)
def test_fast_framing_matches_general_on_every_request(req: ForwardBackwardRequest) -> None:
    assert encode_request_body(req) == encode_request_body(req, fast=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(text_datums(), max_size=4))
def test_fast_framing_matches_general_on_text_datums(data: list[Datum]) -> None:
    req = _request(data)
    body = encode_request_body(req)
    assert body == encode_request_body(req, fast=False)
    back = decode_forward_backward_request(body, content_encoding=None)
    assert [d.model_input.to_ints() for d in back.forward_backward_input.data] == [
        d.model_input.to_ints() for d in data
    ]


@settings(max_examples=100, deadline=None)
@given(st.lists(text_datums(), max_size=4))
def test_ids_packed_by_the_checks_give_the_same_bytes(data: list[Datum]) -> None:
    # prepare_forward_backward hands the checks' packed ids to the encoder (issue 15)
    known: KnownTokens = {}
    for i, datum in enumerate(data):  # the token checks of check_forward_data
        with contextlib.suppress(BadTrainingInputError):  # negative ids: packed all the same
            _check_tokens(i, datum.model_input, ModelLimits(), known)
    req = _request(data)
    assert encode_request_body(req, known=known) == encode_request_body(req, fast=False)


def test_packed_ids_are_the_checked_ones_and_only_for_their_own_chunk() -> None:
    tokens = [5, 6, 7]
    datum = Datum(model_input=ModelInput.from_ints(tokens), loss_fn_inputs={})
    known: KnownTokens = {}
    check_forward_data([datum], "no_such_loss", ModelLimits(), known)
    (chunk,) = datum.model_input.chunks
    assert known[id(chunk)][0] is chunk
    tokens.append(8)  # changed after the checks: what was checked is what is sent
    sent = encode_request_body(_request([datum]), known=known)
    assert sent == encode_request_body(
        _request([Datum(model_input=ModelInput.from_ints([5, 6, 7]), loss_fn_inputs={})])
    )
    # an entry whose chunk is another object (a reused id) is never taken
    other = EncodedTextChunk(tokens=[9])
    stale: KnownTokens = {id(other): (chunk, known[id(chunk)][1])}
    body = encode_request_body(
        _request([Datum(model_input=ModelInput(chunks=[other]))]), known=stale
    )
    assert body == encode_request_body(
        _request([Datum(model_input=ModelInput.from_ints([9]), loss_fn_inputs={})])
    )


def test_large_datums_cross_two_byte_and_three_byte_lengths() -> None:
    rng = np.random.default_rng(1)
    data = [
        Datum(
            model_input=ModelInput.from_ints(rng.integers(0, 2**31 - 1, n)),
            loss_fn_inputs={"weights": TensorData.from_numpy(rng.random(n).astype(np.float32))},
        )
        for n in (31, 4_100, 70_000)  # 4-byte tokens: sizes under 128, under 16 KiB, above
    ]
    req = _request(data)
    assert encode_request_body(req) == encode_request_body(req, fast=False)
    assert encode_forward_backward_request(req, compress=True) == encode_forward_backward_request(
        req, compress=True
    )


def test_numpy_tokens_are_copied_not_shared() -> None:
    arr = np.arange(10, dtype=np.int64)
    mi = ModelInput.from_ints(arr)
    arr[:] = 0
    assert mi.to_ints() == list(range(10))
    before = encode_request_body(_request([Datum(model_input=mi, loss_fn_inputs={})]))
    assert before == encode_request_body(
        _request([Datum(model_input=ModelInput.from_ints(list(range(10))), loss_fn_inputs={})])
    )


def test_a_list_is_packed_at_encode_so_later_changes_are_sent() -> None:
    """A plain list may change after the chunk is built: what is sent is what it holds then."""
    mi = ModelInput.from_ints([1, 2, 3])
    chunk = mi.chunks[0]
    assert isinstance(chunk, EncodedTextChunk)
    assert packed_tokens(chunk) is None
    chunk.tokens[0] = 9
    req = _request([Datum(model_input=mi, loss_fn_inputs={})])
    back = decode_forward_backward_request(encode_request_body(req), content_encoding=None)
    assert back.forward_backward_input.data[0].model_input.to_ints() == [9, 2, 3]


def test_numpy_built_tokens_are_read_only_and_copy_to_plain_lists() -> None:
    mi = ModelInput.from_ints(np.array([1, 2, 3]))
    tokens = mi.chunks[0].tokens  # type: ignore[union-attr]
    assert packed_tokens(mi.chunks[0]) is not None  # type: ignore[arg-type]
    for change in (
        lambda: tokens.append(4),
        lambda: tokens.__setitem__(0, 9),
        lambda: tokens.extend([4]),
        lambda: tokens.__delitem__(0),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert tokens == [1, 2, 3]
    assert type(copy.copy(tokens)) is list
    assert type(pickle.loads(pickle.dumps(tokens))) is list
    assert tokens + [4] == [1, 2, 3, 4]  # noqa: RUF005 (list.__add__ on the subclass)
    assert msgspec.json.encode(mi) == msgspec.json.encode(ModelInput.from_ints([1, 2, 3]))
    assert mi == ModelInput.from_ints([1, 2, 3])


@pytest.mark.parametrize(
    "tokens", [np.array([2**31], dtype=np.int64), np.array([-(2**31) - 1], dtype=np.int64)]
)
def test_numpy_tokens_outside_int32_are_refused_with_the_value(tokens: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="does not fit int32"):
        ModelInput.from_ints(tokens)


def test_official_client_encodes_the_same_bytes() -> None:
    """Byte for byte with one loss input per datum: the official client (upb) writes map
    entries in its hash table's order, so with several the bytes differ only in that order."""
    tinker = pytest.importorskip("tinker", reason="official tinker SDK not installed")
    from tinker.proto import request_conv

    rng = np.random.default_rng(2)
    ours, theirs = [], []
    for n in (0, 5, 300, 5_000):
        toks = rng.integers(0, 150_000, n)
        tgt = rng.integers(0, 150_000, n).astype(np.int64)
        w = rng.random(n).astype(np.float32)
        ours.append(
            Datum(
                model_input=ModelInput.from_ints(toks),
                loss_fn_inputs={"target_tokens": TensorData.from_numpy(tgt)},
            )
        )
        ours.append(
            Datum(
                model_input=ModelInput.from_ints(toks.tolist()),
                loss_fn_inputs={"weights": TensorData.from_numpy(w)},
            )
        )
        theirs.append(
            tinker.types.Datum(
                model_input=tinker.types.ModelInput.from_ints(toks.tolist()),
                loss_fn_inputs={"target_tokens": tinker.types.TensorData.from_numpy(tgt)},
            )
        )
        theirs.append(
            tinker.types.Datum(
                model_input=tinker.types.ModelInput.from_ints(toks.tolist()),
                loss_fn_inputs={"weights": tinker.types.TensorData.from_numpy(w)},
            )
        )
    official = tinker.types.ForwardBackwardRequest(
        forward_backward_input=tinker.types.ForwardBackwardInput(
            data=theirs, loss_fn="cross_entropy"
        ),
        model_id="m",
        seq_id=3,
    )
    expected = request_conv.forward_backward_request_to_proto(official).SerializeToString()
    assert encode_request_body(_request(ours)) == expected
