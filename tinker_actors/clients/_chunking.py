"""Split a forward/forward_backward batch into requests, and merge their results.

One ``forward_backward`` call becomes one ``POST /api/v1/forward_backward`` per *chunk*
(protocol.md §9.1), each with its own ``seq_id``; the chunk results are merged back into one
:class:`~tinker_actors.types.ForwardBackwardOutput` (§9.2). Everything here is a pure function
of its arguments, so the TrainingClient actor can plan a call before sending anything::

    chunks = plan_chunks(data, max_len=flags.fwdbwd_max_chunk_len,
                         max_bytes=flags.fwdbwd_max_chunk_bytes_count)
    ...                                          # one POST per chunk, holding chunk.nbytes
    merged = combine_outputs([out_0, out_1, ...])

Chunk limits. The server announces them in ``/api/v1/client/config``
(``fwdbwd_max_chunk_len``, default 1024 datums; ``fwdbwd_max_chunk_bytes_count``, default
5,000,000 estimated bytes), and the official 0.38 client obeys exactly those. The limits are
parameters here, and their defaults are the protocol's defaults, because the requests we send
must match the official client's (wire parity) and the server owns the numbers. The "128 datums
/ 500k tokens" of design.md §5 are the constants of older SDKs (0.2x); a caller that wants
them passes ``max_len=128, max_bytes=2_000_000`` (500k tokens at 4 bytes each).

Size estimates are *proto-sized*: what the datum costs on the protobuf wire (tokens pack as
int32). Sampling prompts are estimated with the official client's coarser 10 bytes per token
(:func:`estimate_sample_bytes`, protocol.md §7.4) for its dispatch byte budget.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final, NamedTuple

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    Datum,
    DmelChunk,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    ModelInputChunk,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_MAX_CHUNK_LEN",
    "KNOWN_REDUCTIONS",
    "DataChunk",
    "chunk_data",
    "combine_metrics",
    "combine_outputs",
    "estimate_datum_bytes",
    "estimate_sample_bytes",
    "plan_chunks",
]

logger = logging.getLogger("tinker_actors.clients")

#: ``fwdbwd_max_chunk_len``'s default: at most this many datums per request.
DEFAULT_MAX_CHUNK_LEN: Final = 1024
#: ``fwdbwd_max_chunk_bytes_count``'s default: at most this many estimated bytes per request.
DEFAULT_MAX_CHUNK_BYTES: Final = 5_000_000
#: Metric reductions :func:`combine_metrics` understands (the part after the last ``:``).
KNOWN_REDUCTIONS: Final = frozenset({"mean", "sum", "min", "max", "slack", "hash2", "unique"})

# The protobuf request packs token ids as int32 and CSR row/column indices as int64.
_PROTO_BYTES_PER_TOKEN: Final = 4
_SPARSE_INDEX_BYTES: Final = 8
# The sampling dispatch budget charges prompts at this many bytes per token (protocol §7.4).
_SAMPLE_BYTES_PER_TOKEN: Final = 10
_UINT64_MASK: Final = (1 << 64) - 1


class DataChunk(NamedTuple):
    """One request's worth of datums and their estimated size in bytes."""

    data: list[Datum]
    nbytes: int


def _chunk_bytes(chunk: ModelInputChunk, bytes_per_token: int) -> int:
    if isinstance(chunk, DmelChunk):
        return len(chunk.dmel)
    if isinstance(chunk, ImageChunk):
        return len(chunk.data)
    if isinstance(chunk, ImageAssetPointerChunk):
        return len(chunk.location)
    if isinstance(chunk, EncodedTextChunk):
        return len(chunk.tokens) * bytes_per_token
    raise TypeError(f"unknown ModelInput chunk type {type(chunk).__name__}")


def estimate_datum_bytes(datum: Datum) -> int:
    """Estimate what ``datum`` costs in a protobuf forward_backward request (protocol §9.1).

    Text is 4 bytes per token, an image its encoded bytes, an image pointer the length of its
    location, audio its dmel bytes, and each ``loss_fn_inputs`` tensor its value bytes plus 8
    bytes per sparse index.

    Raises:
        TypeError: ``datum`` is not a :class:`~tinker_actors.types.Datum`.
    """
    if not isinstance(datum, Datum):
        raise TypeError(f"expected a Datum, got {type(datum).__name__}")
    total = 0
    for chunk in datum.model_input.chunks:
        total += (
            len(chunk.tokens) * _PROTO_BYTES_PER_TOKEN
            if type(chunk) is EncodedTextChunk  # the common chunk, without the type tests
            else _chunk_bytes(chunk, _PROTO_BYTES_PER_TOKEN)
        )
    for tensor in datum.loss_fn_inputs.values():
        total += tensor.nbytes
    return total


def estimate_sample_bytes(prompt: ModelInput) -> int:
    """Estimate a sampling prompt's size for the sample dispatch budget (protocol §7.4).

    Text is 10 bytes per token (the official client's figure); images, image pointers and
    audio count as in :func:`estimate_datum_bytes`.

    Raises:
        TypeError: ``prompt`` is not a :class:`~tinker_actors.types.ModelInput`.
    """
    if not isinstance(prompt, ModelInput):
        raise TypeError(f"expected a ModelInput prompt, got {type(prompt).__name__}")
    return sum(_chunk_bytes(c, _SAMPLE_BYTES_PER_TOKEN) for c in prompt.chunks)


def _check_limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    return value


