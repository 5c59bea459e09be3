"""Sampler handles: a SamplingClient's identity, without its credential (protocol.md §9.9).

A handle is the URL-safe base64 of compact JSON::

    {"session_id": ..., "sampling_session_id": ..., "base_model": ...,
     "base_url": ..., "headers": {...}, "api_key": null}

It is what a SamplingClient pickles to, and what ``get_sampler_handle()`` returns. The API key
is never in it, nor any ``default_headers`` entry that may carry a credential (Authorization,
cookies, ``*-Key``, ``*-Token``, ...: :func:`~tinker_actors.transport.shareable_headers`,
applied by :func:`encode_handle` and again by :func:`decode_handle`): the receiving process resolves its own credential (its ``open()``), and
samples on the same sampling session as a *clone* with its own seq id range
(``clone_id * 1_000_000_000``, protocol §8.5): the clone id comes from
``POST /api/v1/join_sampling_session`` when the server's flag ``sample_join_sampling_session``
is on, else it is drawn at random from ``[1, 1e9]``.

The receiving runtime joins the handle's session as a *shadow holder* (protocol §2, §9.9):
:class:`ShadowSessions` creates no session of its own for it, heartbeats the original
``session_id`` (the heartbeat runs in the FuturePoller, so it stops with the runtime) and never
finishes it: the owner does. The runtime still fetches its own client config and dynamic
config once (steps 1-3 of the bootstrap) when it has no session to take them from.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from typing import TYPE_CHECKING, Any, Final, TypeAlias, final

import msgspec
import trio

from tinker_actors.actors import FutureState, SessionHandle, fetch_flags, heartbeat_loop
from tinker_actors.errors import (
    InvalidInputError,
)
from tinker_actors.transport import shareable_headers
from tinker_actors.types import (
    SEQ_IDS_PER_CLONE,
    ClientConfigResponse,
    ClientDynamicConfigResponse,
    JoinSamplingSessionRequest,
    JoinSamplingSessionResponse,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable

    from tinker_actors.transport import Transport

    #: ClientContext.watch: runs work in the runtime's FuturePoller.
    WatchFn: TypeAlias = Callable[
        [FutureState[Any], Callable[[], Awaitable[object]]], Awaitable[None]
    ]

__all__ = [
    "CLONE_STRIDE",
    "SamplerState",
    "ShadowSessions",
    "clone_id_for",
    "decode_handle",
    "encode_handle",
    "shadow_heartbeat",
]

logger = logging.getLogger("tinker_actors.session")

HEARTBEAT_INTERVAL: Final = 10.0
HEARTBEAT_TIMEOUT: Final = 10
HEARTBEAT_WARN_AFTER: Final = 120.0
DYNAMIC_CONFIG_TIMEOUT: Final = 10

Flags = tuple[ClientConfigResponse, ClientDynamicConfigResponse]

#: A clone's seq ids start at ``clone_id * CLONE_STRIDE`` (the wire constant of protocol §8.5).
CLONE_STRIDE: Final = SEQ_IDS_PER_CLONE


class SamplerState(msgspec.Struct, frozen=True, kw_only=True):
    """What identifies a SamplingClient across processes (never its credential)."""

    session_id: str
    sampling_session_id: str
    base_model: str
    base_url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    api_key: None = None
    record_stability_info: bool = False


def encode_handle(state: SamplerState) -> str:
    """Return ``state`` as URL-safe base64 of compact JSON, credential headers left out."""
    state = msgspec.structs.replace(state, headers=shareable_headers(state.headers))
    return base64.urlsafe_b64encode(msgspec.json.encode(state)).decode("ascii")


def decode_handle(handle: object) -> SamplerState:
    """Parse a handle from :func:`encode_handle`.

    Raises:
        InvalidInputError: ``handle`` is not a sampler handle.
    """
    if not isinstance(handle, str) or not handle:
        raise InvalidInputError(f"a sampler handle must be a non-empty str, got {handle!r}")
    try:
        raw = base64.urlsafe_b64decode(handle.encode("ascii"))
        state = msgspec.json.decode(raw, type=SamplerState)
    except (binascii.Error, UnicodeEncodeError, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInputError(
            "not a sampler handle (expected the string from SamplingClient.get_sampler_handle())"
        ) from exc
    # a handle from an older writer may still carry credential headers: never re-use them
    return msgspec.structs.replace(state, headers=shareable_headers(state.headers))


async def clone_id_for(
    transport: Transport,
    handle: SessionHandle,
    sampling_session_id: str,
    *,
    rng: random.Random,
    sdk_method: str,
) -> int:
    """Return a clone id: the server's ``client_counter`` when joining is on, else random."""
    if not handle.client_config.sample_join_sampling_session:
        return rng.randint(1, CLONE_STRIDE)
    response = await transport.request(
        "POST",
        "/api/v1/join_sampling_session",
        json=JoinSamplingSessionRequest(sampling_session_id=sampling_session_id),
        sdk_method=sdk_method,
    )
    return response.decode(JoinSamplingSessionResponse).client_counter


async def shadow_heartbeat(transport: Transport, handle: SessionHandle) -> None:
    """Heartbeat a session this runtime does not own until it is gone; never finish it."""
    await heartbeat_loop(transport, handle)


@final
class ShadowSessions:
    """The sessions a runtime samples on without owning them, and the flags it needs for that.

    Args:
        transport: the runtime's transport.
        own: returns the runtime's own session, if it has one (its flags are used, and a handle
            for it is not a shadow).
        on_flags: called once with the client config fetched here (the runtime sizes its
            response budget from it).
    """

    __slots__ = ("_beats", "_flags", "_lock", "_on_flags", "_own", "_transport")

    def __init__(
        self,
        transport: Transport,
        own: Callable[[], SessionHandle | None],
        on_flags: Callable[[ClientConfigResponse], None] | None = None,
    ) -> None:
        self._transport = transport
        self._own = own
        self._on_flags = on_flags
        self._flags: Flags | None = None
        self._lock = trio.Lock()
        self._beats: dict[str, tuple[SessionHandle, FutureState[Any]]] = {}

    def __repr__(self) -> str:
        return f"<ShadowSessions {sorted(self._beats)}>"

    @property
    def session_ids(self) -> list[str]:
        """The shadowed sessions whose heartbeat is running."""
        return [sid for sid, (_, beat) in self._beats.items() if not beat.done()]

    async def flags(self) -> Flags:
        """Return the server's flags: the own session's, else fetched once (no session made)."""
        own = self._own()
        if own is not None:
            return own.client_config, own.dynamic_config
        async with self._lock:
            if self._flags is None:
                self._flags = await fetch_flags(self._transport)
                if self._on_flags is not None:
                    self._on_flags(self._flags[0])
            return self._flags

    async def join(self, session_id: str, watch: WatchFn) -> SessionHandle:
        """Return a handle on ``session_id`` and keep it heartbeating (started once per id).

        Args:
            session_id: the session of a sampler handle.
            watch: runs the heartbeat in the runtime's FuturePoller (ClientContext.watch).
        """
        own = self._own()
        if own is not None and own.session_id == session_id:
            return own  # not a shadow: the runtime owns (and beats, and finishes) it
        known = self._beats.get(session_id)
        if known is not None and not known[1].done() and not known[0].lost:
            return known[0]
        config, dynamic = await self.flags()
        handle = SessionHandle(session_id, config, dynamic)
        beat: FutureState[Any] = FutureState("SessionHeartbeat")
        self._beats[session_id] = (handle, beat)
        await watch(beat, functools.partial(shadow_heartbeat, self._transport, handle))
        return handle
