"""SessionManager: the session every training and sampling client belongs to.

The first request that needs a session triggers the bootstrap of protocol.md §2, in order:

1. ``POST /api/v1/client/config`` with the raw credential: the server's feature flags;
2. auth setup: with ``pjwt_auth_enabled`` the transport switches to JWTs (exchanged lazily);
3. ``POST /api/v1/client/dynamic_config`` (10 s, no HTTP retries; a 404 means defaults);
4. ``POST /api/v1/create_session``: the session id;
5. background loops: a heartbeat every 10 s (the first 10 s after creation) and the dynamic
   config refresh every ``max(refresh_interval_sec, 10)`` s.

Later callers queue in the mailbox behind the bootstrap and get the same :class:`SessionHandle`.
A failed bootstrap fails its callers and the next request tries again from step 1.

Heartbeats never retry; failures are ignored except that after 120 s without a success each
cycle logs a warning. ``410 Gone`` means the session finished, once confirmed: the beat is
repeated twice (after 2 s, then 5 s) and only three 410s in a row stop the loop and mark the
handle lost; later requests for the session then raise
:class:`~tinker_actors.errors.SessionLostError`. :class:`Finish` closes the session with ``success``, ``errored`` or
``interrupted``, once (the first reason wins, server-side too).

The manager also keeps the session's counters: ``model_seq_id`` for training clients and
``sampling_session_seq_id`` for sampling sessions (shared with ephemeral sampler saves).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, Literal, final

import trio
from msgspec import UNSET

from tinker_actors._version import PROTOCOL_VERSION
from tinker_actors.actors._poller import run_hosted_actor
from tinker_actors.backoff import SUBMISSION_BUDGET, retryable_status, submission_delay
from tinker_actors.errors import (
    APIConnectionError,
    APIStatusError,
    NotFoundError,
    SessionLostError,
)
from tinker_actors.supervisors import Actor, ChildSpec, Reply, Restart
from tinker_actors.transport import RequestOptions
from tinker_actors.types import (
    ClientConfigRequest,
    ClientConfigResponse,
    ClientDynamicConfigRequest,
    ClientDynamicConfigResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    FinishSessionRequest,
    SessionHeartbeatRequest,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.config import Config
    from tinker_actors.supervisors import ActorRef
    from tinker_actors.transport import Response, Transport

__all__ = [
    "GONE_CONFIRM_DELAYS",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_WARN_AFTER",
    "Ensure",
    "Finish",
    "FinishStatus",
    "Reserve",
    "SessionHandle",
    "SessionManager",
    "SessionMessage",
    "fetch_dynamic_config",
    "fetch_flags",
    "finish_session",
    "heartbeat_loop",
    "holder_retries",
    "session_spec",
]

logger = logging.getLogger("tinker_actors.session")

HEARTBEAT_INTERVAL: Final = 10.0
HEARTBEAT_TIMEOUT: Final = 10
HEARTBEAT_WARN_AFTER: Final = 120.0
#: After a heartbeat 410, beat again after each of these delays (s); only a 410 every time
#: declares the session lost (a single 410 may come from a proxy or a restarting server).
GONE_CONFIRM_DELAYS: Final = (2.0, 5.0)
DYNAMIC_CONFIG_TIMEOUT: Final = 10
MIN_REFRESH_INTERVAL: Final = 10.0

FinishStatus = Literal["success", "errored", "interrupted"]


@final
class SessionHandle:
    """A live session as clients see it: its id and the server's flags.

    ``dynamic_config`` is replaced by the manager's refresh loop (single writer); readers see the
    latest values. ``lost`` becomes True when the server confirms the session is gone (410s) and
    ``finished`` when this client finished it. A single 410 does not make it lost: the
    heartbeat loop confirms it first (see :data:`GONE_CONFIRM_DELAYS`).
    """

    __slots__ = ("client_config", "dynamic_config", "finished", "lost", "session_id")

    def __init__(
        self,
        session_id: str,
        client_config: ClientConfigResponse,
        dynamic_config: ClientDynamicConfigResponse,
    ) -> None:
        self.session_id = session_id
        self.client_config = client_config
        self.dynamic_config = dynamic_config
        self.lost = False
        self.finished: FinishStatus | None = None

    def __repr__(self) -> str:
        state = "lost" if self.lost else (f"finished:{self.finished}" if self.finished else "live")
        return f"<SessionHandle {self.session_id} {state}>"


@final
class Ensure:
    """Bootstrap if needed; reply with the :class:`SessionHandle`."""

    __slots__ = ("reply",)

    def __init__(self, reply: Reply[SessionHandle]) -> None:
        self.reply = reply


@final
class Reserve:
    """Take the next ``model`` or ``sampling`` seq id of the session (bootstrapping if needed)."""

    __slots__ = ("counter", "reply")

    def __init__(
        self, counter: Literal["model", "sampling"], reply: Reply[tuple[SessionHandle, int]]
    ) -> None:
        self.counter = counter
        self.reply = reply


@final
class Finish:
    """Finish the session (if one was created) with ``status``; reply True if one was."""

    __slots__ = ("detail", "reply", "status")

    def __init__(self, status: FinishStatus, detail: str | None, reply: Reply[bool]) -> None:
        self.status = status
        self.detail = detail
        self.reply = reply


SessionMessage = Ensure | Reserve | Finish


async def holder_retries(
    send: Callable[[], Awaitable[Response]], *, what: str, budget: float = SUBMISSION_BUDGET
) -> Response:
    """Send, retrying retryable failures with ``min(2**a, 30)`` s sleeps for up to 300 s.

    This is the submission layer above the transport's own HTTP retries (protocol §7.3): it
    retries connection failures and 408/409/429/5xx that survived the HTTP layer, then raises.
    """
    started = trio.current_time()
    attempt = 0
    while True:
        try:
            return await send()
        except APIStatusError as exc:
            if not retryable_status(exc.status_code, exc.headers):
                raise
            error: Exception = exc
        except APIConnectionError as exc:
            error = exc
        delay = submission_delay(attempt, elapsed=trio.current_time() - started, budget=budget)
        if delay is None:
            raise error
        logger.info("%s failed (%s); retrying in %.1f s", what, type(error).__name__, delay)
        await trio.sleep(delay)
        attempt += 1


class SessionManager(Actor[SessionMessage]):
    """Owns the session: bootstrap, counters, heartbeat, dynamic config refresh, finish."""

    def __init__(
        self,
        nursery: trio.Nursery,
        transport: Transport,
        config: Config,
        *,
        on_ready: Callable[[SessionHandle], None] | None = None,
        user_metadata: dict[str, Any] | None = None,
        display_name: str | None = None,
    ) -> None:
        self._nursery = nursery
        self._user_metadata = dict(user_metadata or {})
        self._display_name = display_name
        self._transport = transport
        self._config = config
        self._on_ready = on_ready
        self._handle: SessionHandle | None = None
        self._model_seq = 0
        self._sampling_seq = 0
        self.heartbeats_sent = 0
        self.heartbeats_ok = 0

    async def handle(self, message: SessionMessage) -> None:
        match message:
            case Ensure(reply=reply):
                handle = await self._ensure(reply)
                if handle is not None:
                    reply.send(handle)
            case Reserve(counter=counter, reply=reply):
                handle = await self._ensure(reply)
                if handle is None:
                    return
                if counter == "model":
                    seq, self._model_seq = self._model_seq, self._model_seq + 1
                else:
                    seq, self._sampling_seq = self._sampling_seq, self._sampling_seq + 1
                reply.send((handle, seq))
            case Finish(status=status, detail=detail, reply=reply):
                reply.send(await self._finish(status, detail))

    async def _ensure(
        self, reply: Reply[SessionHandle] | Reply[tuple[SessionHandle, int]]
    ) -> SessionHandle | None:
        """Return the session, bootstrapping first if needed; on failure fail ``reply``."""
        handle = self._handle
        if handle is not None and not handle.lost and handle.finished is None:
            return handle
        if handle is not None:
            if handle.finished:
                reply.fail(
                    APIConnectionError(
                        f"session {handle.session_id} was finished by this client; open a new "
                        "runtime for a new session"
                    )
                )
            else:
                reply.fail(SessionLostError(handle.session_id))
            return None
        if reply.abandoned:
            return None
        try:
            handle = await self._bootstrap()
        except Exception as exc:
            reply.fail(exc)
            return None
        self._handle = handle
        if self._on_ready is not None:
            self._on_ready(handle)
        self._nursery.start_soon(self._heartbeat, handle, name="session heartbeat")
        self._nursery.start_soon(self._refresh, handle, name="session dynamic config")
        return handle

    async def _bootstrap(self) -> SessionHandle:
        transport = self._transport
        flags, dynamic = await fetch_flags(transport)
        config = self._config
        created = await holder_retries(
            lambda: transport.request(
                "POST",
                "/api/v1/create_session",
                json=CreateSessionRequest(
                    tags=list(config.tags),
                    user_metadata=self._user_metadata,
                    sdk_version=PROTOCOL_VERSION,
                    project_id=config.project_id,
                    display_name=UNSET if self._display_name is None else self._display_name,
                ),
            ),
            what="create_session",
        )
        session = created.decode(CreateSessionResponse)
        for level, text in (
            (logging.INFO, session.info_message),
            (logging.WARNING, session.warning_message),
            (logging.ERROR, session.error_message),
        ):
            if text:
                logger.log(level, "server: %s", text)
        logger.info("session %s created", session.session_id)
        return SessionHandle(session.session_id, flags, dynamic)

    async def _heartbeat(self, handle: SessionHandle) -> None:
        """Beat every 10 s; warn after 120 s without success; stop on 410 or finish."""

        def counted(ok: bool) -> None:
            self.heartbeats_sent += 1
            self.heartbeats_ok += ok

        await heartbeat_loop(
            self._transport, handle, keep_going=lambda: self._beating(handle), on_beat=counted
        )

    @staticmethod
    def _beating(handle: SessionHandle) -> bool:
        # A method call, so mypy re-reads fields another task may have changed across awaits.
        return handle.finished is None and not handle.lost

    async def _refresh(self, handle: SessionHandle) -> None:
        """Refresh the dynamic flags; a failed refresh keeps the last-known values."""
        while self._beating(handle):
            interval = max(float(handle.dynamic_config.refresh_interval_sec), MIN_REFRESH_INTERVAL)
            await trio.sleep(interval)
            try:
                handle.dynamic_config = await fetch_dynamic_config(self._transport)
            except Exception as exc:  # keep the old flags; a refresh is never fatal
                logger.debug("dynamic config refresh failed: %s", type(exc).__name__)

    async def _finish(self, status: FinishStatus, detail: str | None) -> bool:
        if self._handle is None:
            return False
        return await finish_session(self._transport, self._handle, status, detail)


async def finish_session(
    transport: Transport, handle: SessionHandle, status: FinishStatus, detail: str | None
) -> bool:
    """Send the session's ``finish`` once (later calls do nothing); return whether it was sent.

    A module function, not only a manager message, so that leaving ``open()`` can still finish
    the session when the manager itself was cancelled along with the rest of the tree.
    """
    if handle.finished is not None:
        return False
    handle.finished = status
    if handle.lost:
        return False
    try:
        await holder_retries(
            lambda: transport.request(
                "POST",
                f"/api/v1/sessions/{handle.session_id}/finish",
                json=FinishSessionRequest.for_status(status, detail),
                # leaving open() is this SDK's ServiceClient.close (wire parity with 0.38)
                sdk_method="ServiceClient.close",
            ),
            what="finish session",
        )
    except APIStatusError as exc:
        if exc.status_code != 410:  # already finished or expired: nothing to do
            logger.warning("finishing session %s failed: %s", handle.session_id, exc)
        return False
    return True


async def fetch_flags(
    transport: Transport,
) -> tuple[ClientConfigResponse, ClientDynamicConfigResponse]:
    """Bootstrap steps 1-3 of protocol §2, without creating a session.

    ``client/config`` with the raw credential, then the transport's auth (JWT switch) and
    billing pause from those flags, then ``dynamic_config`` (a 404 means its defaults).
    """
    response = await holder_retries(
        lambda: transport.request(
            "POST",
            "/api/v1/client/config",
            json=ClientConfigRequest(sdk_version=PROTOCOL_VERSION),
            options=RequestOptions(raw_credential=True),
        ),
        what="client/config",
    )
    flags = response.decode(ClientConfigResponse)
    transport.configure(
        jwt_auth=flags.pjwt_auth_enabled,
        jwt_credential_source=flags.credential_default_source,
        billing_max_pause=float(flags.billing_exception_max_pause_duration_sec),
    )
    return flags, await fetch_dynamic_config(transport)


async def fetch_dynamic_config(transport: Transport) -> ClientDynamicConfigResponse:
    """Fetch the dynamic flags; a 404 (server predates them) means the defaults."""
    try:
        response = await holder_retries(
            lambda: transport.request(
                "POST",
                "/api/v1/client/dynamic_config",
                json=ClientDynamicConfigRequest(sdk_version=PROTOCOL_VERSION),
                options=RequestOptions(timeout=DYNAMIC_CONFIG_TIMEOUT, max_retries=0),
            ),
            what="client/dynamic_config",
        )
    except NotFoundError:
        return ClientDynamicConfigResponse()
    return response.decode(ClientDynamicConfigResponse)


async def _beat(
    transport: Transport,
    body: SessionHeartbeatRequest,
    on_beat: Callable[[bool], None] | None,
) -> int | str | None:
    """Send one heartbeat; return None on success, else the status code or the error's name."""
    options = RequestOptions(timeout=HEARTBEAT_TIMEOUT, max_retries=0, billing_pause=False)
    outcome: int | str | None
    try:
        await transport.request("POST", "/api/v1/session_heartbeat", json=body, options=options)
    except APIStatusError as exc:
        outcome = exc.status_code
    except APIConnectionError as exc:
        outcome = type(exc).__name__
    else:
        outcome = None
    if on_beat is not None:
        on_beat(outcome is None)
    return outcome


