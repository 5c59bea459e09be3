"""Bounds on what one request may ask of the local server: sizes, counts, lengths and time.

Every count, length and size that arrives in a request is checked against a
:class:`ServerLimits` field before any work is done, so no single request can stall the server,
exhaust its memory or fill its disk. A refused request gets a 4xx whose ``detail`` names the
limit and its value, and how to raise it::

    num_samples 100000 is over the server's limit max_num_samples = 128 (raise it with
    `tinker-actors serve --limit max_num_samples=N` or ServerLimits(max_num_samples=N))

Status codes: 413 for a body over a byte limit, 408 for a body that does not arrive in time,
503 (with ``Retry-After``) for a connection over ``max_connections``, 429 for samples over
``max_queued_samples``, 400 for everything else.

The defaults admit everything the protocol's own clients send: a forward_backward chunk the
server's client config allows (``fwdbwd_max_chunk_len`` datums, ``fwdbwd_max_chunk_bytes_count``
bytes) always fits, and so does an RL group of 128 samples. Change them with
``ServerSettings(limits=ServerLimits(...))``, ``open_local_server(limits=...)`` or
``tinker-actors serve --limit NAME=VALUE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Final

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.local._core import EngineError

__all__ = [
    "MAX_COUNTER",
    "ServerLimits",
    "check_counter",
    "check_json_depth",
    "check_stored",
    "json_depth",
    "limit_message",
    "over_limit",
]

KIB: Final = 1 << 10
MIB: Final = 1 << 20
#: Session counters (``model_seq_id``, ``sampling_session_seq_id``) and sample ``seq_id`` s name
#: records and futures: they must fit a signed 64-bit integer, as on the protobuf wire.
MAX_COUNTER: Final = (1 << 63) - 1
#: The JSON decoder recurses once per nesting level; keep every accepted depth far below
#: Python's recursion limit, whatever the caller's stack depth.
_MAX_JSON_DEPTH_SETTING: Final = 256


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """What one request may ask of the local server (see the module docstring).

    Attributes:
        max_connections: concurrent client connections; one more is answered 429 with
            ``Retry-After: 1`` and closed. Capped below the process's open-file limit.
        body_timeout: seconds a request's body may take to arrive once its head is in; a
            slower body is answered 408 and its connection closed.
        max_body_bytes: bytes of any request body, and of a zstd forward_backward body once
            decompressed (413).
        max_json_body_bytes: bytes of a JSON request body (413).
        max_json_depth: nesting of arrays and objects in a JSON body (400).
        max_metadata_bytes: bytes, JSON-encoded, of what a request asks the server to store
            with a session, run or checkpoint: tags, ``user_metadata``, project ids, display
            names (400).
        max_num_samples: ``num_samples`` of one sample request (400).
        max_sample_tokens: tokens one sample request may generate: ``num_samples`` x
            ``max_tokens`` x (1 + ``topk_sample_logprobs``), since each top-k entry costs about
            what a token does; an unset ``max_tokens`` counts as the rest of the context (400).
        max_logprobs_k: ``topk_prompt_logprobs``, ``topk_sample_logprobs`` and
            ``prompt_alt_tokens_k`` (400).
        max_stop_sequences: entries of ``sampling_params.stop`` (400).
        max_queued_samples: samples accepted and not yet finished, server-wide; beyond it a
            sample is answered 429 even without the backpressure header.
        max_datums: datums of one forward/forward_backward request (400). At least the
            ``fwdbwd_max_chunk_len`` the server announces to clients.
        max_batch_tokens: model-input tokens of one forward/forward_backward request (400).
        max_seq_id_lead: how far past a model's next expected ``seq_id`` an operation may be
            numbered (400); bounds what can queue behind a gap.
    """

    max_connections: int = 4096
    body_timeout: float = 60.0
    max_body_bytes: int = 64 * MIB
    max_json_body_bytes: int = 4 * MIB
    max_json_depth: int = 64
    max_metadata_bytes: int = 64 * KIB
    max_num_samples: int = 128
    max_sample_tokens: int = 1 << 17
    max_logprobs_k: int = 64
    max_stop_sequences: int = 64
    max_queued_samples: int = 16384
    max_datums: int = 1024
    max_batch_tokens: int = 1 << 19
    max_seq_id_lead: int = 65536

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "body_timeout":
                if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                    raise ValueError(
                        f"ServerLimits.body_timeout must be > 0 seconds, got {value!r}"
                    )
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServerLimits.{item.name} must be an integer >= 1, got {value!r}")
        if not 2 <= self.max_json_depth <= _MAX_JSON_DEPTH_SETTING:
            raise ValueError(
                f"ServerLimits.max_json_depth must be in [2, {_MAX_JSON_DEPTH_SETTING}] (deeper "
                f"JSON would approach Python's recursion limit), got {self.max_json_depth}"
            )
        if self.max_json_body_bytes > self.max_body_bytes:
            raise ValueError(
                f"ServerLimits.max_json_body_bytes ({self.max_json_body_bytes}) must not exceed "
                f"max_body_bytes ({self.max_body_bytes})"
            )

    @classmethod
    def from_flags(cls, flags: Sequence[str], base: ServerLimits | None = None) -> ServerLimits:
        """Apply ``NAME=VALUE`` items (``serve --limit``) to ``base`` (the defaults).

        Raises:
            ValueError: an unknown name, a value that is not a number, or one out of range.
        """
        known = {item.name for item in fields(cls)}
        changes: dict[str, int | float] = {}
        for flag in flags:
            name, eq, text = (part.strip() for part in flag.partition("="))
            if not eq or name not in known:
                raise ValueError(
                    f"--limit {flag!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(known))}"
                )
            if name in changes:
                raise ValueError(f"--limit {name} given twice")
            try:
                changes[name] = float(text) if name == "body_timeout" else int(text)
            except ValueError:
                raise ValueError(f"--limit {flag!r}: {text!r} is not a number") from None
        return replace(base or cls(), **changes)  # type: ignore[arg-type]


def over_limit(what: str, name: str, value: int | float, *, status: int = 400) -> EngineError:
    """The refusal of a request that exceeds ``ServerLimits.<name>`` (which is ``value``).

    Args:
        what: what the request asked for, e.g. ``"num_samples 100000"``.
        name: the ServerLimits field.
        value: the limit in force.
        status: the HTTP status (400, or 413 for a body over a byte limit).
    """
    return _engine_error(status, limit_message(what, name, value))


def _engine_error(status: int, message: str) -> EngineError:
    # imported here: _core imports this module
    from tinker_actors.local._core import EngineError

    return EngineError(status, message)


def limit_message(what: str, name: str, value: int | float) -> str:
    """The ``detail`` of a refusal: what was asked, the limit's name and value, how to raise it."""
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return (
        f"{what} is over the server's limit {name} = {shown} (raise it with "
        f"`tinker-actors serve --limit {name}=N` or ServerLimits({name}=N))"
    )


