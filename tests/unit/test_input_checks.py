"""Client-side input checks (issue 14): bad input raises a typed error before anything is sent.

Each check names the datum or field at fault, what was wrong and what to do. The end-to-end
proof that a TrainingClient survives every one of these is
``tests/integration/test_bad_input_recovery.py``.
"""

from __future__ import annotations

import json
import math
import struct

import msgspec
import numpy as np
import pytest
import trio
import trio.testing
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from tinker_actors.clients._checks import (
    BadTrainingInputError,
    ModelLimits,
    _ids_below,
    _token_ids,
    check_checkpoint_name,
    check_forward_data,
    check_load_path,
    check_optimizer_params,
    check_sample_request,
)
from tinker_actors.errors import InvalidInputError
from tinker_actors.local._ordering import DuplicateSeqIdError, SequencedOp, Sequencer
from tinker_actors.local._refusals import peek_json_ids, peek_proto_ids
from tinker_actors.transport._request import encode_json
from tinker_actors.transport.proto import encode_forward_backward_request
from tinker_actors.types import (
    AdamParams,
    Datum,
    DimuonParams,
    EncodedTextChunk,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    ImageChunk,
    ModelInput,
    SampleRequest,
    SamplingParams,
    TensorData,
)


def test_a_sample_request_with_target_prompt_logprobs_encodes_to_json() -> None:
    targets = TensorData(data=[4, -1, 5, 6], dtype="int64", shape=[2, 2])
    request = SampleRequest(
        prompt=ModelInput.from_ints([1, 2, 3]),
        sampling_params=SamplingParams(max_tokens=4),
        sampling_session_id="s",
        seq_id=1,
        target_prompt_logprobs=targets,
    )
    body = json.loads(encode_json(request, None))
    assert body["target_prompt_logprobs"] == targets.to_json()
    merged = json.loads(encode_json(request, {"extra": np.int64(7)}))
    assert merged["target_prompt_logprobs"] == targets.to_json()
    assert merged["extra"] == 7


def test_numpy_values_in_a_json_body_encode_as_numbers() -> None:
    body = json.loads(encode_json({"n": np.int64(3), "xs": np.arange(2)}, None))
    assert body == {"n": 3, "xs": [0, 1]}


# -- training data, names, paths, hyperparameters ----------------------------------------------


def _datum(tokens: list[int], targets: object, **inputs: object) -> Datum:
    return Datum(
        model_input=ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": targets, **inputs},  # type: ignore[dict-item]
    )


TINY = ModelLimits(vocab_size=100, max_context_length=8)


def test_a_length_mismatch_names_the_datum_the_field_and_the_fix() -> None:
    data = [_datum([1, 2], [2, 3]), _datum([1, 2, 3], [2, 3])]
    with pytest.raises(BadTrainingInputError) as caught:
        check_forward_data(data, "cross_entropy", TINY)
    error = caught.value
    assert isinstance(error, InvalidInputError)
    assert isinstance(error, ValueError)
    assert (error.index, error.field) == (1, "loss_fn_inputs['target_tokens']")
    assert "data[1]" in str(error)
    assert "2 rows but model_input has 3 tokens" in str(error)


@pytest.mark.parametrize(
    ("loss_fn", "missing"),
    [
        ("importance_sampling", "logprobs"),
        ("ppo", "advantages"),
        ("cispo", "logprobs"),
        ("dro", "advantages"),
        ("gspo", "logprobs"),
        ("stable_reinforce", "advantages"),
    ],
)
def test_each_rl_loss_needs_its_inputs(loss_fn: str, missing: str) -> None:
    inputs = {
        "logprobs": np.zeros(2, np.float32),
        "advantages": np.ones(2, np.float32),
    }
    del inputs[missing]
    with pytest.raises(BadTrainingInputError, match=f"missing \\['{missing}'\\]"):
        check_forward_data([_datum([1, 2], [2, 3], **inputs)], loss_fn, TINY)
    inputs[missing] = np.zeros(3, np.float32)  # present but misaligned
    with pytest.raises(BadTrainingInputError, match="has 3 entries but target_tokens has 2"):
        check_forward_data([_datum([1, 2], [2, 3], **inputs)], loss_fn, TINY)


