"""Refused training requests consume their ``seq_id``, so one bad request fails alone.

The client reserves a model's ``seq_id`` s in call order and the server runs them in that order
(:mod:`~tinker_actors.local._ordering`). If the server refused a request at submission (bad
input it read: 400, 404 or 422) and kept waiting for its id, every later request of that model
would wait behind a hole that can never be filled. The hosted service does not do that: a
refused request fails alone and the client goes on with the next id. So here a refusal with one
of :data:`CONSUMING_STATUSES` *consumes* the id when the request named a live model and an id
the model still expects: nothing runs at it, and the next one proceeds.

Statuses outside that set (401/403 before the body is read, 409 duplicates, 410 gone, 413 bodies
too large to read, 429, 5xx) leave the order alone: the server may not have read the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec
import zstandard

from tinker_actors.transport.proto._wire import LEN, VARINT, as_int32, iter_fields

if TYPE_CHECKING:
    from tinker_actors.local._core import EngineCore

__all__ = ["CONSUMING_STATUSES", "consume_refused", "peek_json_ids", "peek_proto_ids"]

#: Refusals of a request the server read: its seq_id is consumed (the client agrees).
CONSUMING_STATUSES: Final = frozenset({400, 404, 422})
#: How much of a zstd body is decompressed to find its model_id and seq_id (fields 1, 2 first).
_PEEK_BYTES: Final = 4096


class _Ids(msgspec.Struct):
    model_id: object = None
    seq_id: object = None


def peek_json_ids(body: bytes) -> tuple[object, object]:
    """Return ``(model_id, seq_id)`` of a JSON training body that failed to decode, if any."""
    try:
        ids = msgspec.json.decode(body, type=_Ids)
    except (msgspec.MsgspecError, RecursionError):  # a body nesting too deep, refused already
        return None, None
    return ids.model_id, ids.seq_id


def peek_proto_ids(body: bytes, content_encoding: str | None) -> tuple[object, object]:
    """Return ``(model_id, seq_id)`` of a forward_backward body that failed to decode, if any.

    Reads only the leading fields (the SDKs write model_id and seq_id first); anything
    unreadable gives ``(None, None)``.
    """
    encoding = (content_encoding or "identity").strip().lower()
    try:
        if encoding == "zstd":
            with zstandard.ZstdDecompressor().stream_reader(body) as reader:
                body = reader.read(_PEEK_BYTES)
        elif encoding != "identity":
            return None, None
        model_id: object = None
        seq_id: object = None
        for number, wire_type, a, b in iter_fields(body, 0, len(body)):
            if number == 1 and wire_type == LEN:
                model_id = body[a:b].decode("utf-8")
            elif number == 2 and wire_type == VARINT:
                seq_id = as_int32(a)
            if model_id is not None and seq_id is not None:
                break
    except (ValueError, zstandard.ZstdError):  # ProtobufDecodeError is a ValueError
        return None, None
    return model_id, seq_id


def consume_refused(core: EngineCore, model_id: object, seq_id: object, status: int) -> bool:
    """Consume ``seq_id`` of ``model_id`` after a refusal with ``status``; say if it was."""
    if status not in CONSUMING_STATUSES or not isinstance(model_id, str):
        return False
    if not isinstance(seq_id, int) or isinstance(seq_id, bool):
        return False
    model = core.models.get(model_id)
    # only the owner's refusals count: another key's request gets 404 and changes nothing
    if model is None or not core.visible_session(model.record.session_id):
        return False
    sequencer = model.sequencer
    if seq_id > sequencer.next_seq_id + core.settings.limits.max_seq_id_lead:
        return False  # far ahead: reserving it would hold memory for an id never coming
    if not sequencer.refuse(seq_id):
        return False
    core.counters["refused_seq_ids"] += 1
    return True
