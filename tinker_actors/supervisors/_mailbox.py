"""Mailbox: the bounded queue in front of an actor.

A mailbox is a trio memory channel with a fixed, finite capacity. The actor owns the receive
side; every ActorRef shares the send side. Bounded is the point: when an actor falls behind,
``cast`` blocks (back-pressure reaches the producer) and ``cast_nowait`` raises
:class:`MailboxFull` instead of letting memory grow without limit.

Closing is one-way and done by the owning actor when it exits: the receive side closes, queued
messages are dropped (their callers are failed through the call ledger), and blocked or later
senders see ``trio.BrokenResourceError``, which ActorRef turns into ``ActorExited``.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar, final

import msgspec
import trio

from tinker_actors.supervisors._util import check_private

__all__ = ["DEFAULT_MAILBOX_SIZE", "Mailbox", "MailboxStatistics"]

M = TypeVar("M")

#: Mailbox capacity used when an actor does not choose one.
DEFAULT_MAILBOX_SIZE = 64


class MailboxStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a mailbox.

    Attributes:
        queued: messages waiting in the buffer.
        capacity: the bound; ``queued == capacity`` means the next cast blocks.
        senders_waiting: tasks blocked in ``cast``/``call`` because the mailbox is full.
        closed: True once the owning actor exited.
    """

    queued: int
    capacity: int
    senders_waiting: int
    closed: bool


def validate_capacity(capacity: object) -> int:
    """Return ``capacity`` if it is a usable mailbox bound, else raise a clear error."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        if isinstance(capacity, float) and math.isinf(capacity):
            raise ValueError(
                "mailbox capacity must be finite: an unbounded mailbox has no back-pressure"
            )
        raise TypeError(f"mailbox capacity must be an int, got {type(capacity).__name__}")
    if capacity < 0:
        raise ValueError(f"mailbox capacity must be >= 0, got {capacity}")
    return capacity


@final
class Mailbox(Generic[M]):
    """A bounded trio memory channel owned by one actor. Obtained from the runtime only."""

    __slots__ = ("_closed", "_receive", "_send", "capacity")

    def __init__(self, token: object, capacity: int) -> None:
        check_private(token, Mailbox)
        self.capacity = validate_capacity(capacity)
        self._send, self._receive = trio.open_memory_channel[M](capacity)
        self._closed = False

    def __repr__(self) -> str:
        stats = self.statistics()
        return f"<Mailbox {stats.queued}/{stats.capacity}{' closed' if stats.closed else ''}>"

    @property
    def closed(self) -> bool:
        """True once the owning actor exited."""
        return self._closed

    def statistics(self) -> MailboxStatistics:
        """Return queue depth, capacity, blocked senders and whether the mailbox is closed."""
        raw = self._send.statistics()
        return MailboxStatistics(
            queued=raw.current_buffer_used,
            capacity=self.capacity,
            senders_waiting=raw.tasks_waiting_send,
            closed=self._closed,
        )

    async def _put(self, message: M) -> None:
        await self._send.send(message)

    def _put_nowait(self, message: M) -> None:
        self._send.send_nowait(message)

    async def _get(self) -> M:
        return await self._receive.receive()

    def _close(self) -> None:
        """Close the receive side: drop queued messages and break every sender."""
        self._closed = True
        self._receive.close()