def test_token_ids_and_lengths_are_checked_against_the_reported_limits() -> None:
    with pytest.raises(BadTrainingInputError, match=r"\[0, 100\); got 1..100"):
        check_forward_data([_datum([1, 100], [2, 3])], "cross_entropy", TINY)
    with pytest.raises(BadTrainingInputError, match=r"target_tokens.*got 2..250"):
        check_forward_data([_datum([1, 2], [2, 250])], "cross_entropy", TINY)
    with pytest.raises(BadTrainingInputError, match="9 tokens exceed the model's context of 8"):
        check_forward_data([_datum([1] * 9, [1] * 9)], "cross_entropy", TINY)
    # a server that reports neither: only negative ids are refused
    unknown = ModelLimits()
    check_forward_data([_datum([1, 10**6] * 5, [2] * 10)], "cross_entropy", unknown)
    with pytest.raises(BadTrainingInputError, match="vocabulary size"):
        check_forward_data([_datum([1, -1], [2, 3])], "cross_entropy", unknown)


def test_dtypes_and_non_finite_values_are_refused() -> None:
    floats = TensorData(data=[2.0, 3.0], dtype="float32")
    with pytest.raises(BadTrainingInputError, match="must be int64"):
        check_forward_data([_datum([1, 2], floats)], "cross_entropy", TINY)
    ints = TensorData(data=[1, 1], dtype="int64")
    with pytest.raises(BadTrainingInputError, match=r"weights.*must be float32"):
        check_forward_data([_datum([1, 2], [2, 3], weights=ints)], "cross_entropy", TINY)
    for bad in (math.nan, math.inf, -math.inf):
        weights = np.array([1.0, bad], np.float32)
        with pytest.raises(BadTrainingInputError, match="flat index 1; every value must be finite"):
            check_forward_data([_datum([1, 2], [2, 3], weights=weights)], "cross_entropy", TINY)
    # logprobs may be -inf (an impossible token); a custom loss's own inputs are its business
    rl = _datum(
        [1, 2],
        [2, 3],
        logprobs=np.array([-math.inf, -1], np.float32),
        advantages=np.ones(2, np.float32),
    )
    check_forward_data([rl], "ppo", TINY)
    per_sequence = _datum([1, 2], [2, 3], advantages=np.ones(1, np.float32))
    check_forward_data([per_sequence], "custom", TINY)


def test_an_image_without_expected_tokens_is_left_to_the_server() -> None:
    image = ImageChunk(data=b"\x89PNG", format="png")
    datum = Datum(
        model_input=ModelInput(chunks=[EncodedTextChunk(tokens=[1]), image]),
        loss_fn_inputs={"target_tokens": np.array([2, 3, 4])},  # type: ignore[dict-item]
    )
    check_forward_data([datum], "cross_entropy", TINY)


@pytest.mark.parametrize("name", ["../x", "/abs", "", "a b", "ok\n", "-lead", "x" * 129, 7])
def test_bad_checkpoint_names_are_refused(name: object) -> None:
    with pytest.raises(BadTrainingInputError, match="not a valid checkpoint name"):
        check_checkpoint_name(name)


def test_good_checkpoint_names_pass() -> None:
    for name in ("final", "step-000010", "v1.2_best", "x" * 128):
        assert check_checkpoint_name(name) == name


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../x", "tinker://"),
        ("/abs/weights", "tinker://"),
        ("tinker://x", "three parts"),
        ("tinker://run/sampler_weights/s", "training checkpoint"),
        ("tinker://run/weights/a b", "checkpoint name"),
        (None, "tinker:// string"),
    ],
)
def test_load_paths_must_name_a_training_checkpoint(path: object, why: str) -> None:
    with pytest.raises(BadTrainingInputError, match=why):
        check_load_path(path)
    assert check_load_path("tinker://run:train:0/weights/final").name == "final"


def _adam(**values: float) -> AdamParams:
    params = AdamParams()
    for name, value in values.items():
        msgspec.structs.force_setattr(params, name, value)
    return params


@pytest.mark.parametrize(
    "params",
    [
        _adam(learning_rate=math.nan),
        _adam(learning_rate=-1e-4),
        _adam(beta1=1.0),
        _adam(beta2=-0.1),
        _adam(eps=0.0),
        _adam(eps=math.inf),
        _adam(weight_decay=-1.0),
        _adam(grad_clip_norm=-1.0),
        _adam(grad_clip_norm=math.nan),
    ],
)
def test_adam_hyperparameters_out_of_range_are_refused(params: AdamParams) -> None:
    with pytest.raises(BadTrainingInputError, match="AdamParams"):
        check_optimizer_params(params)


def test_default_optimizer_params_pass() -> None:
    check_optimizer_params(AdamParams())
    check_optimizer_params(DimuonParams(learning_rate=0.01))


