"""The wire steps of one sample attempt: submit under backpressure, fetch a completed result.

A :class:`~tinker_actors.clients.SamplingClient` turns each ``sample`` into attempts; this module
holds the two steps of an attempt that talk to the server on its behalf (protocol.md §7.4, §6.4):

* :func:`submit_sample` posts ``/api/v1/asample`` with ``X-Tinker-Sampling-Backpressure: 1``
  while holding a dispatch slot and the prompt's bytes of the runtime's
  :class:`~tinker_actors.actors.RateLimiter`. A ``429`` pushes the limiter's shared backoff
  deadline and resubmits the *same* request (same ``seq_id``) once it passes; other retryable
  failures are retried with the submission backoff. The slot is released as soon as the server
  accepted the sample, never held while its result is awaited::

      future = await submit_sample(ctx, request, nbytes, "SamplingClient.sample")
      future.request_id   # what the result is fetched by

* :func:`fetch_completed` is step 3 when the server sets ``sample_use_retrieve_futures``: wait
  for the request's completion from the client's
  :class:`~tinker_actors.actors.CompletionPoller` (bounded by the progress deadline when stuck
  detection is on), reserve the payload's bytes of the response budget when the completion
  gives its size, fetch the result once, and report it retrieved.

Retrying a whole attempt with a new ``seq_id``, concurrency caps and progress bookkeeping stay
with the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from tinker_actors.actors import StuckError
from tinker_actors.backoff import retryable_status, submission_delay
from tinker_actors.errors import APIConnectionError, APIStatusError, RequestFailedError
from tinker_actors.transport import RequestOptions
from tinker_actors.types import FutureFinished, UntypedAPIFuture

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.actors import CompletionPoller, ResponseBudget
    from tinker_actors.clients._service import ClientContext
    from tinker_actors.types import SampleRequest, SampleResponse

__all__ = ["BACKPRESSURE_HEADER", "fetch_completed", "submit_sample"]

BACKPRESSURE_HEADER: Final = {"X-Tinker-Sampling-Backpressure": "1"}
_SUBMIT_OPTIONS: Final = RequestOptions(max_retries=0, extra_headers=BACKPRESSURE_HEADER)


async def submit_sample(
    ctx: ClientContext, request: SampleRequest, nbytes: int, method: str
) -> UntypedAPIFuture:
    """POST the sample; 429 backs off and resubmits the same seq_id; others retry.

    Args:
        ctx: the client's runtime context (transport and rate limiter).
        request: the request to send, its ``seq_id`` already set.
        nbytes: the prompt's estimated bytes, held from the limiter's sample budget.
        method: the public method's name, for telemetry.

    Returns:
        The server's future for the sample.

    Raises:
        APIStatusError: a status that is not retryable, or the last one when the submission
            backoff gave up.
        APIConnectionError: the last connection failure when the submission backoff gave up.
    """
    options = _SUBMIT_OPTIONS
    limiter = await ctx.rate_limiter()
    # The dispatch slot and bytes are held until the server accepted the sample (through
    # 429 backoffs and submission retries), never while waiting for its result.
    async with limiter.sample_dispatch(nbytes):
        started = trio.current_time()
        attempt = 0
        while True:
            if limiter.backoff_until is not None:  # never pushed back: nothing to wait for
                await limiter.wait_backoff()
            try:
                response = await ctx.transport.request(
                    "POST", "/api/v1/asample", json=request, options=options, sdk_method=method
                )
            except APIStatusError as exc:
                if exc.status_code == 429:
                    limiter.report_backpressure(nbytes)
                    continue
                if not retryable_status(exc.status_code, exc.headers):
                    raise
                error: Exception = exc
            except APIConnectionError as exc:
                error = exc
            else:
                return response.decode(UntypedAPIFuture)
            delay = submission_delay(attempt, elapsed=trio.current_time() - started)
            if delay is None:
                raise error
            attempt += 1
            await trio.sleep(delay)


async def fetch_completed(
    completions: CompletionPoller,
    request_id: str,
    budget: ResponseBudget,
    progress_deadline: Callable[[], float] | None,
    fetch: Callable[[bool], Awaitable[SampleResponse]],
) -> SampleResponse:
    """Wait for ``request_id``'s completion, then fetch its result once and report it.

    Args:
        completions: the client's completion loop.
        request_id: the sample's future.
        budget: the runtime's response byte budget; the payload's size is reserved from it
            while fetching, when the completion gives one.
        progress_deadline: returns the time by which some sample of the client must have made
            progress (re-read on every wake-up); ``None`` when stuck detection is off.
        fetch: fetches the result; its argument says whether a metadata-only answer is
            acceptable (only when no payload size was reserved).

    Raises:
        StuckError: the progress deadline passed before the completion arrived.
    """
    while True:
        if progress_deadline is None:
            completion = await completions.wait(request_id)
            break
        deadline = progress_deadline()
        if trio.current_time() >= deadline:
            raise StuckError(
                f"No progress made in the progress timeout while waiting for "
                f"{request_id!r}. Requests appear to be stuck."
            )
        with trio.move_on_at(deadline):
            completion = await completions.wait(request_id)
            break
    size = 0
    if isinstance(completion, FutureFinished):
        size = max(completion.response_payload_uncompressed_size or 0, 0)
    if size:
        await budget.acquire(size)
    try:
        async with completions.fetch_slots:  # a few fetches at a time: a few connections
            result = await fetch(size == 0)
    except RequestFailedError:
        completions.retrieved(request_id)  # the error is the result: fetched in full
        raise
    finally:
        if size:
            budget.release(size)
    completions.retrieved(request_id)
    return result
