"""SamplingClient: samples from one sampling session; cheap to create, nothing to leak.

A SamplingClient is a plain object: ids, flags and counters, no task of its own. Each
``sample`` call becomes one job run by the runtime's FuturePoller (submit, wait, retry), so
dropping a client leaves nothing behind, and creating one per RL step costs exactly its one
``create_sampling_session`` request (or nothing extra after
``save_weights_and_get_sampling_client``).

One sample, as protocol.md §7.4 and §9.5 describe it:

1. ``seq_id`` is taken from the client's counter (0, 1, 2, ...) at call time;
2. submit ``POST /api/v1/asample`` with ``X-Tinker-Sampling-Backpressure: 1``. A ``429``
   pushes the shared backoff deadline (1 s, or 5 s for prompts over 128 KiB) and the sample is
   resubmitted with the **same** seq_id once it passes; other retryable failures are retried
   with the submission backoff, also with the same seq_id;
3. wait for the future (the poller's long poll); decode the protobuf result and stamp the
   sequence ids;
4. the whole of 2-3 is retried per :class:`~tinker_actors.backoff.RetryConfig` (timeouts,
   connection errors, 410 from the poll, 408/409/429/5xx) with a **new** seq_id, at most
   ``max_connections`` at once, and fails with ``StuckError`` when no sample of this client
   completed for ``progress_timeout`` seconds.

With the server flag ``sample_use_retrieve_futures`` (protocol §6.4), step 3 changes: the
sample waits for its ``request_id`` in the completions of the client's one
:class:`~tinker_actors.actors.CompletionPoller` (started lazily on the first sample, run by the
FuturePoller, stopped with the runtime), then fetches the result with one ``retrieve_future``
(reserving the payload's bytes up front when the completion gives its size) and reports the id
as retrieved. Waiting samples hold no connection, so there is no concurrency cap.

Submission (step 2) runs inside the per-(base_url, API key)
:class:`~tinker_actors.actors.RateLimiter` of the runtime: it holds one of 400 dispatch slots
(10 while throttled) and the prompt's estimated bytes of the sample budget (20x while
throttled) until the server accepted the sample, and the 429 backoff deadline is shared by
every sampler of every runtime with the same key.

The client owns the attempts (seq ids, whole-sample retries, progress); the wire work of one
attempt (the submission of step 2, the completion wait and fetch of §6.4) is in
:mod:`tinker_actors.clients._sample_wire`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import trio

from tinker_actors.actors import (
    CompletionPoller,
    FutureExpiredError,
    FutureState,
    QueueStateLog,
    ResultSpec,
    StuckError,
    poll_future,
)
from tinker_actors.backoff import (
    RetryConfig,
    sampling_retry_delay,
)
from tinker_actors.clients._chunking import estimate_sample_bytes
from tinker_actors.clients._future import APIFuture
from tinker_actors.clients._reporting import reported
from tinker_actors.clients._sample_prepare import (
    PreparedSample,
    build_sample_request,
    prompt_logprobs_of,
    sample_transform,
    with_seq_id,
)
from tinker_actors.clients._sample_wire import fetch_completed, submit_sample
from tinker_actors.clients._sampler_handle import (
    CLONE_STRIDE,
    SamplerState,
    decode_handle,
    encode_handle,
)
from tinker_actors.errors import APIConnectionError, APIStatusError, InvalidInputError
from tinker_actors.tokenizer import get_tokenizer
from tinker_actors.transport.proto import decode_sample_response
from tinker_actors.types import (
    ModelInput,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    TensorData,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.actors import SessionHandle
    from tinker_actors.clients._service import ClientContext, ServiceClient
    from tinker_actors.tokenizer import Tokenizer
    from tinker_actors.types import QueueState

__all__ = ["SamplingClient"]

_CLASS: Final = "SamplingClient"


class _HasService(Protocol):
    """A runtime (what ``tinker_actors.open()`` yields): anything with a ServiceClient."""

    @property
    def service(self) -> ServiceClient: ...


@final
class SamplingClient:
    """Samples from one sampling session (a base model or saved sampler weights)."""

    __slots__ = (
        "_active",
        "_base_model",
        "_clone_id",
        "_completions",
        "_completions_state",
        "_ctx",
        "_detached",
        "_handle",
        "_last_progress",
        "_limiter",
        "_next_seq",
        "_queue_log",
        "_record_stability",
        "_retry",
        "_sampler_id",
    )

    def __init__(
        self,
        ctx: ClientContext,
        handle: SessionHandle,
        sampling_session_id: str,
        base_model: str,
        *,
        retry_config: RetryConfig | None = None,
        clone_id: int = 0,
        record_stability_info: bool = False,
    ) -> None:
        if retry_config is not None and not isinstance(retry_config, RetryConfig):
            raise InvalidInputError(
                f"retry_config must be a RetryConfig or None, got {type(retry_config).__name__}"
            )
        flags = handle.client_config
        if retry_config is None:
            retry_config = RetryConfig(
                max_connections=None
                if flags.sample_use_retrieve_futures
                else flags.sample_max_concurrent_requests,
                enable_retry_logic=not flags.sample_no_retries,
                enable_stuck_detection=flags.sample_enable_stuck_detection,
            )
        if not isinstance(record_stability_info, bool):
            raise InvalidInputError(
                f"record_stability_info must be a bool, got {record_stability_info!r}"
            )
        self._record_stability = record_stability_info
        self._ctx = ctx
        self._handle = handle
        self._sampler_id = sampling_session_id
        self._base_model = base_model
        self._retry = retry_config
        limit = retry_config.max_connections
        self._limiter = trio.CapacityLimiter(limit) if limit is not None else None
        self._clone_id = clone_id
        self._next_seq = clone_id * CLONE_STRIDE  # a clone's own seq id range (§8.5)
        self._completions: CompletionPoller | None = None
        self._completions_state: FutureState[Any] | None = None
        self._detached: SamplerState | None = None
        self._active = 0
        self._last_progress = trio.current_time()
        self._queue_log = QueueStateLog(f"SamplingClient {sampling_session_id}", grace=0.0)

    def __repr__(self) -> str:
        return f"<SamplingClient {self._sampler_id} on {self._base_model}>"

    @property
    def sampling_session_id(self) -> str:
        """The sampling session's id."""
        return self._sampler_id

    def get_base_model(self) -> str:
        """Return the base model this session samples."""
        return self._base_model

    def get_tokenizer(self) -> Tokenizer:
        """Return the base model's tokenizer, loaded offline."""
        return get_tokenizer(self._base_model)

    def observe_queue_state(
        self, observer: Callable[[QueueState, str | None], object] | None
    ) -> None:
        """Call ``observer(state, reason)`` as the service reports this session's queue state
        (a pause for capacity or a rate limit, then ACTIVE as each sample finishes); None stops.
        It runs inside the runtime and must not block; what it raises is logged and ignored."""
        self._queue_log.observe(observer)

    # -- handles and pickling (protocol §9.9) ----------------------------------------------------

    def get_sampler_handle(self) -> str:
        """Return a URL-safe string naming this sampling session, without the API key.

        Pass it to another process, which samples on the same session with
        ``await SamplingClient.from_sampler_handle(handle, runtime)`` under its own credential.
        """
        if self._detached is not None:
            return encode_handle(self._detached)
        config = self._ctx.config
        return encode_handle(
            SamplerState(
                session_id=self._handle.session_id,
                sampling_session_id=self._sampler_id,
                base_model=self._base_model,
                base_url=config.base_url,
                headers=dict(config.default_headers),
                record_stability_info=self._record_stability,
            )
        )

    @staticmethod
    async def from_sampler_handle(
        handle: str, runtime: _HasService, retry_config: RetryConfig | None = None
    ) -> SamplingClient:
        """Return a clone of the handle's SamplingClient that samples through ``runtime``.

        The clone gets its own seq id range (a clone id from ``join_sampling_session`` when
        the server enables it, else a random one); the runtime supplies the credential.

        Raises:
            InvalidInputError: not a handle, or a handle for another base URL.
        """
        return await runtime.service.sampling_client_from_handle(handle, retry_config)

    async def attach(self, runtime: _HasService) -> SamplingClient:
        """Return a clone of this (e.g. unpickled) client that samples through ``runtime``."""
        return await SamplingClient.from_sampler_handle(self.get_sampler_handle(), runtime)

    def __getstate__(self) -> dict[str, str]:
        """Pickle as the sampler handle: ids, base model, base URL and headers; no API key."""
        return {"sampler_handle": self.get_sampler_handle()}

    def __setstate__(self, state: dict[str, str]) -> None:
        """Unpickle detached: call :meth:`attach` with a runtime of this process to sample."""
        detached = decode_handle(state["sampler_handle"])
        self._detached = detached
        self._sampler_id = detached.sampling_session_id
        self._base_model = detached.base_model
        self._record_stability = detached.record_stability_info

    def _check_attached(self) -> None:
        if self._detached is not None:
            raise InvalidInputError(
                "this SamplingClient was unpickled and has no runtime in this process: "
                "use 'client = await client.attach(runtime)' inside 'async with "
                "tinker_actors.open() as runtime' (the runtime supplies the credential)"
            )

    def _take_seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    @reported
    async def sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> APIFuture[SampleResponse]:
        """Sample ``num_samples`` completions of ``prompt``; return the future at once.

        Raises:
            InvalidInputError / TypeError: bad arguments (checked before anything is sent), or
                an unpickled client that was not attached to a runtime.
        """
        return await self.submit(
            self.prepare_sample(
                prompt,
                num_samples,
                sampling_params,
                include_prompt_logprobs,
                topk_prompt_logprobs,
                topk_sample_logprobs,
                target_prompt_logprobs,
                prompt_alt_tokens_k,
                prompt_logprobs_last_n,
            )
        )

    @reported
    async def compute_logprobs(
        self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> APIFuture[list[float | None]]:
        """Score ``prompt``: its per-token logprobs, ``None`` at position 0 and unscored ones."""
        return await self.submit(self.prepare_compute_logprobs(prompt, prompt_logprobs_last_n))

    def prepare_sample(
        self,
        prompt: ModelInput,
        num_samples: int,
        sampling_params: SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> PreparedSample:
        """Check the arguments of :meth:`sample` and build its request; send it with :meth:`submit`.

        Pure (no I/O, no trio): a blocking facade calls it on the caller's thread so bad input
        raises there, at once.

        Raises:
            InvalidInputError / TypeError: bad arguments, or an unpickled, unattached client.
        """
        self._check_attached()
        request = build_sample_request(
            self._sampler_id,
            self._record_stability,
            prompt,
            num_samples,
            sampling_params,
            prompt_logprobs=include_prompt_logprobs,
            topk_prompt_logprobs=topk_prompt_logprobs,
            topk_sample_logprobs=topk_sample_logprobs,
            target_prompt_logprobs=target_prompt_logprobs,
            prompt_alt_tokens_k=prompt_alt_tokens_k,
            prompt_logprobs_last_n=prompt_logprobs_last_n,
        )
        return PreparedSample(request, f"{_CLASS}.sample", sample_transform(request))

    def prepare_compute_logprobs(
        self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> PreparedSample:
        """Check the arguments of :meth:`compute_logprobs`; send it with :meth:`submit`."""
        self._check_attached()
        request = build_sample_request(
            self._sampler_id,
            self._record_stability,
            prompt,
            1,
            SamplingParams(max_tokens=1),
            prompt_logprobs=True,
            prompt_logprobs_last_n=prompt_logprobs_last_n,
        )
        return PreparedSample(request, f"{_CLASS}.compute_logprobs", prompt_logprobs_of)

    async def submit(self, prepared: PreparedSample) -> APIFuture[Any]:
        """Start a prepared sample (takes its seq id now); return its future once accepted."""
        if not isinstance(prepared, PreparedSample):
            raise TypeError(f"submit takes a PreparedSample, got {type(prepared).__name__}")
        self._check_attached()
        return await self._start(prepared.request, prepared.method, prepared.transform)

    async def _start(
        self, request: SampleRequest, method: str, transform: Callable[[SampleResponse], Any]
    ) -> APIFuture[Any]:
        seq_id = self._take_seq()
        state: FutureState[Any] = FutureState("Sample")
        nbytes = estimate_sample_bytes(request.prompt)

        # a partial, not a closure: a sample waiting its turn keeps 2 objects alive, not 9
        work = functools.partial(self._run, request, seq_id, state, nbytes, method, transform)
        await self._ctx.watch(state, work)
        return APIFuture(state)

    async def _run(
        self,
        request: SampleRequest,
        seq_id: int,
        state: FutureState[Any],
        nbytes: int,
        method: str,
        transform: Callable[[SampleResponse], Any],
    ) -> object:
        limiter = self._limiter
        if limiter is not None:
            try:
                limiter.acquire_nowait()  # free: no checkpoint (the sample's request is one)
            except trio.WouldBlock:
                await limiter.acquire()
        retry = self._retry
        if self._active == 0:
            self._last_progress = trio.current_time()  # idle time is not "no progress"
        self._active += 1
        try:
            attempt = 0
            while True:
                try:
                    result = await self._attempt(
                        with_seq_id(request, seq_id), state, nbytes, method
                    )
                except Exception as exc:
                    if not (retry.enable_retry_logic and self._retryable(exc)):
                        raise
                    delay = sampling_retry_delay(attempt, retry, rng=self._ctx.rng)
                    # Stuck detection covers the whole retry loop, not only the waits inside
                    # one attempt: attempts that fail fast (a future that always expires)
                    # would otherwise resubmit forever without ever reaching a poll's deadline.
                    if (
                        retry.enable_stuck_detection
                        and trio.current_time() + delay >= self._progress_deadline()
                    ):
                        raise StuckError(
                            f"No progress made in {retry.progress_timeout:g} s: every attempt "
                            f"of this sample failed, the last with {type(exc).__name__}: {exc}. "
                            "Requests appear to be stuck."
                        ) from exc
                    attempt += 1
                    await trio.sleep(delay)
                    seq_id = self._take_seq()  # a whole-sample retry is a new request
                    continue
                self._last_progress = trio.current_time()
                return transform(result)
        finally:
            self._active -= 1
            if limiter is not None:
                limiter.release()

    def _retryable(self, exc: Exception) -> bool:
        if isinstance(exc, StuckError):
            return False
        if isinstance(exc, FutureExpiredError | APIConnectionError):
            return True
        return isinstance(exc, APIStatusError) and self._retry.is_retryable_status(exc.status_code)

    def _progress_deadline(self) -> float:
        return self._last_progress + self._retry.progress_timeout

    async def _attempt(
        self, request: SampleRequest, state: FutureState[Any], nbytes: int, method: str
    ) -> SampleResponse:
        started = trio.current_time()
        future = await submit_sample(self._ctx, request, nbytes, method)
        roundtrip = trio.current_time() - started
        state.request_id = future.request_id
        sequence_ids = future.sample_sequence_ids

        def decode(body: bytes) -> SampleResponse:
            return decode_sample_response(body, sequence_ids=sequence_ids)

        spec = ResultSpec("Sample", decode_proto=decode)
        completions = await self._completion_poller()
        if completions is None:
            return await self._fetch(future.request_id, spec, state, method, roundtrip)

        def fetch(allow_metadata_only: bool) -> Awaitable[SampleResponse]:
            return self._fetch(
                future.request_id,
                spec,
                state,
                method,
                roundtrip,
                allow_metadata_only=allow_metadata_only,
            )

        return await fetch_completed(
            completions,
            future.request_id,
            self._ctx.budget,
            self._progress_deadline if self._retry.enable_stuck_detection else None,
            fetch,
        )

    async def _fetch(
        self,
        request_id: str,
        spec: ResultSpec[SampleResponse],
        state: FutureState[Any],
        method: str,
        roundtrip: float,
        *,
        allow_metadata_only: bool = True,
    ) -> SampleResponse:
        return await poll_future(
            self._ctx.transport,
            request_id,
            spec,
            budget=self._ctx.budget,
            state=state,
            queue_log=self._queue_log,
            sdk_method=method,
            progress_deadline=self._progress_deadline
            if self._retry.enable_stuck_detection
            else None,
            allow_metadata_only=allow_metadata_only,
            promise_roundtrip=roundtrip,
        )

    async def _completion_poller(self) -> CompletionPoller | None:
        """Return this client's completion loop, starting it on first use (§6.4); None if off."""
        if not self._handle.client_config.sample_use_retrieve_futures:
            return None
        loop, loop_state = self._completions, self._completions_state
        if loop is not None and loop_state is not None and (not loop_state.done() or loop.fatal):
            return loop  # running, or failed for good (its waits raise the failure)
        loop = CompletionPoller(self._ctx.transport, self._sampler_id, self._clone_id)
        loop_state = FutureState("RetrieveFutures")
        self._completions, self._completions_state = loop, loop_state
        await self._ctx.watch(loop_state, loop.run)
        return loop