def _sample(num_samples: int = 1, **params: object) -> SampleRequest:
    """A request holding values the constructors refuse (as a buggy caller might build)."""
    sampling = SamplingParams(max_tokens=4)
    for name, value in params.items():
        msgspec.structs.force_setattr(sampling, name, value)
    request = SampleRequest(prompt=ModelInput.from_ints([1, 2]), sampling_params=sampling)
    msgspec.structs.force_setattr(request, "num_samples", num_samples)
    return request


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (_sample(0), "num_samples"),
        (_sample(max_tokens=0), "max_tokens"),
        (_sample(temperature=math.nan), "temperature"),
        (_sample(temperature=-1.0), "temperature"),
        (_sample(top_p=0.0), "top_p"),
        (_sample(top_p=math.nan), "top_p"),
        (_sample(top_k=0), "top_k"),
    ],
)
def test_sampling_parameters_out_of_range_are_refused(request_: SampleRequest, why: str) -> None:
    with pytest.raises(InvalidInputError, match=why):
        check_sample_request(request_)


def test_from_ints_refuses_fractions_instead_of_truncating() -> None:
    with pytest.raises(InvalidInputError, match="fractional"):
        ModelInput.from_ints([1.5, 2.5])  # type: ignore[list-item]


# -- the local server consumes the seq_id of a refused request --------------------------------


async def test_a_refused_seq_id_is_consumed_and_the_next_one_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seq = Sequencer(gap_timeout=600)
    log: list[int] = []

    def op(n: int) -> SequencedOp:
        async def run() -> None:
            log.append(n)

        return SequencedOp(n, f"r{n}", "op", run, lambda why: None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(seq.run)
        seq.submit(op(1), idempotency_key=None)
        seq.submit(op(3), idempotency_key=None)  # waits for 2
        await trio.sleep(1)
        assert log == [1]
        assert seq.refuse(2)
        await trio.sleep(1)
        assert log == [1, 3]  # long before the gap timeout
        assert not seq.refuse(2)  # consumed once
        assert not seq.refuse(1)  # already run
        with pytest.raises(DuplicateSeqIdError):
            seq.submit(op(2), idempotency_key=None)  # a consumed id is never run later
        nursery.cancel_scope.cancel()
    assert seq.stats.applied_seq_ids == [1, 3]
    assert (seq.stats.refused, seq.stats.failed) == (1, 0)


def test_seq_ids_are_read_from_bodies_that_fail_to_decode() -> None:
    good = encode_forward_backward_request(
        ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(
                data=[_datum([1, 2], [2, 3])], loss_fn="cross_entropy"
            ),
            model_id="m:train:0",
            seq_id=7,
        ),
        compress=False,
    )
    assert peek_proto_ids(good, None) == ("m:train:0", 7)
    squeezed = zstandard.ZstdCompressor().compress(good)
    assert peek_proto_ids(squeezed, "zstd") == ("m:train:0", 7)
    assert peek_proto_ids(b"\xff\xff", None) == (None, None)
    assert peek_proto_ids(good, "br") == (None, None)
    assert peek_json_ids(b'{"model_id": "m", "seq_id": 4, "adam_params": null}') == ("m", 4)
    assert peek_json_ids(b"not json") == (None, None)
    assert peek_json_ids(b'{"seq_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}") == (None, None)


@given(
    st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=64),
    st.booleans(),
    st.none() | st.integers(1, 2**40),
)
def test_the_one_pass_id_range_check_is_min_and_max(
    tokens: list[int], from_numpy: bool, vocab: int | None
) -> None:
    if from_numpy:
        small = [max(min(t, 2**31 - 1), -(2**31)) for t in tokens]
        packed = ModelInput.from_ints(np.array(small, np.int64)).chunks[0].tokens
        ids, raw = _token_ids(packed)
        assert raw is None  # sent from .packed
        assert ids is not None
        assert ids.tolist() == small
        tokens = small
    else:
        ids, raw = _token_ids(tokens)
        # the bytes the encoder sends: int32 little-endian, or None (it refuses the list)
        fits = min(tokens) >= -(2**31) and max(tokens) < 2**31
        assert raw == (struct.pack(f"<{len(tokens)}i", *tokens) if fits else None)
        if not fits:
            assert ids is None
            return
        assert ids is not None
        assert ids.tolist() == tokens
    # read as unsigned in one pass, it says what min >= 0 and max < vocab say
    expected = min(tokens) >= 0 and max(tokens) < (vocab if vocab is not None else 2**31)
    assert _ids_below(ids, vocab) == expected
    wide = np.array(tokens, np.int64)
    assert _ids_below(wide, vocab) == expected
    assert _ids_below(wide.reshape(-1, 1)[::-1], vocab) == expected  # any shape or stride
