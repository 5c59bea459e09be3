"""SamplingClient with the official 0.38 calling conventions, over the native one.

::

    sampler = service.create_sampling_client(base_model="local/tiny").result()
    out = sampler.sample(prompt, 1, params).result()            # blocking
    out = await sampler.sample(prompt, 1, params)                # asyncio, one await
    out = await sampler.sample_async(prompt, 1, params)          # 0.38's coroutine twin

Arguments are checked on the caller's thread (bad input raises at once); the sample itself
runs on the process runtime, so thousands can be in flight from one thread.

Across processes: a SamplingClient pickles as its sampler handle (never the API key).
Unpickled, or used in a ``fork()``-ed child, it attaches on first use to this process's
runtime with this process's credential (``TINKER_API_KEY`` and the other usual sources), with
no extra call.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

from tinker_actors.clients._sampler_handle import decode_handle
from tinker_actors.compat._deprecation import deprecated
from tinker_actors.compat._host import Host
from tinker_actors.compat._tokenizer import load_hf_tokenizer
from tinker_actors.config import resolve_config
from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from tinker_actors.clients import PreparedSample
    from tinker_actors.clients import SamplingClient as NativeSamplingClient
    from tinker_actors.compat._future import APIFuture
    from tinker_actors.compat._host import Submission
    from tinker_actors.types import (
        ModelInput,
        QueueState,
        SampleResponse,
        SamplingParams,
        TensorData,
    )

__all__ = ["SamplingClient"]

_DEPRECATED: Final = (
    "DEPRECATED: SamplingClient.{0}_async() is deprecated in tinker 0.38: use {0}(...), which "
    "returns an APIFuture to await or call .result() on"
)

_worker_lock = threading.Lock()
# One host per (base URL, key) for samplers that arrived by pickle or handle, with the number
# of live clients using it: the last one to go closes it.
_worker_hosts: dict[tuple[str, str], tuple[Host, int]] = {}


def _forget_worker_hosts() -> None:
    global _worker_lock
    _worker_lock = threading.Lock()
    _worker_hosts.clear()


os.register_at_fork(after_in_child=_forget_worker_hosts)


def _release_worker_host(key: tuple[str, str], host: Host) -> None:
    with _worker_lock:
        entry = _worker_hosts.get(key)
        if entry is None or entry[0] is not host:
            return
        if entry[1] > 1:
            _worker_hosts[key] = (host, entry[1] - 1)
            return
        del _worker_hosts[key]
    host.close_async()


def _worker_host(base_url: str, api_key: str | None) -> tuple[Host, tuple[str, str]]:
    """This process's host for samplers that arrived by pickle or handle, with its key.

    The caller holds one reference, given back with :func:`_release_worker_host`.
    """
    try:
        config = resolve_config(base_url=base_url, api_key=api_key)
    except InvalidInputError as exc:
        raise InvalidInputError(
            "this SamplingClient came from another process (pickle or sampler handle), which "
            "never passes the API key: it samples with this process's credential, and none "
            f"was found ({exc}). Set TINKER_API_KEY in this process's environment, or pass "
            "api_key= to SamplingClient.from_sampler_handle"
        ) from exc
    key = (config.base_url, config.api_key.fingerprint())
    with _worker_lock:
        entry = _worker_hosts.get(key)
        if entry is None or entry[0].closed or entry[0].process.pid != os.getpid():
            entry = (Host(config), 0)
        host = entry[0]
        _worker_hosts[key] = (host, entry[1] + 1)
        return host, key


class SamplingClient:
    """Samples one sampling session; see the module doc."""

    def __init__(
        self,
        host: Host | None,
        native: NativeSamplingClient | None,
        *,
        handle: str | None = None,
        api_key: str | None = None,
        tokenizer_id: str | None = None,
    ) -> None:
        self._host = host
        self._native = native
        self._handle = handle
        self._api_key = api_key
        self._tokenizer_id = tokenizer_id
        self._attach_lock = threading.Lock()
        if native is not None:
            native.observe_queue_state(_QueueStateRelay(self))
        #: As 0.38: read from TINKER_FEATURE_GATES (default ``async_sampling``); informational.
        self.feature_gates = set(
            os.environ.get("TINKER_FEATURE_GATES", "async_sampling").split(",")
        )

    def __repr__(self) -> str:
        native = self._native
        return f"<SamplingClient {native.sampling_session_id if native else 'detached'}>"

    @property
    def _sampling_session_id(self) -> str:
        # 0.38's private attribute, read by real code: tinker-cookbook's capture keys the
        # samples it records by it
        return self._attached()[1].sampling_session_id

    # -- attachment ----------------------------------------------------------------------------

    def _attached(self) -> tuple[Host, NativeSamplingClient]:
        host, native = self._host, self._native
        if host is not None and native is not None and host.process.pid == os.getpid():
            return host, native
        with self._attach_lock:
            host, native = self._host, self._native
            if host is not None and native is not None and host.process.pid == os.getpid():
                return host, native
            handle = self._handle or (native.get_sampler_handle() if native else None)
            if handle is None:
                raise InvalidInputError("this SamplingClient has no sampler to attach to")
            state = decode_handle(handle)
            host, key = _worker_host(state.base_url, self._api_key)
            try:
                service = host.runtime.service
                native = host.run(lambda: service.sampling_client_from_handle(handle))
            except BaseException:
                _release_worker_host(key, host)
                raise
            weakref.finalize(self, _release_worker_host, key, host)
            native.observe_queue_state(_QueueStateRelay(self))
            self._host, self._native, self._handle = host, native, handle
            return host, native

    def _start(
        self, prepared: PreparedSample, host: Host, native: NativeSamplingClient
    ) -> APIFuture[Any]:
        async def submit() -> Submission:
            return await native.submit(prepared), None

        return host.spawn(submit, submission=True)

    # -- sampling -------------------------------------------------------------------------------

    def sample(
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
        """Sample ``num_samples`` completions of ``prompt``; return the APIFuture at once.

        Raises:
            InvalidInputError / TypeError: bad arguments (nothing is sent).
        """
        host, native = self._attached()
        prepared = native.prepare_sample(
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
        return self._start(prepared, host, native)

    @deprecated(_DEPRECATED.format("sample"))
    async def sample_async(
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
    ) -> SampleResponse:
        """Deprecated in 0.38: ``await sample(...)``. Returns the response (one await)."""
        return await self.sample(
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

    def compute_logprobs(
        self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> APIFuture[list[float | None]]:
        """Score ``prompt``: its per-token logprobs (``None`` at position 0)."""
        host, native = self._attached()
        prepared = native.prepare_compute_logprobs(prompt, prompt_logprobs_last_n)
        return self._start(prepared, host, native)

    @deprecated(_DEPRECATED.format("compute_logprobs"))
    async def compute_logprobs_async(
        self, prompt: ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> list[float | None]:
        """Deprecated in 0.38: ``await compute_logprobs(...)``."""
        return await self.compute_logprobs(prompt, prompt_logprobs_last_n)

    # -- information ----------------------------------------------------------------------------

    def get_base_model(self) -> str:
        """Return the base model this session samples."""
        if self._native is not None:
            return self._native.get_base_model()
        return decode_handle(self._handle).base_model

    @deprecated(_DEPRECATED.format("get_base_model"))
    async def get_base_model_async(self) -> str:
        """Deprecated in 0.38: ``get_base_model()``."""
        return self.get_base_model()

    def get_tokenizer(self) -> Any:
        """Return the base model's tokenizer (a ``transformers`` tokenizer, as in 0.38)."""
        return load_hf_tokenizer(self.get_base_model(), self._tokenizer_id)

    def get_sampler_handle(self) -> str:
        """Return a string naming this sampler for another process (no credential in it)."""
        if self._native is not None:
            return self._native.get_sampler_handle()
        assert self._handle is not None
        return self._handle

    @staticmethod
    def from_sampler_handle(handle: str, *, api_key: str | None = None) -> SamplingClient:
        """Return a client for the sampler behind ``handle``, with this process's credential.

        Raises:
            InvalidInputError: not a sampler handle.
        """
        decode_handle(handle)
        return SamplingClient(None, None, handle=handle, api_key=api_key)

    def get_telemetry(self) -> Any:
        """Return the runtime's telemetry reporter (None when telemetry is off or detached)."""
        host = self._host
        if host is None or host.closed:
            return None
        runtime = host.runtime
        return runtime.telemetry if runtime.config.telemetry else None

    def on_queue_state_change(self, queue_state: Any, queue_state_reason: str | None) -> None:
        """0.38's queue-state hook, called as it is there: with each queue state a poll of this
        client's samples reports (a pause and its reason), and ``QueueState.ACTIVE`` as each
        sample finishes. Override it (or set it on the client) to follow pauses; it runs on
        the runtime's thread and must not block. This default does nothing: the runtime already
        logs paused queues (at most once a minute)."""
        del queue_state, queue_state_reason

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_unpickle_sampling_client, (self.get_sampler_handle(),))


def _unpickle_sampling_client(handle: str) -> SamplingClient:
    return SamplingClient.from_sampler_handle(handle)


class _QueueStateRelay:
    """Hands the native client's queue-state reports to ``on_queue_state_change`` of the 0.38
    SamplingClient, looked up at each call so that one a user sets on the client is used.

    It holds the client weakly: the native client outlives it in the runtime, and must not keep
    it (and what its finalizer releases) alive.
    """

    __slots__ = ("_client",)

    def __init__(self, client: SamplingClient) -> None:
        self._client = weakref.ref(client)

    def __call__(self, state: QueueState, reason: str | None) -> None:
        client = self._client()
        if client is not None:
            client.on_queue_state_change(state, reason)