async def heartbeat_loop(
    transport: Transport,
    handle: SessionHandle,
    *,
    keep_going: Callable[[], bool] = lambda: True,
    on_beat: Callable[[bool], None] | None = None,
) -> None:
    """Heartbeat ``handle``'s session every 10 s until it is gone (410) or ``keep_going`` fails.

    Protocol §8.3: no retries; failures are ignored except a warning per cycle once 120 s
    passed without a success. Used by the owner's SessionManager and by shadow sessions.

    A 410 is confirmed before the session is declared lost: one spurious 410 (a proxy, a
    server restarting, a load balancer routing to a stale node) used to end the session for
    the rest of the runtime, although the server's session was alive. The beat is repeated
    after each of :data:`GONE_CONFIRM_DELAYS`; only a 410 every time marks the handle lost. A
    success on the way means the session lives; any other failure is inconclusive and the
    regular cycle goes on.
    """
    last_ok = trio.current_time()
    body = SessionHeartbeatRequest(session_id=handle.session_id)
    while True:
        await trio.sleep(HEARTBEAT_INTERVAL)
        if not keep_going():
            return
        outcome = await _beat(transport, body, on_beat)
        if outcome == 410:
            outcome = await _confirm_gone(transport, handle, body, keep_going, on_beat)
            if outcome == 410:
                handle.lost = True
                logger.warning(
                    "session %s is gone: the server answered %d heartbeats with 410 over %.0f s; "
                    "heartbeats stop",
                    handle.session_id,
                    len(GONE_CONFIRM_DELAYS) + 1,
                    sum(GONE_CONFIRM_DELAYS),
                )
                return
            if not keep_going():
                return
        if outcome is None:
            last_ok = trio.current_time()
            continue
        failure = f"HTTP {outcome}" if isinstance(outcome, int) else outcome
        silent = trio.current_time() - last_ok
        if silent > HEARTBEAT_WARN_AFTER:
            logger.warning(
                "Session heartbeat failed for %.0f seconds (%s); the session %s will be "
                "terminated by the server if this continues",
                silent,
                failure,
                handle.session_id,
            )
        else:
            logger.debug("heartbeat failed (%s)", failure)


