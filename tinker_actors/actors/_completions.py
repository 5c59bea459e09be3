"""Batched completion polling for sampling: one long poll serves every waiting sample.

With the server flag ``sample_use_retrieve_futures`` (protocol.md §6.4), a sample does not
long-poll its own future. It waits until a shared loop, one per (sampling_session_id,
cloned_sampler_id), sees its ``request_id`` among the ``completions`` of
``POST /api/v1/retrieve_futures``; only then does it fetch the result with one
``retrieve_future``. Waiting samples hold no HTTP connection.

The loop's bookkeeping (:class:`CompletionPoller`):

* ``prev_cursor`` acknowledges: the cursor of the last answer is sent back on the next poll, so
  the server may trim the events at or before it;
* ``retrieved_request_ids``: ids whose result (value or error) was fully fetched, reported so
  the server may drop the payloads; an id leaves the set only after a poll carrying it
  succeeded;
* ``timeout`` is omitted (the server long-polls) while samples wait, and ``0`` when only
  acknowledgements are pending; with nothing waiting and everything acknowledged the loop
  sleeps until a sample registers;
* errors: connection failures and 408/409/429/5xx sleep 1 s and retry; a bare 400 too, at
  most 3 times in a row; a 402 has already waited out the billing window in the transport;
  anything else fails the loop for good, and every current and later waiter gets a
  :class:`CompletionPollingError`;
* on cancellation (the runtime stopping) one last best-effort ack-only poll is sent;
* fetches share :attr:`CompletionPoller.fetch_slots` (:data:`FETCH_CONCURRENCY` at once): one
  answer may complete hundreds of samples together, and fetching them all at once opened one
  connection per sample (500 for 500) although each fetch is answered at once. A few fetches
  at a time reuse a few keep-alive connections instead.

The loop is run by the FuturePoller (its nursery supervises it): nothing here starts a task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, final

import trio
from msgspec import UNSET

from tinker_actors.errors import APIConnectionError, APIStatusError, TinkerError
from tinker_actors.transport import RequestOptions
from tinker_actors.types import (
    FutureCompletion,
    FuturesRetrieveRequest,
    FuturesRetrieveResponse,
    SamplingSessionFuturesTarget,
)

if TYPE_CHECKING:
    from tinker_actors.transport import Transport

__all__ = [
    "FETCH_CONCURRENCY",
    "RETRIEVE_FUTURES_PATH",
    "CompletionPoller",
    "CompletionPollingError",
]

logger = logging.getLogger("tinker_actors.futures")

RETRIEVE_FUTURES_PATH: Final = "/api/v1/retrieve_futures"
#: Client timeout of a long poll (the server holds it up to ~30 s).
LONG_POLL_TIMEOUT: Final = 45
#: Client timeout of an ack-only poll (``timeout: 0``: the server answers at once).
ACK_TIMEOUT: Final = 5
RETRY_DELAY: Final = 1.0
BAD_REQUEST_BUDGET: Final = 3
#: Completions that arrived before their sample registered (its submission answer was still
#: on the way) are kept, up to this many; the oldest are dropped first.
EARLY_LIMIT: Final = 10_000
#: Result fetches of one completion loop in flight at once (so: connections they need).
FETCH_CONCURRENCY: Final = 8


class CompletionPollingError(TinkerError):
    """Batched completion polling failed for good; the samples waiting on it cannot finish."""


@final
class _Waiter:
    __slots__ = ("completion", "error", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.completion: FutureCompletion | None = None
        self.error: BaseException | None = None


@final
class CompletionPoller:
    """The completion loop of one (sampling session, clone) pair; :meth:`run` is the loop.

    Args:
        transport: where to send the polls.
        sampling_session_id: the sampling session.
        cloned_sampler_id: the client's clone id (0 for the original client).
    """

    __slots__ = (
        "_acked",
        "_bad_requests",
        "_cursor",
        "_early",
        "_failed",
        "_fatal",
        "_retrieved",
        "_target",
        "_transport",
        "_waiters",
        "_wake",
        "fetch_slots",
        "polls",
    )

    def __init__(
        self, transport: Transport, sampling_session_id: str, cloned_sampler_id: int = 0
    ) -> None:
        self._transport = transport
        self._target = SamplingSessionFuturesTarget(
            sampling_session_id=sampling_session_id, cloned_sampler_id=cloned_sampler_id
        )
        self._waiters: dict[str, _Waiter] = {}
        self._early: dict[str, FutureCompletion] = {}
        self._retrieved: set[str] = set()
        self._cursor = 0
        self._acked = 0
        self._bad_requests = 0
        self._failed: CompletionPollingError | None = None
        self._fatal = False
        self._wake = trio.Event()
        self.polls = 0
        #: Held while fetching a completed result (see the module doc).
        self.fetch_slots = trio.CapacityLimiter(FETCH_CONCURRENCY)

    def __repr__(self) -> str:
        target = self._target
        return (
            f"<CompletionPoller {target.sampling_session_id}/{target.cloned_sampler_id} "
            f"waiters={len(self._waiters)} cursor={self._cursor} acked={self._acked}>"
        )

    @property
    def failed(self) -> CompletionPollingError | None:
        """Why the loop stopped (a fatal answer, or its host stopping), if it did."""
        return self._failed

    @property
    def fatal(self) -> bool:
        """True when the server's answer ended the loop: a new one would fail the same way."""
        return self._fatal

    @property
    def waiting(self) -> int:
        """Samples waiting for their completion now."""
        return len(self._waiters)

    async def wait(self, request_id: str) -> FutureCompletion:
        """Wait until ``request_id`` is reported complete; return its completion.

        Cancelling the wait unregisters it (the loop then goes idle if nothing else waits).

        Raises:
            CompletionPollingError: the loop failed for good.
        """
        early = self._early.pop(request_id, None)
        if early is not None:
            return early
        if self._failed is not None:
            raise self._failed
        waiter = self._waiters.get(request_id)
        if waiter is None:
            waiter = self._waiters[request_id] = _Waiter()
            self._wake.set()
        try:
            await waiter.event.wait()
        finally:
            if self._waiters.get(request_id) is waiter:
                del self._waiters[request_id]
        if waiter.completion is not None:
            return waiter.completion
        assert waiter.error is not None  # the event is set only with one or the other
        raise waiter.error

    def retrieved(self, request_id: str) -> None:
        """Report that ``request_id``'s result was fully fetched (the next poll tells the server)."""
        self._early.pop(request_id, None)
        if self._failed is None:
            self._retrieved.add(request_id)
            self._wake.set()

    def _pending(self) -> bool:
        return bool(self._waiters) or bool(self._retrieved) or self._cursor != self._acked

    async def run(self) -> None:
        """Poll while anything waits or is unacknowledged; idle otherwise; ack on the way out.

        Raises:
            CompletionPollingError: a fatal answer (after failing every waiter with it).
        """
        try:
            while True:
                if not self._pending():
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                await self._poll_once(long=bool(self._waiters))
        except trio.Cancelled:
            with trio.CancelScope(shield=True), trio.move_on_after(ACK_TIMEOUT):
                await self._final_ack()
            raise
        except TinkerError as exc:
            target = self._target
            error = CompletionPollingError(
                f"batched completion polling for sampling session "
                f"{target.sampling_session_id} (clone {target.cloned_sampler_id}) failed: {exc}"
            )
            error.__cause__ = exc
            self._fatal = True
            self._fail(error)
            raise error from exc
        finally:
            if self._failed is None:
                self._fail(CompletionPollingError("batched completion polling stopped"))

    async def _poll_once(self, *, long: bool) -> None:
        retrieved = sorted(self._retrieved)
        cursor = self._cursor
        request = FuturesRetrieveRequest(
            target=self._target,
            prev_cursor=cursor,
            timeout=UNSET if long else 0,
            retrieved_request_ids=retrieved,
        )
        options = RequestOptions(timeout=LONG_POLL_TIMEOUT if long else ACK_TIMEOUT, max_retries=0)
        self.polls += 1
        try:
            response = await self._transport.request(
                "POST", RETRIEVE_FUTURES_PATH, json=request, options=options
            )
        except APIStatusError as exc:
            status = exc.status_code
            if status == 400 and self._bad_requests < BAD_REQUEST_BUDGET:
                self._bad_requests += 1
            elif status not in (408, 409, 429) and status < 500:
                raise
            await trio.sleep(RETRY_DELAY)
            return
        except APIConnectionError as exc:
            logger.debug("retrieve_futures failed (%s); retrying", type(exc).__name__)
            await trio.sleep(RETRY_DELAY)
            return
        answer = response.decode(FuturesRetrieveResponse)
        # The poll carrying them succeeded: the cursor is acknowledged, the ids reported.
        self._bad_requests = 0
        self._acked = max(self._acked, cursor)
        self._retrieved.difference_update(retrieved)
        for completion in answer.completions:
            self._deliver(completion)
        self._cursor = answer.cursor

    def _deliver(self, completion: FutureCompletion) -> None:
        waiter = self._waiters.pop(completion.request_id, None)
        if waiter is not None:
            waiter.completion = completion
            waiter.event.set()
            return
        self._early[completion.request_id] = completion
        while len(self._early) > EARLY_LIMIT:
            del self._early[next(iter(self._early))]

    def _fail(self, error: CompletionPollingError) -> None:
        self._failed = error
        self._early.clear()
        self._retrieved.clear()
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.error = error
            waiter.event.set()

    async def _final_ack(self) -> None:
        if not self._retrieved and self._cursor == self._acked:
            return
        try:
            await self._poll_once(long=False)
        except TinkerError as exc:  # best effort: the server trims on its own eventually
            logger.debug("final retrieve_futures ack failed: %s", type(exc).__name__)