def json_depth(value: object) -> int:
    """How deeply arrays and objects nest in a decoded JSON value (a scalar is 0, ``[]`` 1)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def check_stored(limits: ServerLimits, what: str, *values: object) -> None:
    """Refuse request fields the server would store (tags, metadata, names) over the limit.

    Raises:
        EngineError: 400 naming ``max_metadata_bytes``.
    """
    size = sum(
        len(msgspec.json.encode(value))
        for value in values
        if value is not None and value is not msgspec.UNSET
    )
    if size > limits.max_metadata_bytes:
        raise over_limit(
            f"{what}: {size} bytes of tags, user_metadata and names to store",
            "max_metadata_bytes",
            limits.max_metadata_bytes,
        )


def check_json_depth(body: bytes, limit: int) -> None:
    """Refuse a JSON body whose arrays and objects nest deeper than ``limit`` (malformed JSON
    passes: the caller's decode reports it).

    Raises:
        EngineError: 400 naming ``max_json_depth``.
    """
    # only a body with more openers than the limit can nest deeper: most bodies skip the walk
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    try:
        depth = json_depth(msgspec.json.decode(body))
    except RecursionError:
        depth = limit + 1
    except msgspec.DecodeError:
        return
    if depth > limit:
        raise over_limit("a JSON body nesting deeper", "max_json_depth", limit)


def check_counter(name: str, value: int) -> None:
    """Refuse a negative or oversized session counter or sample ``seq_id`` (400)."""
    if not 0 <= value <= MAX_COUNTER:
        raise _engine_error(400, f"{name} must be in [0, 2**63 - 1], got {value}")
