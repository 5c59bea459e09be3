"""Long-polling one server future: ``poll_future`` and what it needs.

Every long operation is two exchanges (protocol.md §6): a submission answered at once with a
``request_id``, then ``POST /api/v1/retrieve_future`` until the result is final.

Pieces:

* :func:`poll_future` — the long-poll loop with the exact status handling of protocol §6.2:
  ``try_again``, 408 and a first 5xx re-poll at once (a run of 5xx backs off), 429 and connection errors back off
  ``poll_backoff(n)``, 400 up to 3 times, 402 through the transport's billing pause, 410 raises
  :class:`FutureExpiredError`, anything else is fatal. The first poll allows a metadata-only
  answer; a ``complete_metadata`` answer reserves the payload's bytes from a shared
  :class:`ResponseBudget` before fetching it, and the bytes are held until it is decoded.
* :class:`ResultSpec` — what a future resolves to and how its result is decoded.
* :class:`ResponseBudget` — the bytes of large results being fetched at once.
* :class:`QueueStateLog` — debounced warnings about paused requests.
* the errors a wait can end with: :class:`FutureExpiredError`, :class:`StuckError`,
  :class:`OperationCancelledError`.

The actor hosting these waits, and the slot they resolve, live in :mod:`._poller`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, final

import msgspec
import trio

from tinker_actors.backoff import poll_backoff
from tinker_actors.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    InvalidInputError,
    RequestFailedError,
    TinkerError,
)
from tinker_actors.transport import RequestOptions
from tinker_actors.types import (
    CompleteMetadataResponse,
    FutureRetrieveRequest,
    QueueState,
    RequestFailedResponse,
    TryAgainResponse,
    decode_future_answer,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.actors._poller import FutureState
    from tinker_actors.transport import Transport

__all__ = [
    "BAD_REQUEST_BUDGET",
    "DEFAULT_RESPONSE_BUDGET",
    "POLL_TIMEOUT",
    "PROTOBUF",
    "RETRIEVE_FUTURE_PATH",
    "FutureExpiredError",
    "OperationCancelledError",
    "QueueStateLog",
    "ResponseBudget",
    "ResultSpec",
    "StuckError",
    "poll_future",
]

logger = logging.getLogger("tinker_actors.futures")

T = TypeVar("T")

PROTOBUF: Final = "application/x-protobuf"
RETRIEVE_FUTURE_PATH: Final = "/api/v1/retrieve_future"
#: Client read timeout of one long poll (the server answers try_again well before it).
POLL_TIMEOUT: Final = 45
#: Bare 400s tolerated per future before the poll fails (protocol §6.2).
BAD_REQUEST_BUDGET: Final = 3
DEFAULT_RESPONSE_BUDGET: Final = 50 * 1024 * 1024
#: Queue-state warnings: at most one per this many seconds per log.
QUEUE_LOG_INTERVAL: Final = 60.0


class FutureExpiredError(TinkerError):
    """The server no longer knows the future (HTTP 410): resubmit the operation.

    Sampling resubmits on its own; for training operations it reaches the caller.
    """

    def __init__(self, request_id: str, request_type: str = "") -> None:
        if request_type in _STATE_CHANGING:
            advice = (
                f"the server may already have applied this {request_type}: check the model's "
                "state (e.g. resume from its last checkpoint) before submitting it again"
            )
        else:
            advice = "the operation must be submitted again"
        super().__init__(f"the server expired or lost future {request_id!r} (HTTP 410); {advice}")
        self.request_id = request_id
        self.request_type = request_type


# Operations whose 410 does not say whether they ran: resubmitting blindly could apply twice.
_STATE_CHANGING: Final = frozenset(
    {
        "ForwardBackward",
        "OptimStep",
        "SaveWeights",
        "LoadWeights",
        "SaveWeightsForSampler",
        "SaveWeightsExternal",
        "CreateModel",
    }
)


class OperationCancelledError(TinkerError):
    """The operation was cancelled (``APIFuture.cancel()`` or a cancelled waiter)."""


class StuckError(APIConnectionError):
    """No request made progress for the whole progress timeout (protocol §7.4)."""


# -- queue-state warnings ------------------------------------------------------------------------

_DEFAULT_REASONS: Final = {
    QueueState.PAUSED_RATE_LIMIT: "concurrent training clients rate limit hit",
    QueueState.PAUSED_CAPACITY: "Tinker backend is running short on capacity",
}


@final
class QueueStateLog:
    """Debounced warnings about paused requests, one per client, and its queue-state observer.

    Training clients warn only once a pause has lasted ``grace`` seconds (15 min); samplers warn
    at once. Either way at most one warning per :data:`QUEUE_LOG_INTERVAL` seconds.

    ``observer(state, reason)``, when set, hears what 0.38's ``on_queue_state_change`` hears:
    every reported state (an UNKNOWN one only with a reason) and ACTIVE when a request
    finishes. It runs on the runtime's thread; what it raises is logged and ignored.
    """

    __slots__ = ("_grace", "_last_logged", "_name", "_paused_since", "observer")

    def __init__(self, name: str, *, grace: float) -> None:
        self._name = name
        self._grace = grace
        self._paused_since: float | None = None
        self._last_logged: float | None = None
        self.observer: Callable[[QueueState, str | None], object] | None = None

    def observe(self, observer: Callable[[QueueState, str | None], object] | None) -> None:
        """Set the observer (None: none), refusing what cannot be called."""
        if observer is not None and not callable(observer):
            raise InvalidInputError(f"observer must be callable or None, got {observer!r}")
        self.observer = observer

    def report(self, state: QueueState, reason: str | None) -> None:
        """Note the state a poll reported; warn if a pause lasted long enough."""
        if self.observer is not None and (state is not QueueState.UNKNOWN or reason is not None):
            self._tell(state, reason)
        if state in (QueueState.ACTIVE, QueueState.UNKNOWN):
            self._paused_since = None
            return
        now = trio.current_time()
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

    def finished(self) -> None:
        """A request finished (its result or its failure came): any pause it saw is over."""
        self.report(QueueState.ACTIVE, None)

    def _tell(self, state: QueueState, reason: str | None) -> None:
        assert self.observer is not None
        try:
            self.observer(state, reason)
        except Exception:
            logger.exception("%s: the queue-state observer raised (ignored)", self._name)


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
    server_errors = 0
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
                    server_errors = 0
                    reported = _queue_state_of(exc.body)
                    if reported is not None:
                        bad_requests = 0
                        _report(state, queue_log, *reported)
                    elif isinstance(exc.body, dict):
                        bad_requests = 0
                    continue
                if status >= 500:
                    # The first 5xx re-polls at once as the official client does; a run of them
                    # is an outage, and hammering it would only lengthen it.
                    server_errors += 1
                    if server_errors > 1:
                        await trio.sleep(poll_backoff(server_errors - 2))
                    continue
                if status == 400 and bad_requests < BAD_REQUEST_BUDGET:
                    bad_requests += 1
                    continue
                if status == 410:
                    raise FutureExpiredError(request_id, spec.request_type) from exc
                raise
            except APIConnectionError:
                await trio.sleep(poll_backoff(backoffs))
                backoffs += 1
                continue
            backoffs = 0
            server_errors = 0
            if PROTOBUF in (response.header("content-type") or ""):
                if spec.decode_proto is None:
                    raise APIResponseValidationError(
                        f"retrieve_future for {request_id!r} answered protobuf, but a JSON "
                        f"{spec.request_type} result was expected",
                        status_code=response.status,
                    )
                decoded = spec.decode_proto(response.content)
                if queue_log is not None:
                    queue_log.finished()
                return decoded
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
                if queue_log is not None:
                    queue_log.finished()
                raise RequestFailedError(
                    answer.error, request_id=request_id, category=answer.error_category.value
                )
            if spec.json_type is None:
                raise APIResponseValidationError(
                    f"retrieve_future for {request_id!r} answered JSON, but {spec.request_type} "
                    "results must be protobuf (the server predates proto responses)",
                    status_code=response.status,
                )
            if queue_log is not None:
                queue_log.finished()
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
