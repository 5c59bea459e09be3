"""The types behave as tinker.types 0.38's do where real code relies on it.

Each test runs the same code against the official module and ours (``both`` parametrises a test
with the two namespaces) and compares what comes out. The behaviours are the ones 0.38 code
uses (tinker-cookbook 0.6.1 above all): keyword and positional construction, ModelInput's
helpers, TensorData's conversions, Datum's conversion of arrays, tensors and lists, equality,
hashing, pickling and copying, attribute access on responses. Where ours deliberately differs,
the test says so and checks our behaviour instead.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import random
import types as pytypes
from typing import Any

import msgspec
import numpy as np
import pytest

tinker = pytest.importorskip(
    "tinker", reason="the official SDK (tinker==0.38.0) is an interop-only peer"
)
torch = pytest.importorskip("torch")

import tinker.types as official  # noqa: E402

import tinker_actors.types as ours  # noqa: E402
from tinker_actors.errors import InvalidInputError  # noqa: E402

pytestmark = pytest.mark.interop

both = pytest.mark.parametrize("T", [official, ours], ids=["official", "ours"])


def _text_chunks(mi: Any) -> list[list[int]]:
    return [list(c.tokens) for c in mi.chunks]


# -- ModelInput and its chunks -------------------------------------------------------------------


@both
def test_model_input_helpers(T: pytypes.ModuleType) -> None:
    mi = T.ModelInput.from_ints([5, 6, 7])
    assert mi.to_ints() == [5, 6, 7]
    assert mi.length == 3
    assert _text_chunks(mi) == [[5, 6, 7]]
    assert T.ModelInput.empty().chunks == []
    assert T.ModelInput.empty().length == 0
    image = T.ImageChunk(data=b"\x89PNG", format="png", expected_tokens=4)
    with_image = mi.append(image)
    assert with_image.length == 7
    assert with_image.chunks[-1] == image
    assert isinstance(with_image.chunks[0], T.EncodedTextChunk)
    with pytest.raises(ValueError, match="to_ints"):
        with_image.to_ints()
    after_image = with_image.append_int(9)
    assert after_image.length == 8
    assert after_image.chunks[-1].tokens == [9]
    assert mi.append_int(8).to_ints() == [5, 6, 7, 8]
    assert mi.to_ints() == [5, 6, 7]  # immutable: append* returns a new one
    assert T.ModelInput.from_ints([1.0, 2.0]).to_ints() == [1, 2]  # integral floats convert
    assert T.ModelInput(chunks=[T.EncodedTextChunk(tokens=[1])]) == T.ModelInput.from_ints([1])
    with pytest.raises(TypeError):
        len(mi)  # neither defines len(); real code uses .length


def test_append_int_joins_a_trailing_text_chunk_unlike_0_38() -> None:
    # Deliberate: 0.38 adds a one-token chunk per call; the model reads the same tokens.
    grown_official = official.ModelInput.from_ints([1]).append_int(2)
    grown = ours.ModelInput.from_ints([1]).append_int(2)
    assert grown.to_ints() == grown_official.to_ints() == [1, 2]
    assert grown.length == grown_official.length
    assert _text_chunks(grown_official) == [[1], [2]]
    assert _text_chunks(grown) == [[1, 2]]


@both
def test_chunks_read_like_0_38(T: pytypes.ModuleType) -> None:
    text = T.EncodedTextChunk(tokens=[1, 2])
    assert (text.type, text.length) == ("encoded_text", 2)
    image = T.ImageChunk(data="eA==", format="jpeg")  # base64 text is decoded
    assert (image.data, image.type, image.expected_tokens) == (b"x", "image", None)
    with pytest.raises(ValueError, match="expected_tokens"):
        _ = image.length
    pointer = T.ImageAssetPointerChunk(format="png", location="s3://b/i.png", expected_tokens=3)
    assert (pointer.type, pointer.length, pointer.location) == (
        "image_asset_pointer",
        3,
        "s3://b/i.png",
    )
    dmel = T.DmelChunk(dmel=bytes([0, 2, 5, 80]))  # dtype 0, 2-D, shape (5, 80)
    assert (dmel.type, dmel.length) == ("dmel", 5)
    with pytest.raises(ValueError, match="format"):
        T.ImageChunk(data=b"x", format="gif")


def test_chunks_encode_to_the_official_json() -> None:
    for kwargs in (
        {"data": b"\x89PNG", "format": "png"},
        {"data": b"x", "format": "jpeg", "expected_tokens": 2},
    ):
        theirs = official.ImageChunk(**kwargs).model_dump(mode="json", exclude_none=True)
        assert msgspec.json.decode(msgspec.json.encode(ours.ImageChunk(**kwargs))) == theirs


# -- TensorData ----------------------------------------------------------------------------------


def _same_tensor(a: Any, b: Any) -> None:
    assert (a.dtype, list(a.shape or []), a.data) == (b.dtype, list(b.shape or []), b.data)
    assert (a.sparse_crow_indices, a.sparse_col_indices) == (
        b.sparse_crow_indices,
        b.sparse_col_indices,
    )
    assert a.tolist() == b.tolist()
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert a.to_numpy().dtype == b.to_numpy().dtype
    assert torch.equal(a.to_torch(), b.to_torch())


ARRAYS = [
    np.array([1.5, -2.0, 3.25]),
    np.array([1.5, 2.5], dtype=np.float32),
    np.array([[1, 2], [3, 4]], dtype=np.int32),
    np.arange(6, dtype=np.int64).reshape(2, 3),
    np.zeros(0, dtype=np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_tensor_from_numpy(array: np.ndarray) -> None:
    _same_tensor(ours.TensorData.from_numpy(array), official.TensorData.from_numpy(array))


TENSORS = [
    torch.tensor([1.0, 2.5]),
    torch.tensor([[1, 2, 3]], dtype=torch.int32),
    torch.tensor([0.5, 1.5], dtype=torch.bfloat16),
    torch.tensor([1.0, 2.0], dtype=torch.float64),
]


@pytest.mark.parametrize("tensor", TENSORS, ids=lambda t: str(t.dtype))
def test_tensor_from_torch(tensor: Any) -> None:
    _same_tensor(ours.TensorData.from_torch(tensor), official.TensorData.from_torch(tensor))


@pytest.mark.parametrize(
    ("dense", "pad"),
    [
        ([[0, 0, 0, 0, 7], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], 0),
        ([[-1, -1, -1, -1, 5], [-1, -1, -1, -1, -1], [-1, 4, -1, -1, -1]], -1),
        ([[1, 2], [3, 4]], 0),  # too dense for CSR: stays dense in both
        ([1, 2, 3], 0),  # 1-D: dense
    ],
)
def test_tensor_from_torch_sparse(dense: list[Any], pad: int) -> None:
    t = torch.tensor(dense)
    mine = ours.TensorData.from_torch_sparse(t, pad_value=pad)
    theirs = official.TensorData.from_torch_sparse(t, pad_value=pad)
    assert (mine.sparse_crow_indices, mine.sparse_col_indices, mine.data) == (
        theirs.sparse_crow_indices,
        theirs.sparse_col_indices,
        theirs.data,
    )
    assert mine.tolist(pad_value=pad) == theirs.tolist(pad_value=pad) == dense
    assert torch.equal(mine.to_torch(pad_value=pad), theirs.to_torch(pad_value=pad))


@both
def test_tensor_construction(T: pytypes.ModuleType) -> None:
    t = T.TensorData([1, 2, 3, 4], "int64", [2, 2])  # positional, in 0.38's order
    assert t.tolist() == [[1, 2], [3, 4]]
    assert T.TensorData(data=[1, 2], dtype="float32").shape is None
    assert T.TensorData(data=[1.0, 2.0], dtype="int64").data == [1, 2]
    with pytest.raises(TypeError):
        T.TensorData(data=[1, 2])  # no dtype
    with pytest.raises(ValueError, match=r"shape|size"):
        T.TensorData(data=[1, 2, 3], dtype="int64", shape=[2, 2])
    with pytest.raises(TypeError):
        T.TensorData.from_torch_sparse(torch.zeros(2, 2), pad_value=0.5)


def test_tensor_equality_is_by_value_unlike_0_38() -> None:
    # Deliberate: 0.38's TensorData compares (and hashes) by identity.
    a, b = (
        official.TensorData(data=[1], dtype="int64"),
        official.TensorData(data=[1], dtype="int64"),
    )
    assert a != b
    assert a == a
    assert ours.TensorData(data=[1], dtype="int64") == ours.TensorData(data=[1], dtype="int64")
    assert ours.TensorData(data=[1], dtype="int64") != ours.TensorData(data=[2], dtype="int64")
    with pytest.raises(TypeError):
        hash(ours.TensorData(data=[1], dtype="int64"))


# -- Datum ---------------------------------------------------------------------------------------


LOSS_INPUTS: list[tuple[str, Any]] = [
    ("target_tokens", [1, 2, 3]),
    ("weights", [1, 0, 1]),
    ("weights", [0.5, 1.0, 0.0]),
    ("advantages", np.array([0.5, -1.0, 2.0])),
    ("logprobs", torch.tensor([-0.5, -1.0, -2.0])),
    ("target_tokens", np.array([4, 5, 6])),
    ("target_tokens", torch.tensor([4, 5, 6])),
    ("mask", np.array([1.0, 0.0, 1.0], dtype=np.float32)),
    ("weights", torch.tensor([[0.0] * 8, [0.0] * 7 + [1.0], [0.0] * 8])),  # 2-D: CSR in both
    ("target_tokens", torch.tensor([[0] * 8, [0] * 8, [3] + [0] * 7])),
    ("clip_low_threshold", [0.8, 0.8, 0.8]),
]


@pytest.mark.parametrize(("key", "value"), LOSS_INPUTS, ids=lambda v: str(v)[:24])
def test_datum_converts_loss_inputs_as_0_38(key: str, value: Any) -> None:
    mine = ours.Datum(ours.ModelInput.from_ints([1, 2, 3]), {key: value})  # positional
    theirs = official.Datum(official.ModelInput.from_ints([1, 2, 3]), {key: value})
    _same_tensor(mine.loss_fn_inputs[key], theirs.loss_fn_inputs[key])


@pytest.mark.parametrize(
    ("key", "value", "dtype"),
    [
        ("target_tokens", np.array([1.0, 2.0, 3.0]), "int64"),
        ("target_tokens", torch.tensor([1.0, 2.0, 3.0]), "int64"),
        ("weights", np.array([1, 0, 1]), "float32"),
        ("advantages", torch.tensor([1, 2, 3]), "float32"),
    ],
)
def test_datum_sends_well_known_keys_in_their_wire_dtype_unlike_0_38(
    key: str, value: Any, dtype: str
) -> None:
    # Deliberate: 0.38 keeps the array's kind (float32 token ids, int64 weights), which the
    # server refuses; the values are integers, so converting them changes nothing.
    theirs = official.Datum(official.ModelInput.from_ints([1, 2, 3]), {key: value})
    assert theirs.loss_fn_inputs[key].dtype != dtype
    mine = ours.Datum(ours.ModelInput.from_ints([1, 2, 3]), {key: value})
    assert mine.loss_fn_inputs[key].dtype == dtype
    assert mine.loss_fn_inputs[key].tolist() == theirs.loss_fn_inputs[key].tolist()


@both
def test_datum_construction_and_provenance(T: pytypes.ModuleType) -> None:
    mi = T.ModelInput.from_ints([1, 2, 3])
    datum = T.Datum(model_input=mi, loss_fn_inputs={"target_tokens": [2, 3, 4]})
    assert T.Datum(mi).loss_fn_inputs == {}
    assert datum.model_input_spans is None
    assert datum.loss_fn_input_spans is None
    prompt = T.PromptProvenanceSpan(sequence_id="p", length=2)
    sampled = T.SampledProvenanceSpan(sequence_id="s", offset=1, length=1)
    spanned = datum.with_provenance(
        model_input=[prompt, sampled],
        loss_fn_inputs=[T.SampledProvenanceSpan(sequence_id="s", length=3)],
    )
    assert spanned.model_input_spans == [prompt, sampled]
    assert spanned.loss_fn_inputs["target_tokens"].tolist() == [2, 3, 4]
    with pytest.raises(ValueError, match="tile"):
        datum.with_provenance(model_input=[prompt], loss_fn_inputs=[sampled])
    with pytest.raises(ValueError, match="ragged"):
        T.Datum(model_input=mi, loss_fn_inputs={"weights": [[1.0], [1.0, 2.0]]})
    with pytest.raises(TypeError):
        T.Datum(model_input=mi, loss_fn_inputs={"weights": "abc"})


@both
def test_provenance_spans(T: pytypes.ModuleType) -> None:
    span = T.PromptProvenanceSpan(sequence_id="a", length=3)
    assert (span.sequence_id, span.offset, span.length) == ("a", 0, 3)
    assert span == T.PromptProvenanceSpan(sequence_id="a", length=3)
    assert hash(span) == hash(T.PromptProvenanceSpan(sequence_id="a", length=3))
    assert span != T.SampledProvenanceSpan(sequence_id="a", length=3)
    with pytest.raises(TypeError):
        T.PromptProvenanceSpan("a", 0, 3)  # keyword-only in both
    for bad in ({"sequence_id": "", "length": 1}, {"sequence_id": "a", "length": -1}):
        with pytest.raises(ValueError, match=r"sequence_id|length"):
            T.SampledProvenanceSpan(**bad)


@both
def test_types_keep_their_own_lists_not_the_callers(T: pytypes.ModuleType) -> None:
    # tinker-cookbook's rl/data_processing.py builds a chunk from a list, then clears that list
    # to gather the next chunk's tokens: the chunk must not change with it
    tokens = [5, 6, 7]
    chunk = T.EncodedTextChunk(tokens=tokens)
    tokens.clear()
    assert list(chunk.tokens) == [5, 6, 7]
    chunks = [T.EncodedTextChunk(tokens=[1, 2])]
    mi = T.ModelInput(chunks=chunks)
    chunks.append(T.EncodedTextChunk(tokens=[3]))
    assert mi.length == 2
    stop = ["\n"]
    params = T.SamplingParams(max_tokens=3, stop=stop)
    stop.append("User:")
    assert list(params.stop) == ["\n"]


DATACLASSES = [
    "Datum", "PromptProvenanceSpan", "SampledProvenanceSpan", "ForwardBackwardInput",
    "ForwardBackwardOutput", "ForwardBackwardRequest", "ForwardRequest",
]  # fmt: skip


@pytest.mark.parametrize("name", DATACLASSES)
def test_the_0_38_dataclasses_are_dataclasses_to_the_dataclasses_module(name: str) -> None:
    assert dataclasses.is_dataclass(getattr(official, name))
    assert dataclasses.is_dataclass(getattr(ours, name))
    theirs = [f.name for f in dataclasses.fields(getattr(official, name))]
    mine = [f.name for f in dataclasses.fields(getattr(ours, name))]
    # ours may add a field (ForwardBackwardRequest.forward_only), never lose or reorder one
    assert mine[: len(theirs)] == theirs


@both
def test_dataclasses_replace_on_datums_and_spans(T: pytypes.ModuleType) -> None:
    # what tinker-cookbook 0.6.1's RL loop does: shift spans by one position, drop "mask"
    span = T.PromptProvenanceSpan(sequence_id="p", length=3)
    shifted = dataclasses.replace(span, offset=span.offset + 1, length=span.length - 1)
    assert shifted == T.PromptProvenanceSpan(sequence_id="p", offset=1, length=2)
    assert type(shifted) is T.PromptProvenanceSpan
    assert dataclasses.asdict(shifted) == {"sequence_id": "p", "offset": 1, "length": 2}
    mi = T.ModelInput.from_ints([1, 2, 3])
    datum = T.Datum(
        model_input=mi,
        loss_fn_inputs={
            "target_tokens": T.TensorData(data=[2, 3, 4], dtype="int64", shape=[3]),
            "mask": T.TensorData(data=[1.0, 1.0, 0.0], dtype="float32", shape=[3]),
        },
    ).with_provenance(
        model_input=[T.PromptProvenanceSpan(sequence_id="s", length=3)],
        loss_fn_inputs=[T.SampledProvenanceSpan(sequence_id="s", length=3)],
    )
    kept = dataclasses.replace(
        datum, loss_fn_inputs={k: v for k, v in datum.loss_fn_inputs.items() if k != "mask"}
    )
    assert sorted(kept.loss_fn_inputs) == ["target_tokens"]
    assert kept.model_input_spans == datum.model_input_spans  # the other fields are kept
    assert kept.model_input == mi
    assert "mask" in datum.loss_fn_inputs  # a new Datum; the old one is as it was


def test_dataclasses_replace_checks_the_new_values() -> None:
    # replace builds through the class, so the checks a constructor makes apply
    span = ours.SampledProvenanceSpan(sequence_id="s", length=2)
    with pytest.raises(InvalidInputError, match="length"):
        dataclasses.replace(span, length=-1)
    datum = ours.Datum(model_input=ours.ModelInput.from_ints([1]))
    with pytest.raises(InvalidInputError, match="pair"):
        dataclasses.replace(datum, model_input_spans=[span])
    assert msgspec.structs.replace(span, offset=1).offset == 1  # msgspec's own still works


# -- parameters ----------------------------------------------------------------------------------


PARAMS: list[tuple[str, dict[str, Any]]] = [
    ("SamplingParams", {}),
    ("SamplingParams", {"max_tokens": 20, "temperature": 0, "stop": ["\n"], "seed": 3}),
    ("SamplingParams", {"max_tokens": 2.0, "top_k": 50, "top_p": 0.9, "stop": [13, 14]}),
    ("AdamParams", {}),
    ("AdamParams", {"learning_rate": 1, "beta1": 0.8, "weight_decay": 0.01}),
    ("DimuonParams", {"learning_rate": 0.02, "beta1": 0.5}),
    ("LoraConfig", {"rank": 8}),
    ("LoraConfig", {"rank": 32, "seed": 1, "train_unembed": False}),
    ("AdamOptimizerConfig", {}),
    ("DimuonOptimizerConfig", {}),
]


def _dump(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return msgspec.json.decode(msgspec.json.encode(value))
    return value.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize(("name", "kwargs"), PARAMS, ids=lambda v: str(v))
def test_parameters_construct_compare_hash_and_copy_like_0_38(
    name: str, kwargs: dict[str, Any]
) -> None:
    theirs = getattr(official, name)(**kwargs)
    mine = getattr(ours, name)(**kwargs)
    assert _dump(mine) == _dump(theirs)
    for field in type(theirs).model_fields:
        expected = getattr(theirs, field)
        got = getattr(mine, field)
        assert got == expected, field
        if field in kwargs:  # given values are normalised alike (2.0 -> 2, 0 -> 0.0)
            assert type(got) is type(expected), field
    assert mine == getattr(ours, name)(**kwargs)
    try:
        hash(theirs)
    except TypeError:  # a list inside (stop=[...]): unhashable in both
        with pytest.raises(TypeError):
            hash(mine)
    else:
        assert hash(mine) == hash(getattr(ours, name)(**kwargs))
    assert pickle.loads(pickle.dumps(mine)) == mine
    assert copy.deepcopy(mine) == mine
    assert copy.copy(mine) == mine


def test_unset_optionals_read_as_none_like_0_38() -> None:
    # held as msgspec.UNSET (never sent), read as None: code that tests `is None` (a proxy
    # seeding its own sampler with `params.seed if params.seed is not None else ...`) works
    for name, kwargs in [("SamplingParams", {}), ("LoraConfig", {"rank": 4})]:
        theirs = getattr(official, name)(**kwargs)
        mine = getattr(ours, name)(**kwargs)
        unset = [f for f in type(theirs).model_fields if getattr(theirs, f) is None]
        assert unset, name
        assert [f for f in unset if getattr(mine, f) is not None] == [], name
        assert repr(mine) == repr(theirs).replace("temperature=1,", "temperature=1.0,").replace(
            "top_p=1)", "top_p=1.0)"
        )
    params = ours.SamplingParams(max_tokens=3)
    assert random.Random(params.seed if params.seed is not None else 7).random() == (
        random.Random(7).random()
    )
    assert msgspec.json.decode(msgspec.json.encode(params)) == {
        "max_tokens": 3,
        "temperature": 1.0,
        "top_k": -1,
        "top_p": 1.0,
    }


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda T: T.SamplingParams(max_tokens=1.5), "max_tokens"),
        (lambda T: T.DimuonParams(learning_rate=-1.0), "learning_rate"),
        (lambda T: T.DimuonParams(learning_rate=1.0, beta1=1.0), "beta1"),
        (lambda T: T.DimuonParams(learning_rate=float("inf")), "learning_rate"),
        (lambda T: T.ImageChunk(data=b"", format="bmp"), "format"),
        (lambda T: T.ModelInput.from_ints([1.5]), "1.5"),
        (lambda T: T.ModelInput.from_ints([float("nan")]), "nan"),
    ],
)
@both
def test_both_refuse(T: pytypes.ModuleType, build: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(T)


@pytest.mark.parametrize(
    "build",
    [
        lambda T: T.SamplingParams(temperature=float("nan")),
        lambda T: T.SamplingParams(temperature=-1.0),
        lambda T: T.AdamParams(learning_rate=float("nan")),
        lambda T: T.AdamParams(learning_rate=-1e-4),
        lambda T: T.AdamParams(beta2=1.0),
        lambda T: T.AdamParams(learning_rate="1e-4"),
        lambda T: T.LoraConfig(rank=0),
        lambda T: T.ModelInput.from_ints([True, 2]),
        lambda T: T.ModelInput.from_ints(["7"]),
        lambda T: T.ModelInput.from_ints([2**40]),
        lambda T: T.TensorData(data=[1.5], dtype="int64"),
        lambda T: T.TensorData(data=[True], dtype="float32"),
        lambda T: T.Datum(T.ModelInput.from_ints([1]), {"target_tokens": [1.5]}),
        lambda T: T.Datum(T.ModelInput.from_ints([1]), {"weights": [True]}),
    ],
)
def test_ours_refuses_what_0_38_lets_through(build: Any) -> None:
    # Deliberate (issue 14): each of these is accepted by 0.38 and either changes a value
    # silently (1.5 -> 1, True -> 1) or reaches the server as a value it refuses (NaN as null,
    # a negative learning rate), which breaks a training client's request order.
    build(official)
    with pytest.raises(InvalidInputError):
        build(ours)


def test_unknown_keywords_are_refused_unlike_0_38_sampling_params() -> None:
    # Deliberate: 0.38's SamplingParams ignores unknown keywords, so a typo (max_token=5)
    # silently samples with the default; ours raises.
    official.SamplingParams(max_token=5)
    with pytest.raises(TypeError):
        ours.SamplingParams(max_token=5)  # type: ignore[call-arg]


def test_optimizer_config_wire_matches_the_official_create_model_body() -> None:
    # What tinker 0.38's ServiceClient posts for create_lora_training_client(optimizer=...):
    # model_dump(request, exclude_unset=False, exclude_none=True, mode="json").
    for name in ("AdamOptimizerConfig", "DimuonOptimizerConfig"):
        common = {"session_id": "s", "model_seq_id": 0, "base_model": "m"}
        theirs = official.CreateModelRequest(
            **common,
            lora_config=official.LoraConfig(rank=8),
            optimizer_config=getattr(official, name)(),
        )
        mine = ours.CreateModelRequest(
            **common, lora_config=ours.LoraConfig(rank=8), optimizer_config=getattr(ours, name)()
        )
        expected = theirs.model_dump(exclude_unset=False, exclude_none=True, mode="json")
        assert msgspec.json.decode(msgspec.json.encode(mine)) == expected
    default = official.CreateModelRequest(session_id="s", model_seq_id=0, base_model="m")
    assert _dump(ours.CreateModelRequest(session_id="s", model_seq_id=0, base_model="m")) == (
        default.model_dump(exclude_unset=False, exclude_none=True, mode="json")
    )


@pytest.mark.parametrize("config", ["adamw", "dimuon"])
def test_decoded_optimizer_configs_are_their_family_class(config: str) -> None:
    body = {"model_data": {}, "model_id": "m"}
    if config == "dimuon":
        body["optimizer_config"] = {"type": "dimuon", "version": 1}
    else:
        body["optimizer_config"] = {"type": "adamw"}
    info = msgspec.json.decode(msgspec.json.encode(body), type=ours.GetInfoResponse)
    expected = ours.DimuonOptimizerConfig() if config == "dimuon" else ours.AdamOptimizerConfig()
    assert info.optimizer_config == expected
    assert isinstance(info.optimizer_config, type(expected))
    assert (
        info.optimizer_config.type
        == official.GetInfoResponse.model_validate(body).optimizer_config.type
    )


def test_optim_step_request_reads_its_params_as_0_38() -> None:
    params = ours.DimuonParams(learning_rate=0.1)
    request = ours.OptimStepRequest.for_params("m", params, seq_id=1)
    assert request.optim_params == params
    theirs = official.OptimStepRequest(
        model_id="m", seq_id=1, optim_params=official.DimuonParams(learning_rate=0.1)
    )
    assert _dump(request) == theirs.model_dump(exclude_unset=False, exclude_none=True, mode="json")
