"""FuturePoller: waits for server futures and resolves the client's :class:`FutureState` slots.

Every long operation is two exchanges (protocol.md §6): a submission answered at once with a
``request_id``, then ``POST /api/v1/retrieve_future`` until the result is final. The client
"sends in order and waits in parallel": the submitting actor (a TrainingClient, or a sampling
job) hands the waiting to the poller and moves on.

Pieces:

* :class:`FutureState` — a one-shot slot for a long operation's outcome (the :class:`Reply`
  analogue for work that outlives a call): value or error, ``request_id``, queue state, done
  callbacks, ``cancel()``.
* :func:`poll_future` — the long-poll loop with the exact status handling of protocol §6.2:
  ``try_again`` and 408/5xx re-poll at once, 429 and connection errors back off
  ``poll_backoff(n)``, 400 up to 3 times, 402 through the transport's billing pause, 410 raises
  :class:`FutureExpiredError`, anything else is fatal. The first poll allows a metadata-only
  answer; a ``complete_metadata`` answer reserves the payload's bytes from a shared
  :class:`ResponseBudget` before fetching it, and the bytes are held until it is decoded.
* :class:`FuturePoller` — the actor under ``root/pollers`` that hosts waiting work: each
  :class:`Watch` it receives runs as a task in the poller's own nursery, so the work lives as
  long as the poller, not as long as whoever submitted it. When the poller exits, every pending
  slot fails with :class:`~tinker_actors.supervisors.ActorExited`: nobody waits forever.
  A user-cancelled ``Sample`` slot makes the poller send ``POST /api/v1/cancel_future`` when
  the server's dynamic flag ``sample_cancel_enabled`` is on (protocol §6.5).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

import msgspec
import trio

from tinker_actors.backoff import poll_backoff
from tinker_actors.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    RequestFailedError,
    TinkerError,
)
from tinker_actors.supervisors import SHUTDOWN, Actor, ActorExited, run_actor
from tinker_actors.transport import RequestOptions
from tinker_actors.types import (
    CancelFutureRequest,
    CompleteMetadataResponse,
    FutureRetrieveRequest,
    QueueState,
    RequestFailedResponse,
    TryAgainResponse,
    decode_future_answer,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.supervisors import ActorRef, ExitReason
    from tinker_actors.transport import Transport

__all__ = [
    "BAD_REQUEST_BUDGET",
    "DEFAULT_RESPONSE_BUDGET",
    "POLL_TIMEOUT",
    "PROTOBUF",
    "FutureExpiredError",
    "FuturePoller",
    "FutureState",
    "OperationCancelledError",
    "QueueStateLog",
    "ResponseBudget",
    "ResultSpec",
    "StuckError",
    "Watch",
    "poll_future",
    "run_hosted_actor",
]

logger = logging.getLogger("tinker_actors.futures")

T = TypeVar("T")
M = TypeVar("M")

PROTOBUF: Final = "application/x-protobuf"
RETRIEVE_FUTURE_PATH: Final = "/api/v1/retrieve_future"
CANCEL_FUTURE_PATH: Final = "/api/v1/cancel_future"
#: Client read timeout of one long poll (the server answers try_again well before it).
POLL_TIMEOUT: Final = 45
CANCEL_TIMEOUT: Final = 30
#: Bare 400s tolerated per future before the poll fails (protocol §6.2).
BAD_REQUEST_BUDGET: Final = 3
DEFAULT_RESPONSE_BUDGET: Final = 50 * 1024 * 1024
#: Queue-state warnings: at most one per this many seconds per log.
QUEUE_LOG_INTERVAL: Final = 60.0


class FutureExpiredError(TinkerError):
    """The server no longer knows the future (HTTP 410): resubmit the operation.

    Sampling resubmits on its own; for training operations it reaches the caller.
    """

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"the server expired or lost future {request_id!r} (HTTP 410); the operation must "
            "be submitted again"
        )
        self.request_id = request_id


class OperationCancelledError(TinkerError):
    """The operation was cancelled (``APIFuture.cancel()`` or a cancelled waiter)."""


class StuckError(APIConnectionError):
    """No request made progress for the whole progress timeout (protocol §7.4)."""


# -- the one-shot slot ---------------------------------------------------------------------------


_PENDING: Final = 0
_VALUE: Final = 1
_ERROR: Final = 2


@final
class FutureState(Generic[T]):
    """The outcome of one long operation, resolved once: a value or an exception.

    Attributes:
        request_type: ``ForwardBackward``, ``Sample``... (the ``X-Tinker-Request-Type``).
        request_id: the server's id once submitted (None before).
        queue_state: the latest queue state the server reported.
        queue_state_reason: the server's explanation of a paused state, if any.
    """

    __slots__ = (
        "_callbacks",
        "_cancel_requested",
        "_error",
        "_event",
        "_scope",
        "_state",
        "_value",
        "queue_state",
        "queue_state_reason",
        "request_id",
        "request_type",
    )

    _value: T
    _error: BaseException

    def __init__(self, request_type: str, request_id: str | None = None) -> None:
        self.request_type = request_type
        self.request_id = request_id
        self.queue_state = QueueState.ACTIVE
        self.queue_state_reason: str | None = None
        self._event = trio.Event()
        self._state = _PENDING
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self._callbacks: list[Callable[[FutureState[T]], None]] = []

    def __repr__(self) -> str:
        state = ("pending", "done", "failed")[self._state]
        return f"<FutureState {self.request_type} {self.request_id or '-'} {state}>"

    def done(self) -> bool:
        """Return True once a value or an error is set."""
        return self._state != _PENDING

    @property
    def cancel_requested(self) -> bool:
        """True once :meth:`cancel` was called on a pending slot."""
        return self._cancel_requested

    def set_result(self, value: T) -> bool:
        """Resolve with ``value``; return False (and drop it) if already resolved."""
        if self._state != _PENDING:
            return False
        self._value = value
        self._finish(_VALUE)
        return True

    def set_error(self, error: BaseException) -> bool:
        """Resolve with ``error``; return False (and drop it) if already resolved."""
        if self._state != _PENDING:
            return False
        self._error = error
        self._finish(_ERROR)
        return True

    def cancel(self) -> bool:
        """Cancel the operation: fail the slot now and stop the work hosting it.

        Returns:
            False if it was already resolved (nothing changes), else True.
        """
        if self._state != _PENDING:
            return False
        self._cancel_requested = True
        self.set_error(
            OperationCancelledError(
                f"{self.request_type} {self.request_id or '(not yet submitted)'} was cancelled"
            )
        )
        if self._scope is not None:
            self._scope.cancel()
        return True

    def set_queue_state(self, state: QueueState, reason: str | None) -> None:
        """Record the queue state the server reported."""
        self.queue_state = state
        self.queue_state_reason = reason

    def add_done_callback(self, callback: Callable[[FutureState[T]], None]) -> None:
        """Call ``callback(self)`` once resolved (at once if it already is)."""
        if self._state != _PENDING:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def wait(self) -> None:
        """Wait until resolved (cancelling this wait does not cancel the operation)."""
        await self._event.wait()

    def outcome(self) -> T:
        """Return the value or raise the error of a resolved slot.

        Raises:
            RuntimeError: not resolved yet.
        """
        if self._state == _VALUE:
            return self._value
        if self._state == _ERROR:
            raise self._error
        raise RuntimeError(f"{self!r} is not resolved yet")

    def bind(self, scope: trio.CancelScope) -> None:
        """Attach the cancel scope of the task doing the work (used by the poller)."""
        self._scope = scope
        if self._cancel_requested:
            scope.cancel()

    def _finish(self, state: int) -> None:
        self._state = state
        self.queue_state = QueueState.ACTIVE
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("a done callback of %r raised", self)


# -- queue-state warnings ------------------------------------------------------------------------

_DEFAULT_REASONS: Final = {
    QueueState.PAUSED_RATE_LIMIT: "concurrent training clients rate limit hit",
    QueueState.PAUSED_CAPACITY: "Tinker backend is running short on capacity",
}


@final
class QueueStateLog:
    """Debounced warnings about paused requests, one per client.

    Training clients warn only once a pause has lasted ``grace`` seconds (15 min); samplers warn
    at once. Either way at most one warning per :data:`QUEUE_LOG_INTERVAL` seconds.
    """

    __slots__ = ("_grace", "_last_logged", "_name", "_paused_since")

    def __init__(self, name: str, *, grace: float) -> None:
        self._name = name
        self._grace = grace
        self._paused_since: float | None = None
        self._last_logged: float | None = None

    def report(self, state: QueueState, reason: str | None) -> None:
        """Note the state a poll reported; warn if a pause lasted long enough."""
        now = trio.current_time()
        if state in (QueueState.ACTIVE, QueueState.UNKNOWN):
            self._paused_since = None
            return
        if self._paused_since is None:
            self._paused_since = now
        if now - self._paused_since < self._grace:
            return
        if self._last_logged is not None and now - self._last_logged < QUEUE_LOG_INTERVAL:
            return
        self._last_logged = now
        logger.warning(
            "%s: requests are paused (%s): %s",
            self._name,
            state.value,
            reason or _DEFAULT_REASONS.get(state, "waiting for the service"),
        )


# -- the in-flight response budget ---------------------------------------------------------------


@final
class ResponseBudget:
    """Bytes of large results being fetched at once (``inflight_response_bytes_semaphore_size``).

    A reservation is admitted whenever the budget is non-negative, even if it takes it below
    zero, so one payload bigger than the whole budget still proceeds (protocol §6.2).
    """

    __slots__ = ("_available", "_lot", "_total")

    def __init__(self, total: int = DEFAULT_RESPONSE_BUDGET) -> None:
        self._total = total
        self._available = total
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def available(self) -> int:
        """Bytes left (negative while overdrawn)."""
        return self._available

    def resize(self, total: int) -> None:
        """Change the total (the server's flag arrives after the budget exists)."""
        self._available += total - self._total
        self._total = total
        self._wake()

    async def acquire(self, nbytes: int) -> None:
        """Wait until the budget is non-negative, then take ``nbytes``."""
        while self._available < 0:
            await self._lot.park()
        self._available -= nbytes

    def release(self, nbytes: int) -> None:
        """Give ``nbytes`` back."""
        self._available += nbytes
        self._wake()

    def _wake(self) -> None:
        if self._available >= 0:
            self._lot.unpark_all()


# -- the poll loop -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ResultSpec(Generic[T]):
    """What a future resolves to and how to decode it.

    Attributes:
        request_type: the ``X-Tinker-Request-Type`` header value.
        json_type: the JSON result type (None for protobuf results).
        decode_proto: decodes a protobuf result (set for ForwardBackwardOutput and
            SampleResponse, whose polls send ``Accept: application/x-protobuf``).
    """

    request_type: str
    json_type: type[T] | None = None
    decode_proto: Callable[[bytes], T] | None = None


def _queue_state_of(body: object) -> tuple[QueueState, str | None] | None:
    if not isinstance(body, dict) or "queue_state" not in body:
        return None
    raw, reason = body.get("queue_state"), body.get("queue_state_reason")
    try:
        state = QueueState(str(raw))
    except ValueError:
        state = QueueState.UNKNOWN
    return state, reason if isinstance(reason, str) else None


async def poll_future(
    transport: Transport,
    request_id: str,
    spec: ResultSpec[T],
    *,
    budget: ResponseBudget,
    state: FutureState[Any] | None = None,
    queue_log: QueueStateLog | None = None,
    sdk_method: str | None = None,
    progress_deadline: Callable[[], float] | None = None,
    allow_metadata_only: bool = True,
    promise_roundtrip: float | None = None,
) -> T:
    """Long-poll ``request_id`` until its result is final; return it decoded.

    Args:
        transport: where to send the polls.
        request_id: the submission's future id.
        spec: the result type and decoder.
        budget: the shared in-flight response budget.
        state: a slot whose queue state to keep up to date.
        queue_log: where to report paused states.
        sdk_method: the ``x-sdk-method`` of the public call this poll serves.
        progress_deadline: returns the trio time after which waiting counts as stuck
            (sampling's progress timeout); re-read after every poll.
        allow_metadata_only: let the first poll answer with the payload size only.
        promise_roundtrip: seconds from just before the submission to its future's arrival,
            sent on the first poll as ``X-Tinker-Create-Promise-Roundtrip-Time`` (§6.1).

    Raises:
        RequestFailedError: the server reports the request failed.
        FutureExpiredError: HTTP 410 (resubmit).
        StuckError: ``progress_deadline`` passed.
        APIStatusError: a fatal status (401, 403, 404, 409, 422, a 4th 400, a 402 past the
            billing pause).
        APIResponseValidationError: the answer does not decode as expected.
    """
    accept = PROTOBUF if spec.decode_proto is not None else None
    iteration = 0
    backoffs = 0
    bad_requests = 0
    reserved = 0
    try:
        while True:
            headers = {
                "X-Tinker-Request-Iteration": str(iteration),
                "X-Tinker-Request-Type": spec.request_type,
                "X-Stainless-Raw-Response": "raw",
            }
            if iteration == 0 and promise_roundtrip is not None:
                headers["X-Tinker-Create-Promise-Roundtrip-Time"] = str(promise_roundtrip)
            options = RequestOptions(
                timeout=POLL_TIMEOUT, max_retries=0, accept=accept, extra_headers=headers
            )
            iteration += 1
            body = FutureRetrieveRequest(
                request_id=request_id, allow_metadata_only=allow_metadata_only
            )
            try:
                if progress_deadline is None:
                    response = await transport.request(
                        "POST", RETRIEVE_FUTURE_PATH, json=body, options=options,
                        sdk_method=sdk_method,
                    )  # fmt: skip
                else:
                    deadline = progress_deadline()
                    if trio.current_time() >= deadline:
                        raise StuckError(
                            f"No progress made in the progress timeout while waiting for "
                            f"{request_id!r}. Requests appear to be stuck."
                        )
                    polled = None
                    with trio.move_on_at(deadline):
                        polled = await transport.request(
                            "POST", RETRIEVE_FUTURE_PATH, json=body, options=options,
                            sdk_method=sdk_method,
                        )  # fmt: skip
                    if polled is None:
                        continue  # the deadline fired mid-poll: re-check progress, re-poll
                    response = polled
            except APIStatusError as exc:
                status = exc.status_code
                if status == 429:
                    await trio.sleep(poll_backoff(backoffs))
                    backoffs += 1
                    continue
                backoffs = 0
                if status == 408:
                    reported = _queue_state_of(exc.body)
                    if reported is not None:
                        bad_requests = 0
                        _report(state, queue_log, *reported)
                    elif isinstance(exc.body, dict):
                        bad_requests = 0
                    continue
                if status >= 500:
                    continue
                if status == 400 and bad_requests < BAD_REQUEST_BUDGET:
                    bad_requests += 1
                    continue
                if status == 410:
                    raise FutureExpiredError(request_id) from exc
                raise
            except APIConnectionError:
                await trio.sleep(poll_backoff(backoffs))
                backoffs += 1
                continue
            backoffs = 0
            if PROTOBUF in response.headers.get("content-type", ""):
                if spec.decode_proto is None:
                    raise APIResponseValidationError(
                        f"retrieve_future for {request_id!r} answered protobuf, but a JSON "
                        f"{spec.request_type} result was expected",
                        status_code=response.status,
                    )
                return spec.decode_proto(response.content)
            try:
                answer = decode_future_answer(response.content, spec.json_type or dict)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise APIResponseValidationError(
                    f"retrieve_future for {request_id!r} answered with a body that is not a "
                    f"valid {spec.request_type} result: {exc}",
                    status_code=response.status,
                ) from None
            if isinstance(answer, TryAgainResponse):
                _report(state, queue_log, answer.state, answer.queue_state_reason)
                continue
            if isinstance(answer, CompleteMetadataResponse):
                if reserved == 0:
                    size = max(answer.response_payload_size, 0)
                    await budget.acquire(size)
                    reserved = size
                allow_metadata_only = False
                continue
            if isinstance(answer, RequestFailedResponse):
                raise RequestFailedError(
                    answer.error, request_id=request_id, category=answer.error_category.value
                )
            if spec.json_type is None:
                raise APIResponseValidationError(
                    f"retrieve_future for {request_id!r} answered JSON, but {spec.request_type} "
                    "results must be protobuf (the server predates proto responses)",
                    status_code=response.status,
                )
            return cast("T", answer)
    finally:
        if reserved:
            budget.release(reserved)


def _report(
    state: FutureState[Any] | None,
    queue_log: QueueStateLog | None,
    queue_state: QueueState,
    reason: str | None,
) -> None:
    if state is not None:
        state.set_queue_state(queue_state, reason)
    if queue_log is not None:
        queue_log.report(queue_state, reason)


# -- the poller actor ----------------------------------------------------------------------------


@final
class Watch:
    """Run ``work`` in the poller's nursery and resolve ``state`` with its outcome."""

    __slots__ = ("state", "work")

    def __init__(self, state: FutureState[Any], work: Callable[[], Awaitable[object]]) -> None:
        self.state = state
        self.work = work


class FuturePoller(Actor[Watch]):
    """Hosts the waiting half of every operation: one task per :class:`Watch`, in its nursery.

    Args:
        nursery: the nursery the work runs in (cancelled when the actor exits).
        transport: for ``cancel_future``.
        cancel_enabled: reads the dynamic flag ``sample_cancel_enabled`` now.
        cancel_concurrency: at most this many ``cancel_future`` requests at once
            (``sample_cancel_max_batch_size``).
    """

    mailbox_size = 4096

    def __init__(
        self,
        nursery: trio.Nursery,
        transport: Transport,
        cancel_enabled: Callable[[], bool],
        cancel_concurrency: int = 64,
    ) -> None:
        self._nursery = nursery
        self._transport = transport
        self._cancel_enabled = cancel_enabled
        self._cancel_limiter = trio.CapacityLimiter(cancel_concurrency)
        self._pending: dict[FutureState[Any], None] = {}
        self.cancels_sent = 0

    async def handle(self, message: Watch) -> None:
        if message.state.done():
            return  # cancelled before we got to it: nothing to run
        self._pending[message.state] = None
        self._nursery.start_soon(self._run, message, name=f"poll {message.state.request_type}")

    async def _run(self, message: Watch) -> None:
        state = message.state
        try:
            with trio.CancelScope() as scope:
                state.bind(scope)
                try:
                    value = await message.work()
                except Exception as exc:
                    state.set_error(exc)
                else:
                    state.set_result(value)
            if scope.cancelled_caught and state.cancel_requested:
                self._after_cancel(state)
        finally:
            self._pending.pop(state, None)
            if not state.done():  # the poller itself is going away
                state.set_error(ActorExited(self.ref.name, SHUTDOWN))

    def _after_cancel(self, state: FutureState[Any]) -> None:
        if state.request_type != "Sample" or state.request_id is None:
            return
        if not self._cancel_enabled():
            return
        self._nursery.start_soon(self._send_cancel, state.request_id)

    async def _send_cancel(self, request_id: str) -> None:
        async with self._cancel_limiter:
            try:
                await self._transport.request(
                    "POST",
                    CANCEL_FUTURE_PATH,
                    json=CancelFutureRequest(request_id=request_id),
                    options=RequestOptions(timeout=CANCEL_TIMEOUT, max_retries=0),
                )
                self.cancels_sent += 1
            except TinkerError as exc:
                logger.info("cancel_future for %s failed: %s", request_id, type(exc).__name__)

    async def terminate(self, reason: ExitReason) -> None:
        error = ActorExited(self.ref.name, reason)
        for state in list(self._pending):
            state.set_error(error)
        self._pending.clear()


async def run_hosted_actor(
    factory: Callable[[trio.Nursery], Actor[M]],
    name: str,
    *,
    task_status: trio.TaskStatus[ActorRef[M]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an actor that owns a nursery for background work; the nursery ends with the actor.

    Meant as a ChildSpec start function: ``ChildSpec(id, run_hosted_actor, factory, id)``. The
    actor's background tasks (heartbeats, polls) are cancelled as soon as the actor exits, so
    nothing it started outlives it; its crash propagates unchanged.
    """
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:

            async def actor(task_status: trio.TaskStatus[ActorRef[M]]) -> None:
                try:
                    await run_actor(functools.partial(factory, nursery), name=name,
                                    task_status=task_status)  # fmt: skip
                finally:
                    nursery.cancel_scope.cancel()

            ref: ActorRef[M] = await nursery.start(actor)
            task_status.started(ref)
    except BaseExceptionGroup as group:
        # One task can fail here (the actor); hand its own exception to the supervisor.
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
    if error is not None:
        raise error