def plan_chunks(
    data: Sequence[Datum],
    *,
    max_len: int = DEFAULT_MAX_CHUNK_LEN,
    max_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> list[DataChunk]:
    """Split ``data`` into request-sized chunks, in order, with each chunk's estimated bytes.

    Walk the datums in order; start a new chunk when the current one already holds
    ``max_len`` datums, or when it is non-empty and adding the next datum would take it past
    ``max_bytes``. A datum bigger than ``max_bytes`` therefore travels alone.

    Args:
        data: the batch (a list or tuple of Datum).
        max_len: the server's ``fwdbwd_max_chunk_len``.
        max_bytes: the server's ``fwdbwd_max_chunk_bytes_count``.

    Raises:
        InvalidInputError: ``data`` is empty, or a limit is not a positive int.
        TypeError: ``data`` is not a sequence of Datum.
    """
    max_len = _check_limit("max_len", max_len)
    max_bytes = _check_limit("max_bytes", max_bytes)
    if not isinstance(data, list | tuple):
        raise TypeError(f"data must be a list of Datum, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidInputError("No data provided: forward/forward_backward need at least 1 Datum")
    chunks: list[DataChunk] = []
    current: list[Datum] = []
    current_bytes = 0
    for index, datum in enumerate(data):
        if not isinstance(datum, Datum):
            raise TypeError(f"data[{index}] must be a Datum, got {type(datum).__name__}")
        size = estimate_datum_bytes(datum)
        if current and (len(current) >= max_len or current_bytes + size > max_bytes):
            chunks.append(DataChunk(current, current_bytes))
            current, current_bytes = [], 0
        current.append(datum)
        current_bytes += size
    chunks.append(DataChunk(current, current_bytes))
    return chunks


def chunk_data(
    data: Sequence[Datum],
    *,
    max_len: int = DEFAULT_MAX_CHUNK_LEN,
    max_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> list[list[Datum]]:
    """Split ``data`` into request-sized chunks, in order (see :func:`plan_chunks`)."""
    return [chunk.data for chunk in plan_chunks(data, max_len=max_len, max_bytes=max_bytes)]


def _weighted_mean(values: list[float], weights: list[int]) -> float:
    total = sum(weights)
    if total == 0:  # every chunk empty: nothing to weight by, fall back to a plain mean
        return math.fsum(values) / len(values)
    return math.fsum(v * w for v, w in zip(values, weights, strict=True)) / total


def _hash2(values: list[float]) -> int | None:
    total = 0
    for value in values:
        if not math.isfinite(value):
            return None
        total = (total + (int(value) & _UINT64_MASK)) & _UINT64_MASK
    return total


def combine_metrics(
    metrics: Sequence[dict[str, float]], weights: Sequence[int]
) -> dict[str, float]:
    """Merge per-chunk metrics keyed ``"name:reduction"`` (protocol §9.2).

    Only keys present in every chunk survive. The reduction after the last ``:`` says how:
    ``mean`` (weighted by ``weights``), ``sum``, ``min``, ``max``, ``slack`` (max minus the
    weighted mean), ``hash2`` (sum as uint64, wrapping mod 2**64), ``unique`` (the first value
    under the key, the others under ``key_2``, ``key_3``, ...). Keys with another reduction, or
    none, are dropped. A single chunk's metrics come back unchanged (minus dropped keys): the
    official client would turn a lone ``slack`` into 0, discarding the server's value.

    Args:
        metrics: each chunk's metrics, in chunk order.
        weights: each chunk's number of outputs (datums), same order.

    Raises:
        InvalidInputError: no chunks, or ``weights`` does not match ``metrics``.
    """
    if not metrics:
        raise InvalidInputError("combine_metrics needs at least one chunk's metrics")
    if len(weights) != len(metrics):
        raise InvalidInputError(
            f"combine_metrics: {len(metrics)} metric dicts but {len(weights)} weights"
        )
    weight_list = list(weights)
    out: dict[str, float] = {}
    for key in metrics[0]:
        reduction = key.rpartition(":")[2] if ":" in key else ""
        if reduction not in KNOWN_REDUCTIONS:
            logger.debug("dropping metric %r: unknown reduction %r", key, reduction)
            continue
        if not all(key in m for m in metrics):
            continue
        values = [float(m[key]) for m in metrics]
        if len(values) == 1:
            out[key] = metrics[0][key]
        elif reduction == "mean":
            out[key] = _weighted_mean(values, weight_list)
        elif reduction == "sum":
            out[key] = math.fsum(values)
        elif reduction == "min":
            out[key] = min(values)
        elif reduction == "max":
            out[key] = max(values)
        elif reduction == "slack":
            out[key] = max(values) - _weighted_mean(values, weight_list)
        elif reduction == "hash2":
            hashed = _hash2(values)
            if hashed is None:
                logger.debug("dropping metric %r: a chunk's value is not finite", key)
                continue
            out[key] = hashed
        else:  # unique
            out[key] = values[0]
            for i, value in enumerate(values[1:], start=2):
                out[f"{key}_{i}"] = value
    return out


def combine_outputs(outputs: Sequence[ForwardBackwardOutput]) -> ForwardBackwardOutput:
    """Merge the results of one call's chunks, given in chunk order (protocol §9.2).

    ``loss_fn_outputs`` are concatenated, ``loss_fn_output_type`` is the first chunk's, and
    metrics merge as :func:`combine_metrics` says, each chunk weighted by its number of outputs.

    Raises:
        InvalidInputError: ``outputs`` is empty.
    """
    if not outputs:
        raise InvalidInputError("combine_outputs needs at least one chunk's output")
    merged = [record for output in outputs for record in output.loss_fn_outputs]
    metrics = combine_metrics(
        [o.metrics for o in outputs], [len(o.loss_fn_outputs) for o in outputs]
    )
    return ForwardBackwardOutput(
        loss_fn_output_type=outputs[0].loss_fn_output_type,
        loss_fn_outputs=merged,
        metrics=metrics,
    )
