"""``ForwardBackwardOutput`` and ``SampleResponse`` results: decode (client), encode (server).

Protocol §5.3. A forward_backward result is one or more ``ArrayRecord`` chunks; each field of a
chunk is a ``BatchedTensor`` holding every datum of the chunk back to back, cut by int64 byte
``offsets``; a datum's shape is ``[numel / prod(trailing_shape), *trailing_shape]``. Sample
results carry int32 tokens, float32 logprobs (NaN = not computed) and padded top-k matrices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np

from tinker_actors.errors import InvalidInputError
from tinker_actors.transport.proto._tensors import (
    decode_batched_tensor,
    decode_tensor,
    encode_batched_tensor,
    encode_tensor,
    trailing_shape,
)
from tinker_actors.transport.proto._wire import (
    FIXED64,
    LEN,
    VARINT,
    MessageWriter,
    ProtobufDecodeError,
    array_view,
    as_int32,
    as_int64,
    expect,
    iter_fields,
    key,
    read_array,
    read_double,
    read_string,
)
from tinker_actors.types._forward_backward import ForwardBackwardOutput
from tinker_actors.types._sample_result import (
    PromptAltTokens,
    SampledSequence,
    SampleResponse,
    StopReason,
    TopkLogprobs,
    decoded_response,
    decoded_sequence,
)
from tinker_actors.types._tensor import TensorData, TensorDtype

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "decode_forward_backward_output",
    "decode_sample_response",
    "encode_forward_backward_output",
    "encode_sample_response",
]

#: the tokens of a sequence that has none (read-only, shared)
_NO_TOKENS: Final = np.zeros(0, dtype=np.int32)
_NO_TOKENS.flags.writeable = False
_STOP_TO_WIRE: Final[dict[str, int]] = {"stop": 0, "length": 1}
_STOP_FROM_WIRE: Final[dict[int, StopReason]] = {0: "stop", 1: "length"}
_I32: Final = np.dtype(np.int32)
_F32: Final = np.dtype(np.float32)

_F1_LEN = key(1, LEN)
_F2_LEN = key(2, LEN)
_F3_LEN = key(3, LEN)
_F4_LEN = key(4, LEN)
_F5_LEN = key(5, LEN)
_F6_LEN = key(6, LEN)
_F1_VARINT = key(1, VARINT)
_F3_VARINT = key(3, VARINT)
_F4_VARINT = key(4, VARINT)
_E_VALUE_DOUBLE = key(2, FIXED64)


# -- ForwardBackwardOutput ------------------------------------------------------------------------


def _signature(
    record: dict[str, TensorData],
) -> tuple[tuple[str, TensorDtype, tuple[int, ...]], ...]:
    return tuple((name, td.dtype, trailing_shape(td)) for name, td in record.items())


def encode_forward_backward_output(out: ForwardBackwardOutput) -> bytes:
    """Encode a forward/forward_backward result (server side).

    Consecutive datums whose outputs share field names, dtypes and trailing shapes go into one
    ``ArrayRecord``; a change starts the next record, so ragged outputs stay exact.
    """
    w = MessageWriter()
    if out.loss_fn_output_type:
        w.string(_F1_LEN, out.loss_fn_output_type)
    runs: list[list[dict[str, TensorData]]] = []
    last: object = None
    for record in out.loss_fn_outputs:
        sig = _signature(record)
        if not runs or sig != last:
            runs.append([])
            last = sig
        runs[-1].append(record)
    for run in runs:
        rec = MessageWriter()
        for name in run[0]:
            entry = MessageWriter()
            entry.string(_F1_LEN, name)
            entry.message(_F2_LEN, encode_batched_tensor([r[name] for r in run]))
            rec.message(_F2_LEN, entry)
        rec.uint(_F3_VARINT, len(run))
        w.message(_F2_LEN, rec)
    for name, value in out.metrics.items():
        entry = MessageWriter()
        entry.string(_F1_LEN, name)
        entry.double(_E_VALUE_DOUBLE, float(value))
        w.message(_F3_LEN, entry)
    return w.getvalue()


def decode_forward_backward_output(body: bytes) -> ForwardBackwardOutput:
    """Decode a forward/forward_backward result (client side).

    Raises:
        ProtobufDecodeError: malformed protobuf, unknown dtypes, offsets or shapes that do not
            add up, or fields whose datum counts disagree.
    """
    buf = bytes(body)
    output_type = ""
    metrics: dict[str, float] = {}
    per_field: dict[str, list[TensorData]] = {}
    declared = 0
    records = 0
    for number, wt, a, b in iter_fields(buf, 0, len(buf)):
        if number == 1:
            expect(wt, LEN, "loss_fn_output_type")
            output_type = read_string(buf, a, b, "loss_fn_output_type")
        elif number == 2:
            expect(wt, LEN, "loss_fn_outputs")
            declared += _decode_record(buf, a, b, records, per_field)
            records += 1
        elif number == 3:
            expect(wt, LEN, "metrics")
            name, value = "", 0.0
            for n, t, x, y in iter_fields(buf, a, b):
                if n == 1:
                    expect(t, LEN, "metrics key")
                    name = read_string(buf, x, y, "metrics key")
                elif n == 2:
                    expect(t, FIXED64, f"metrics[{name!r}]")
                    value = read_double(buf, x)
            metrics[name] = value
    if records == 0:
        return ForwardBackwardOutput(
            loss_fn_output_type=output_type or "ArrayRecord", loss_fn_outputs=[], metrics=metrics
        )
    # num_datums is authoritative (it survives servers dropping every field); encoders that
    # predate it leave it 0, and then the first field's count stands in.
    count = declared or (len(next(iter(per_field.values()))) if per_field else 0)
    for name, tensors in per_field.items():
        if len(tensors) != count:
            raise ProtobufDecodeError(
                f"loss_fn_outputs: field {name!r} has {len(tensors)} datums, expected {count}"
            )
    outputs = [{name: tensors[i] for name, tensors in per_field.items()} for i in range(count)]
    return ForwardBackwardOutput(
        loss_fn_output_type=output_type.rsplit(":", 1)[-1],
        loss_fn_outputs=outputs,
        metrics=metrics,
    )


def _decode_record(
    buf: bytes, a: int, b: int, index: int, per_field: dict[str, list[TensorData]]
) -> int:
    num_datums = 0
    what = f"loss_fn_outputs[{index}]"
    counts: dict[str, int] = {}
    for number, wt, x, y in iter_fields(buf, a, b):
        if number == 2:
            expect(wt, LEN, f"{what}.fields")
            name = ""
            value: tuple[int, int] | None = None
            for n, t, p, q in iter_fields(buf, x, y):
                if n == 1:
                    expect(t, LEN, f"{what}.fields key")
                    name = read_string(buf, p, q, what)
                elif n == 2:
                    expect(t, LEN, f"{what}.fields value")
                    value = (p, q)
            field = f"{what}.fields[{name!r}]"
            arrays, dtype, _ = decode_batched_tensor(buf, *(value or (0, 0)), field)
            counts[name] = len(arrays)
            per_field.setdefault(name, []).extend(
                TensorData._trusted(arr, dtype, arr.shape) for arr in arrays
            )
        elif number == 3:
            expect(wt, VARINT, f"{what}.num_datums")
            num_datums = as_int64(x)
            if num_datums < 0:
                raise ProtobufDecodeError(f"{what}: negative num_datums")
    if num_datums and any(c != num_datums for c in counts.values()):
        raise ProtobufDecodeError(f"{what}: fields disagree with num_datums={num_datums}")
    return num_datums


# -- SampleResponse -------------------------------------------------------------------------------


def _encode_topk(topk: TopkLogprobs) -> MessageWriter:
    w = MessageWriter()
    n, k = topk.token_ids.shape
    ids = np.asarray(topk.token_ids)
    if ids.dtype != np.int32:
        ids = _checked_int32(ids, "top-k token ids")
    if ids.size:
        w.blob(_F1_LEN, array_view(ids))
        w.blob(_F2_LEN, array_view(np.asarray(topk.logprobs, dtype=np.float32)))
    if k:
        w.uint(_F3_VARINT, k)
    if n:
        w.uint(_F4_VARINT, n)
    return w


def _checked_int32(values: npt.NDArray[Any], what: str) -> npt.NDArray[np.int32]:
    if values.size and (int(values.min()) < -(2**31) or int(values.max()) >= 2**31):
        raise InvalidInputError(f"{what} must fit int32")
    return values.astype(np.int32)


def encode_sample_response(resp: SampleResponse) -> bytes:
    """Encode a sample result (server side); ``None`` prompt logprobs travel as NaN."""
    w = MessageWriter()
    for seq in resp.sequences:
        s = MessageWriter()
        if seq.stop_reason != "stop":
            s.uint(_F1_VARINT, _STOP_TO_WIRE[seq.stop_reason])
        if seq.tokens_np.size:
            s.blob(_F2_LEN, array_view(seq.tokens_np))
        if seq.logprobs_np is not None:
            s.blob(_F3_LEN, array_view(seq.logprobs_np))
        if seq.topk_logprobs_np is not None:
            s.message(_F4_LEN, _encode_topk(seq.topk_logprobs_np))
        w.message(_F1_LEN, s)
    if resp.prompt_logprobs_np is not None:
        w.blob(_F2_LEN, array_view(resp.prompt_logprobs_np))
    if resp.topk_prompt_logprobs_np is not None:
        w.message(_F3_LEN, _encode_topk(resp.topk_prompt_logprobs_np))
    if resp.prompt_cache_hit_tokens:
        w.uint(key(4, VARINT), resp.prompt_cache_hit_tokens)
    if resp.target_prompt_logprobs is not None:
        w.message(_F5_LEN, encode_tensor(resp.target_prompt_logprobs, "target_prompt_logprobs"))
    if resp.prompt_alt_tokens is not None:
        alt = MessageWriter()
        alt.message(_F1_LEN, encode_tensor(resp.prompt_alt_tokens.tokens, "prompt_alt_tokens"))
        alt.message(_F2_LEN, encode_tensor(resp.prompt_alt_tokens.logprobs, "prompt_alt_tokens"))
        w.message(_F6_LEN, alt)
    return w.getvalue()


def _decode_topk(buf: bytes, a: int, b: int, what: str) -> TopkLogprobs | None:
    ids_span = lps_span = (0, 0)
    k = n = 0
    for number, wt, x, y in iter_fields(buf, a, b):
        if number == 1:
            expect(wt, LEN, f"{what}.token_ids")
            ids_span = (x, y)
        elif number == 2:
            expect(wt, LEN, f"{what}.logprobs")
            lps_span = (x, y)
        elif number == 3:
            expect(wt, VARINT, f"{what}.k")
            k = x & 0xFFFFFFFF
        elif number == 4:
            expect(wt, VARINT, f"{what}.length")
            n = x & 0xFFFFFFFF
    if n == 0 or k == 0:
        return None
    ids = read_array(buf, *ids_span, _I32, f"{what}.token_ids")
    lps = read_array(buf, *lps_span, _F32, f"{what}.logprobs")
    if ids.size != n * k or lps.size != n * k:
        raise ProtobufDecodeError(
            f"{what}: expected {n}x{k} cells, got {ids.size} ids and {lps.size} logprobs"
        )
    return TopkLogprobs(token_ids=ids.reshape(n, k), logprobs=lps.reshape(n, k))


def _decode_sequence(buf: bytes, a: int, b: int, what: str, seq_id: str | None) -> SampledSequence:
    stop = 0
    tokens = _NO_TOKENS
    logprobs: npt.NDArray[np.float32] | None = None
    topk: TopkLogprobs | None = None
    for number, wt, x, y in iter_fields(buf, a, b):
        if number == 1:
            expect(wt, VARINT, f"{what}.stop_reason")
            stop = as_int32(x)
        elif number == 2:
            expect(wt, LEN, f"{what}.tokens")
            tokens = read_array(buf, x, y, _I32, f"{what}.tokens")
        elif number == 3:
            expect(wt, LEN, f"{what}.logprobs")
            logprobs = read_array(buf, x, y, _F32, f"{what}.logprobs") if y > x else None
        elif number == 4:
            expect(wt, LEN, f"{what}.topk_sampled_logprobs")
            topk = _decode_topk(buf, x, y, f"{what}.topk_sampled_logprobs")
    reason = _STOP_FROM_WIRE.get(stop)
    if reason is None:
        raise ProtobufDecodeError(f"{what}: unknown stop_reason {stop}")
    if logprobs is not None and logprobs.size != tokens.size:
        raise ProtobufDecodeError(f"{what}: {logprobs.size} logprobs for {tokens.size} tokens")
    return decoded_sequence(reason, seq_id, tokens, logprobs, topk)


def decode_sample_response(body: bytes, *, sequence_ids: list[str] | None) -> SampleResponse:
    """Decode a sample result (client side), stamping ``sequence_ids`` on the sequences in order.

    Raises:
        ProtobufDecodeError: malformed protobuf, an unknown stop reason, sizes that do not add
            up, or a ``sequence_ids`` list whose length differs from the number of sequences.
    """
    buf = bytes(body)
    spans: list[tuple[int, int]] = []
    prompt_logprobs: npt.NDArray[np.float32] | None = None
    topk: TopkLogprobs | None = None
    cache_hits = 0
    target: TensorData | None = None
    alt: PromptAltTokens | None = None
    for number, wt, a, b in iter_fields(buf, 0, len(buf)):
        if number == 1:
            expect(wt, LEN, "sequences")
            spans.append((a, b))
        elif number == 2:
            expect(wt, LEN, "prompt_logprobs")
            prompt_logprobs = read_array(buf, a, b, _F32, "prompt_logprobs") if b > a else None
        elif number == 3:
            expect(wt, LEN, "topk_prompt_logprobs")
            topk = _decode_topk(buf, a, b, "topk_prompt_logprobs")
        elif number == 4:
            expect(wt, VARINT, "prompt_cache_hit_tokens")
            cache_hits = as_int32(a)
        elif number == 5:
            expect(wt, LEN, "target_prompt_logprobs")
            target = decode_tensor(buf, a, b, "target_prompt_logprobs")
        elif number == 6:
            expect(wt, LEN, "prompt_alt_tokens")
            alt = _decode_alt(buf, a, b)
    if sequence_ids is not None and len(sequence_ids) != len(spans):
        raise ProtobufDecodeError(
            f"the response has {len(spans)} sequences but the submission named "
            f"{len(sequence_ids)} sequence ids"
        )
    sequences = [
        _decode_sequence(buf, a, b, f"sequences[{i}]", sequence_ids[i] if sequence_ids else None)
        for i, (a, b) in enumerate(spans)
    ]
    return decoded_response(sequences, prompt_logprobs, topk, target, cache_hits, alt)


def _decode_alt(buf: bytes, a: int, b: int) -> PromptAltTokens:
    found: dict[int, TensorData] = {}
    for number, wt, x, y in iter_fields(buf, a, b):
        if number in (1, 2):
            expect(wt, LEN, "prompt_alt_tokens")
            found[number] = decode_tensor(buf, x, y, "prompt_alt_tokens")
    if 1 not in found or 2 not in found:
        raise ProtobufDecodeError("prompt_alt_tokens: tokens and logprobs are both required")
    return PromptAltTokens(tokens=found[1], logprobs=found[2])
