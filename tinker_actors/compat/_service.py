"""ServiceClient with the official 0.38 calling conventions, on the process runtime.

::

    with tinker.ServiceClient(base_url=url) as service:            # or ServiceClient() + close()
        training = service.create_lora_training_client(base_model="local/tiny").result()
        sampler = service.create_sampling_client(base_model="local/tiny").result()
    # leaving the block finishes the session: success / errored / interrupted

A ServiceClient resolves its configuration when it is built (a missing or malformed key
raises there), and opens its host (one ``tinker_actors.open()`` block on the process runtime)
on first use. Nothing is sent until a method needs it; the first that needs a session creates
it. ``close(status)`` (or leaving ``with`` / ``async with``) sends what training clients
queued, finishes the session and closes the host; the process runtime's thread stops with the
last host. A ServiceClient never closed is closed at interpreter exit.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Final, Literal

from tinker_actors._runtime_parts import check_session_options
from tinker_actors.compat._deprecation import deprecated
from tinker_actors.compat._future import APIFuture
from tinker_actors.compat._host import Host
from tinker_actors.compat._process import RuntimeClosedError
from tinker_actors.compat._rest import RestClient
from tinker_actors.compat._sampling import SamplingClient
from tinker_actors.compat._training import (
    BackcompatSamplingClientFuture,
    BackcompatTrainingClientFuture,
    TrainingClient,
)
from tinker_actors.config import display_url, resolve_config
from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from types import TracebackType

    from tinker_actors.backoff import RetryConfig
    from tinker_actors.clients import TrainingClient as NativeTrainingClient
    from tinker_actors.compat._process import ProcessRuntime
    from tinker_actors.types import GetServerCapabilitiesResponse

__all__ = ["ServiceClient"]

Status = Literal["success", "errored", "interrupted"]
_CONSOLE: Final = "https://tinker.thinkingmachines.ai"
_DEPRECATED: Final = (
    "DEPRECATED: ServiceClient.{0}_async() is deprecated in tinker 0.38: use `await {0}(...)`, "
    "which returns a future of the client"
)


class ServiceClient:
    """The entry point: creates training, sampling and REST clients on one session."""

    def __init__(
        self,
        user_metadata: dict[str, str] | None = None,
        project_id: str | None = None,
        *,
        display_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        default_headers_overrides: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            warnings.warn(
                f"ServiceClient ignores unsupported arguments: {', '.join(sorted(kwargs))}",
                FutureWarning,
                stacklevel=2,
            )
        check_session_options(user_metadata, display_name)
        overrides: dict[str, Any] = {}
        if project_id is not None:
            overrides["project_id"] = project_id
        if default_headers_overrides:
            overrides["default_headers"] = dict(default_headers_overrides)
        self._config = resolve_config(base_url=base_url, api_key=api_key, **overrides)
        self._user_metadata = user_metadata
        self._display_name = display_name
        self._lock = threading.Lock()
        self._host: Host | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<ServiceClient {display_url(self._config.base_url)}{' closed' if self._closed else ''}>"

    def _get_host(self) -> Host:
        with self._lock:
            if self._closed:
                raise RuntimeClosedError("this ServiceClient is closed")
            host = self._host
            if host is None:
                host = Host(
                    self._config,
                    user_metadata=self._user_metadata,
                    display_name=self._display_name,
                )
                self._host = host
        host.process.check_process()
        return host

    def _spawn(self, work: Callable[[Host], Awaitable[Any]], future: Any = None) -> Any:
        host = self._get_host()
        return host.spawn(lambda: work(host), future=future)

    # -- lifetime -------------------------------------------------------------------------------

    def __enter__(self) -> ServiceClient:
        if self._closed:
            raise RuntimeClosedError("this ServiceClient is closed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # 0.38 waits here without the blocking-in-a-loop warning: the caller asked to close.
        self._close(_status(exc_type), None).wait()

    async def __aenter__(self) -> ServiceClient:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close(_status(exc_type))

    def close(self, status: Status, detail: str | None = None) -> APIFuture[None]:
        """Finish the session with ``status`` and release everything this client holds.

        Queued training requests are sent first. Closing twice does nothing.

        Returns:
            A future done once the session is finished and the host closed.
        """
        return self._close(status, detail)

    def _close(self, status: Status, detail: str | None) -> _Closing:
        if status not in ("success", "errored", "interrupted"):
            raise InvalidInputError(
                f"status must be 'success', 'errored' or 'interrupted', got {status!r}"
            )
        with self._lock:
            if self._closed:
                return _Closing.done_now()
            self._closed = True
            host = self._host
        if host is None:
            return _Closing.done_now()
        done = host.close_async(status, detail)
        future = _Closing(host.process)
        done.add_done_callback(lambda d: _relay(d, future))
        return future

    # -- clients ----------------------------------------------------------------------------------

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: Any = None,
    ) -> BackcompatTrainingClientFuture:
        """Create a LoRA model on ``base_model``; the future gives its TrainingClient."""

        async def create(host: Host) -> TrainingClient:
            native = await host.runtime.service.create_lora_training_client(
                base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata,
                optimizer=optimizer,
            )  # fmt: skip
            return TrainingClient(host, native)

        return self._spawn(create, self._new(BackcompatTrainingClientFuture))  # type: ignore[no-any-return]

    @deprecated(_DEPRECATED.format("create_lora_training_client"))
    async def create_lora_training_client_async(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: Any = None,
    ) -> TrainingClient:
        """Deprecated in 0.38: ``await create_lora_training_client(...)``."""
        return await self.create_lora_training_client(
            base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata, optimizer
        )

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: Any = None,
    ) -> BackcompatTrainingClientFuture:
        """Create a model from a saved state's weights (fresh optimizer); future of its client."""

        async def create(host: Host) -> TrainingClient:
            service = host.runtime.service
            native: NativeTrainingClient = await service.create_training_client_from_state(
                path, base_model, user_metadata, weights_access_token, optimizer=optimizer
            )
            return TrainingClient(host, native)

        return self._spawn(create, self._new(BackcompatTrainingClientFuture))  # type: ignore[no-any-return]

    @deprecated(_DEPRECATED.format("create_training_client_from_state"))
    async def create_training_client_from_state_async(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: Any = None,
    ) -> TrainingClient:
        """Deprecated in 0.38: ``await create_training_client_from_state(...)``."""
        return await self.create_training_client_from_state(
            path, base_model, user_metadata, weights_access_token, optimizer
        )

    def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> BackcompatTrainingClientFuture:
        """Create a model from a saved state, weights and optimizer; future of its client."""

        async def create(host: Host) -> TrainingClient:
            service = host.runtime.service
            native = await service.create_training_client_from_state_with_optimizer(
                path, base_model, user_metadata, weights_access_token
            )
            return TrainingClient(host, native)

        return self._spawn(create, self._new(BackcompatTrainingClientFuture))  # type: ignore[no-any-return]

    @deprecated(_DEPRECATED.format("create_training_client_from_state_with_optimizer"))
    async def create_training_client_from_state_with_optimizer_async(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> TrainingClient:
        """Deprecated in 0.38: ``await create_training_client_from_state_with_optimizer(...)``."""
        return await self.create_training_client_from_state_with_optimizer(
            path, base_model, user_metadata, weights_access_token
        )

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> BackcompatSamplingClientFuture:
        """Open a sampling session on saved weights or a base model; future of its client.

        Raises:
            InvalidInputError: neither ``model_path`` nor ``base_model`` was given.
        """
        if model_path is None and base_model is None:
            raise InvalidInputError("create_sampling_client needs model_path or base_model")

        async def create(host: Host) -> SamplingClient:
            native = await host.runtime.service.create_sampling_client(
                model_path, base_model, retry_config, record_stability_info
            )
            return SamplingClient(host, native)

        return self._spawn(create, self._new(BackcompatSamplingClientFuture))  # type: ignore[no-any-return]

    @deprecated(_DEPRECATED.format("create_sampling_client"))
    async def create_sampling_client_async(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> SamplingClient:
        """Deprecated in 0.38: ``await create_sampling_client(...)``."""
        return await self.create_sampling_client(
            model_path, base_model, retry_config, record_stability_info
        )

    @deprecated(
        "DEPRECATED: ServiceClient.create_rest_client() is deprecated in tinker 0.38: construct "
        "tinker.RestClient() directly"
    )
    def create_rest_client(self) -> RestClient:
        """Deprecated in 0.38 (construct ``RestClient()``): a RestClient on this client's host."""
        return RestClient(self._get_host())

    def create_custom_loss(self, fn: Callable[..., Any], input_ranks: Mapping[str, int]) -> Any:
        """Trace a per-datum loss for ``forward_backward_custom``; future of its LossHandle."""
        from tinker_actors.compat._custom_loss import trace_loss

        async def create(host: Host) -> Any:
            return trace_loss(fn, input_ranks, await host.runtime.session_id())

        return self._spawn(create)

    def copy_weights(
        self,
        path: str,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
    ) -> APIFuture[str]:
        """Copy a checkpoint into this account; the future gives the copy's tinker path."""

        async def copy(host: Host) -> str:
            rest = host.runtime.create_rest_client()
            return await rest.copy_weights(
                path, ttl_seconds=ttl_seconds, weights_access_token=weights_access_token
            )

        return self._spawn(copy)  # type: ignore[no-any-return]

    # -- information -------------------------------------------------------------------------------

    @deprecated(
        "DEPRECATED: ServiceClient.get_server_capabilities() is deprecated in tinker 0.38: use "
        "tinker.RestClient().get_server_capabilities()"
    )
    def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        """Deprecated in 0.38 (``RestClient().get_server_capabilities()``): the models served."""
        return self._spawn(lambda host: host.runtime.get_server_capabilities()).result()  # type: ignore[no-any-return]

    @deprecated(_DEPRECATED.format("get_server_capabilities"))
    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        """Deprecated in 0.38: ``await RestClient().get_server_capabilities()``."""
        return await self._spawn(lambda host: host.runtime.get_server_capabilities())  # type: ignore[no-any-return]

    def get_console_url(self) -> str:
        """Return the Tinker console page of this session (or of all sessions, before one)."""
        host = self._host
        session = None if host is None or host.closed else host.runtime.current_session_id()
        return f"{_CONSOLE}/sessions" + (f"/{session}" if session else "")

    def get_telemetry(self) -> Any:
        """Return the runtime's telemetry reporter (None before first use or when off)."""
        host = self._host
        if host is None or host.closed:
            return None
        runtime = host.runtime
        return runtime.telemetry if runtime.config.telemetry else None

    def _new(self, cls: type[APIFuture[Any]]) -> APIFuture[Any]:
        return self._get_host().new_future(cls)


def _status(exc_type: type[BaseException] | None) -> Status:
    if exc_type is None:
        return "success"
    return "errored" if issubclass(exc_type, Exception) else "interrupted"


class _Closing(APIFuture[None]):
    """The future of ``close()``: once done, the runtime thread (if this was its last client)
    has been joined too, so nothing of the client is left when a waiter wakes."""

    def __init__(self, process: ProcessRuntime | None) -> None:
        super().__init__()
        self._process = process

    @classmethod
    def done_now(cls) -> _Closing:
        """A close with nothing to do (never opened, or closed before)."""
        closing = cls(None)
        closing.set_result(None)
        return closing

    def _join(self) -> None:
        if self._process is not None:
            self._process.join()

    def result(self, timeout: float | None = None) -> None:
        super().result(timeout)
        self._join()

    def wait(self) -> None:
        """Block until closed, without the warning about blocking inside an asyncio loop."""
        Future.result(self)
        self._join()

    async def result_async(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await super().result_async(timeout)
        self._join()  # the thread is past its last callback: this returns at once


def _relay(done: Any, future: APIFuture[None]) -> None:
    error = done.exception()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
