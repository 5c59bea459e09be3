"""Hypothesis strategies for the wire types: tensors, datums, requests, outputs, sample results."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tinker_actors.types._datum import (
    Datum,
    PromptProvenanceSpan,
    SampledProvenanceSpan,
)
from tinker_actors.types._forward_backward import (
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
)
from tinker_actors.types._model_input import DmelChunk, EncodedTextChunk, ImageChunk, ModelInput
from tinker_actors.types._sample_result import (
    PromptAltTokens,
    SampledSequence,
    SampleResponse,
    TopkLogprobs,
)
from tinker_actors.types._tensor import TensorData

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOAT32 = st.floats(width=32, allow_nan=False)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def arrays(draw: st.DrawFn, dtype: str | None = None, max_dims: int = 3) -> np.ndarray:
    """A small int64 or float32 array of 1..max_dims dims (dims may be 0)."""
    dtype = dtype or draw(st.sampled_from(["int64", "float32"]))
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=max_dims))
    size = int(np.prod(shape))
    elements = INT64 if dtype == "int64" else FLOAT32
    values = draw(st.lists(elements, min_size=size, max_size=size))
    return np.array(values, dtype=dtype).reshape(shape)


@st.composite
def tensors(draw: st.DrawFn, dtype: str | None = None) -> TensorData:
    """A TensorData: dense of any shape, or 2-D CSR with a random pad value."""
    if draw(st.booleans()):
        arr = draw(arrays(dtype, max_dims=2).filter(lambda a: a.ndim == 2))
        pad = draw(st.sampled_from([0, -1]))
        mask = draw(
            st.lists(st.booleans(), min_size=arr.size, max_size=arr.size).map(
                lambda m: np.array(m, dtype=bool).reshape(arr.shape)
            )
        )
        arr = np.where(mask, arr, np.asarray(pad, dtype=arr.dtype)).astype(arr.dtype)
        return TensorData.from_numpy(arr, sparse=True, pad_value=pad)
    arr = draw(arrays(dtype))
    if arr.ndim == 1 and draw(st.booleans()):
        return TensorData(data=arr, dtype=str(arr.dtype))  # shape left unset (1-D)
    return TensorData.from_numpy(arr)


def _dmel(dims: list[int]) -> bytes:
    out = bytearray([3, len(dims)])
    for d in dims:
        while d > 0x7F:
            out.append((d & 0x7F) | 0x80)
            d >>= 7
        out.append(d)
    return bytes(out) + b"payload"


chunks = st.one_of(
    st.lists(INT32, max_size=8).map(lambda t: EncodedTextChunk(tokens=t)),
    st.builds(
        ImageChunk,
        data=st.binary(max_size=16),
        format=st.sampled_from(["png", "jpeg"]),
        expected_tokens=st.none() | st.integers(0, 2**31 - 1),
    ),
    st.lists(st.integers(0, 300), min_size=1, max_size=3).map(lambda d: DmelChunk(dmel=_dmel(d))),
)


def _spans() -> st.SearchStrategy[list[PromptProvenanceSpan | SampledProvenanceSpan]]:
    kind = st.sampled_from([PromptProvenanceSpan, SampledProvenanceSpan])
    return st.lists(
        st.builds(
            lambda k, s, o, n: k(sequence_id=s, offset=o, length=n),
            kind,
            names,
            st.integers(0, 2**40),
            st.integers(0, 2**40),
        ),
        max_size=3,
    )


@st.composite
def datums(draw: st.DrawFn) -> Datum:
    model_input = ModelInput(chunks=draw(st.lists(chunks, max_size=3)))
    inputs = draw(st.dictionaries(names, tensors(), max_size=3))
    if draw(st.booleans()):
        return Datum(
            model_input=model_input,
            loss_fn_inputs=inputs,
            model_input_spans=draw(_spans().filter(bool)),
            loss_fn_input_spans=draw(_spans()),
        )
    return Datum(model_input=model_input, loss_fn_inputs=inputs)


loss_configs = st.none() | st.dictionaries(
    names, st.floats(allow_nan=False) | st.text(max_size=8), min_size=1, max_size=4
)

requests = st.builds(
    lambda data, loss_fn, config, model_id, seq_id, fwd: ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data, loss_fn=loss_fn, loss_fn_config=config
        ),
        model_id=model_id,
        seq_id=seq_id,
        forward_only=fwd,
    ),
    st.lists(datums(), max_size=3),
    st.sampled_from(["cross_entropy", "ppo", "custom", "stable_reinforce"]),
    loss_configs,
    st.text(max_size=10),
    INT32,
    st.booleans(),
)


@st.composite
def outputs(draw: st.DrawFn) -> ForwardBackwardOutput:
    """Per-datum outputs: dense tensors with at least one dim, trailing dims non-zero."""
    fields = draw(st.lists(names, max_size=3, unique=True))
    n = draw(st.integers(0, 4))
    records = []
    for _ in range(n):
        record = {}
        for name in fields:
            arr = draw(arrays(max_dims=3).filter(lambda a: all(d > 0 for d in a.shape[1:])))
            record[name] = TensorData.from_numpy(arr)
        records.append(record)
    metrics = draw(st.dictionaries(names, st.floats(allow_nan=False), max_size=3))
    return ForwardBackwardOutput(
        loss_fn_output_type=draw(st.sampled_from(["ArrayRecord", "TorchLossReturn"])),
        loss_fn_outputs=records,
        metrics=metrics,
    )


@st.composite
def topk(draw: st.DrawFn, length: int | None = None) -> TopkLogprobs:
    n = draw(st.integers(1, 4)) if length is None else length
    k = draw(st.integers(1, 3))
    rows = []
    for _ in range(n):
        if draw(st.booleans()):
            rows.append(None)
            continue
        m = draw(st.integers(1, k))
        rows.append(
            [(draw(st.integers(1, 2**31 - 1)), draw(st.floats(-50, 0, width=32))) for _ in range(m)]
        )
    return TopkLogprobs.from_lists(rows, k)


@st.composite
def sequences(draw: st.DrawFn) -> SampledSequence:
    tokens = draw(st.lists(INT32, min_size=1, max_size=6))
    logprobs = draw(st.none() | st.lists(FLOAT32, min_size=len(tokens), max_size=len(tokens)))
    return SampledSequence(
        stop_reason=draw(st.sampled_from(["stop", "length"])),
        tokens_np=np.array(tokens, dtype=np.int32),
        logprobs_np=None if logprobs is None else np.array(logprobs, dtype=np.float32),
        topk_logprobs_np=draw(st.none() | topk(len(tokens))),
    )


@st.composite
def sample_responses(draw: st.DrawFn) -> SampleResponse:
    seqs = draw(st.lists(sequences(), max_size=3))
    prompt_logprobs = None
    if draw(st.booleans()):
        values = draw(st.lists(st.none() | FLOAT32, min_size=1, max_size=6))
        prompt_logprobs = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    alt = None
    if draw(st.booleans()):
        rows, k = draw(st.integers(0, 3)), draw(st.integers(1, 3))
        alt = PromptAltTokens(
            tokens=TensorData.from_numpy(
                np.array(
                    draw(st.lists(INT64, min_size=rows * k, max_size=rows * k)), dtype=np.int64
                ).reshape(rows, k)
            ),
            logprobs=TensorData.from_numpy(
                np.array(
                    draw(st.lists(FLOAT32, min_size=rows * k, max_size=rows * k)), dtype=np.float32
                ).reshape(rows, k)
            ),
        )
    return SampleResponse(
        sequences=seqs,
        prompt_logprobs_np=prompt_logprobs,
        topk_prompt_logprobs_np=draw(st.none() | topk()),
        target_prompt_logprobs=draw(st.none() | tensors("float32")),
        prompt_cache_hit_tokens=draw(st.integers(0, 2**31 - 1)),
        prompt_alt_tokens=alt,
    )