async def _confirm_gone(
    transport: Transport,
    handle: SessionHandle,
    body: SessionHeartbeatRequest,
    keep_going: Callable[[], bool],
    on_beat: Callable[[bool], None] | None,
) -> int | str | None:
    """Re-beat after each confirmation delay; return 410 only if every answer was 410."""
    outcome: int | str | None = 410
    for delay in GONE_CONFIRM_DELAYS:
        await trio.sleep(delay)
        if not keep_going():
            return None
        outcome = await _beat(transport, body, on_beat)
        if outcome != 410:
            logger.info(
                "session %s: a heartbeat 410 was not confirmed (%s); the session lives",
                handle.session_id,
                "HTTP 200" if outcome is None else outcome,
            )
            return outcome
    return outcome


def session_spec(
    transport: Transport,
    config: Config,
    *,
    on_ready: Callable[[SessionHandle], None] | None = None,
    id: str = "session",
    shutdown: float = 5.0,
    user_metadata: dict[str, Any] | None = None,
    display_name: str | None = None,
) -> ChildSpec[ActorRef[SessionMessage]]:
    """Return the spec of a SessionManager (TEMPORARY: a lost manager is not silently replaced).

    ``user_metadata`` and ``display_name`` are sent in ``create_session``.
    """

    def factory(nursery: trio.Nursery) -> SessionManager:
        return SessionManager(
            nursery,
            transport,
            config,
            on_ready=on_ready,
            user_metadata=user_metadata,
            display_name=display_name,
        )

    return ChildSpec(
        id, run_hosted_actor, factory, id, restart=Restart.TEMPORARY, shutdown=shutdown
    )
