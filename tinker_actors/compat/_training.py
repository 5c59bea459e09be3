"""TrainingClient with the official 0.38 calling conventions, over the native one.

Every operation returns an :class:`~tinker_actors.compat._future.APIFuture` once it is queued
in call order, so the 0.38 pipelining idiom works from blocking code and from asyncio alike::

    fb = training.forward_backward(batch, "cross_entropy")        # queued, not awaited
    opt = training.optim_step(types.AdamParams(learning_rate=1e-4))
    print(fb.result().metrics, opt.result())                      # or: await fb; await opt

The arguments are checked and the request encoded on the caller's thread, so bad input raises
at the call and nothing is sent. The operation then joins this client's lane on the process
runtime, which hands operations to the native TrainingClient's actor one at a time in call
order (the server's ``seq_id`` order); the waits for results run in parallel. The ``*_async``
twins of 0.38 are coroutines returning the same APIFuture (deprecated there, kept here).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Final, Literal

from tinker_actors.compat._deprecation import deprecated
from tinker_actors.compat._future import BackcompatClientFuture, forward_client
from tinker_actors.compat._sampling import SamplingClient
from tinker_actors.compat._tokenizer import load_hf_tokenizer
from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tinker_actors.backoff import RetryConfig
    from tinker_actors.clients import PendingSampler, PreparedOp
    from tinker_actors.clients import TrainingClient as NativeTrainingClient
    from tinker_actors.compat._future import APIFuture
    from tinker_actors.compat._host import Host, Lane, Submission
    from tinker_actors.types import (
        AdamParams,
        Datum,
        ForwardBackwardOutput,
        GetInfoResponse,
        LoadWeightsResponse,
        OptimStepResponse,
        SaveWeightsExternalResponse,
        SaveWeightsForSamplerResponse,
        SaveWeightsResponse,
    )

__all__ = ["BackcompatSamplingClientFuture", "BackcompatTrainingClientFuture", "TrainingClient"]

_CONSOLE: Final = "https://tinker.thinkingmachines.ai"
_DEPRECATED: Final = (
    "DEPRECATED: TrainingClient.{0}_async() is deprecated in tinker 0.38: use {0}(...), which "
    "returns an APIFuture at once; submit what follows, then await it or call .result()"
)
_LOAD_DEPRECATED: Final = (
    "DEPRECATED: TrainingClient.{0}() is deprecated in tinker 0.38: create a new client with "
    "ServiceClient.create_training_client_from_state{1}(path) instead"
)


class TrainingClient:
    """Trains one model; every operation is queued in call order (see the module doc)."""

    def __init__(self, host: Host, native: NativeTrainingClient) -> None:
        self._host = host
        self._native = native
        self._lane: Lane = host.lane()

    def __repr__(self) -> str:
        return f"<TrainingClient {self._native.model_id}>"

    @property
    def model_id(self) -> str:
        """The model (and training run) id."""
        return self._native.model_id

    def _queue(self, op: PreparedOp) -> APIFuture[Any]:
        native = self._native

        async def submit() -> Submission:
            return await native.submit(op), None

        self._host.process.check_process()
        return self._lane.push(submit)

    # -- training -------------------------------------------------------------------------------

    def forward(
        self,
        data: list[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Queue a forward pass (no gradients)."""
        return self._queue(self._native.prepare_forward(data, loss_fn, _config(loss_fn_config)))  # type: ignore[arg-type]

    @deprecated(_DEPRECATED.format("forward"))
    async def forward_async(
        self,
        data: list[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Deprecated in 0.38: ``forward(...)``."""
        return self.forward(data, loss_fn, loss_fn_config)

    def forward_backward(
        self,
        data: list[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Queue a forward and backward pass (gradients accumulate until ``optim_step``)."""
        prepared = self._native.prepare_forward_backward(data, loss_fn, _config(loss_fn_config))  # type: ignore[arg-type]
        return self._queue(prepared)

    @deprecated(_DEPRECATED.format("forward_backward"))
    async def forward_backward_async(
        self,
        data: list[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Deprecated in 0.38: ``forward_backward(...)``."""
        return self.forward_backward(data, loss_fn, loss_fn_config)

    def forward_backward_custom(
        self,
        data: list[Datum],
        loss_fn: Callable[..., Any],
        *,
        loss_type_input: Literal["logprobs"] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Queue a forward_backward on a loss computed on this machine from the logprobs.

        ``loss_fn`` is ``(data, logprobs_list) -> (loss, metrics)`` or a ``LossHandle`` from
        ``ServiceClient.create_custom_loss``.
        """
        if loss_type_input is not None:
            warnings.warn(
                "the 'loss_type_input' parameter of forward_backward_custom() is deprecated: "
                "the loss always receives logprobs",
                DeprecationWarning,
                stacklevel=2,
            )
            if loss_type_input != "logprobs":
                raise InvalidInputError(
                    f"loss_type_input must be 'logprobs' (or left out), got {loss_type_input!r}"
                )
        batch_loss = getattr(loss_fn, "as_batch_loss", None)
        if callable(batch_loss):
            loss_fn = batch_loss(self._session_id())
        return self._queue(self._native.prepare_forward_backward_custom(data, loss_fn))

    @deprecated(_DEPRECATED.format("forward_backward_custom"))
    async def forward_backward_custom_async(
        self,
        data: list[Datum],
        loss_fn: Callable[..., Any],
        *,
        loss_type_input: Literal["logprobs"] | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Deprecated in 0.38: ``forward_backward_custom(...)``."""
        return self.forward_backward_custom(data, loss_fn, loss_type_input=loss_type_input)

    def optim_step(
        self, optim_params: Any = None, *, adam_params: AdamParams | None = None
    ) -> APIFuture[OptimStepResponse]:
        """Queue an optimizer step with ``optim_params`` (AdamParams, DimuonParams...).

        Raises:
            InvalidInputError: both or neither of ``optim_params`` and ``adam_params``.
        """
        if optim_params is not None and adam_params is not None:
            raise InvalidInputError("pass optim_params or the legacy adam_params, not both")
        params = optim_params if optim_params is not None else adam_params
        if params is None:
            raise InvalidInputError(
                "optim_step needs optimizer parameters, e.g. types.AdamParams(learning_rate=1e-4)"
            )
        return self._queue(self._native.prepare_optim_step(params))

    @deprecated(_DEPRECATED.format("optim_step"))
    async def optim_step_async(
        self, optim_params: Any = None, *, adam_params: AdamParams | None = None
    ) -> APIFuture[OptimStepResponse]:
        """Deprecated in 0.38: ``optim_step(...)``."""
        return self.optim_step(optim_params, adam_params=adam_params)

    # -- checkpoints ----------------------------------------------------------------------------

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Queue a save of weights and optimizer state as ``tinker://<model>/weights/<name>``."""
        return self._queue(
            self._native.prepare_save_state(name, ttl_seconds, overwrite, user_metadata)
        )

    @deprecated(_DEPRECATED.format("save_state"))
    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Deprecated in 0.38: ``save_state(...)``."""
        return self.save_state(name, ttl_seconds, overwrite, user_metadata)

    @deprecated(_LOAD_DEPRECATED.format("load_state", ""))
    def load_state(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Deprecated in 0.38: queue a load of saved weights (no optimizer state)."""
        return self._queue(self._native.prepare_load_state(path, weights_access_token))

    @deprecated(_LOAD_DEPRECATED.format("load_state", ""))
    async def load_state_async(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Deprecated in 0.38: ``create_training_client_from_state``."""
        return self._queue(self._native.prepare_load_state(path, weights_access_token))

    @deprecated(_LOAD_DEPRECATED.format("load_state_with_optimizer", "_with_optimizer"))
    def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Deprecated in 0.38: queue a load of saved weights and optimizer state."""
        return self._queue(
            self._native.prepare_load_state(path, weights_access_token, optimizer=True)
        )

    @deprecated(_LOAD_DEPRECATED.format("load_state_with_optimizer", "_with_optimizer"))
    async def load_state_with_optimizer_async(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Deprecated in 0.38: ``create_training_client_from_state_with_optimizer``."""
        return self._queue(
            self._native.prepare_load_state(path, weights_access_token, optimizer=True)
        )

    def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        """Queue a save of sampler weights as ``tinker://<model>/sampler_weights/<name>``."""
        return self._queue(
            self._native.prepare_save_weights_for_sampler(name, ttl_seconds, user_metadata)
        )

    @deprecated(_DEPRECATED.format("save_weights_for_sampler"))
    async def save_weights_for_sampler_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        """Deprecated in 0.38: ``save_weights_for_sampler(...)``."""
        return self.save_weights_for_sampler(name, ttl_seconds, user_metadata)

    def save_weights_external(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> APIFuture[SaveWeightsExternalResponse]:
        """Queue an export of downloadable weights (``tinker://<model>/external_weights/...``)."""
        return self._queue(
            self._native.prepare_save_weights_external(name, ttl_seconds, age_encryption_recipients)
        )

    @deprecated(_DEPRECATED.format("save_weights_external"))
    async def save_weights_external_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> APIFuture[SaveWeightsExternalResponse]:
        """Deprecated in 0.38: ``save_weights_external(...)``."""
        return self.save_weights_external(name, ttl_seconds, age_encryption_recipients)

    # -- samplers ------------------------------------------------------------------------------

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
        kind: Literal["snapshot", "inflight"] = "snapshot",
    ) -> BackcompatSamplingClientFuture:
        """Queue an ephemeral sampler save; the future gives a SamplingClient on those weights."""
        if name is not None:  # ephemeral weights have no name; 0.38 says so the same way
            warnings.warn(
                "the 'name' argument of save_weights_and_get_sampling_client() is deprecated and "
                "ignored: these weights are ephemeral. For weights that keep a name, use "
                "save_weights_for_sampler(name) and create_sampling_client(model_path=...)",
                DeprecationWarning,
                stacklevel=2,
            )
        native, host = self._native, self._host
        tokenizer_id = native.get_info().model_data.tokenizer_id

        async def submit() -> Submission:
            pending: PendingSampler = await native.submit_sampler_save(
                kind, retry_config, record_stability_info
            )

            def client(saved: Any) -> SamplingClient:
                return SamplingClient(host, pending.client(saved), tokenizer_id=tokenizer_id)

            return pending.saved, client

        host.process.check_process()
        future = host.new_future(BackcompatSamplingClientFuture)
        self._lane.push(submit, future=future)
        return future  # type: ignore[return-value]

    @deprecated(_DEPRECATED.format("save_weights_and_get_sampling_client"))
    async def save_weights_and_get_sampling_client_async(
        self,
        name: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
        kind: Literal["snapshot", "inflight"] = "snapshot",
    ) -> SamplingClient:
        """Deprecated in 0.38: ``await save_weights_and_get_sampling_client(...)``."""
        return await self.save_weights_and_get_sampling_client(
            name, retry_config, record_stability_info, kind
        )

    def create_sampling_client(
        self,
        model_path: str,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> BackcompatSamplingClientFuture:
        """Open a sampling session on saved sampler weights; the future gives the client."""
        native, host = self._native, self._host
        tokenizer_id = native.get_info().model_data.tokenizer_id

        async def create() -> SamplingClient:
            sampler = await native.create_sampling_client(
                model_path, retry_config, record_stability_info
            )
            return SamplingClient(host, sampler, tokenizer_id=tokenizer_id)

        future = host.new_future(BackcompatSamplingClientFuture)
        host.spawn(create, future=future)
        return future  # type: ignore[return-value]

    @deprecated(_DEPRECATED.format("create_sampling_client"))
    async def create_sampling_client_async(
        self,
        model_path: str,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> SamplingClient:
        """Deprecated in 0.38: ``await create_sampling_client(...)``."""
        return await self.create_sampling_client(model_path, retry_config, record_stability_info)

    # -- information ----------------------------------------------------------------------------

    def get_info(self) -> GetInfoResponse:
        """Return the model's info (fetched once, when the client was created)."""
        return self._native.get_info()

    @deprecated(_DEPRECATED.format("get_info"))
    async def get_info_async(self) -> GetInfoResponse:
        """Deprecated in 0.38: ``get_info()``."""
        return self._native.get_info()

    def get_tokenizer(self) -> Any:
        """Return the model's tokenizer (a ``transformers`` tokenizer, as in 0.38)."""
        data = self._native.get_info().model_data
        name = data.model_name or self._native.get_info().model_name
        if not name:
            raise InvalidInputError(f"the server reported no model name for {self.model_id}")
        return load_hf_tokenizer(name, data.tokenizer_id)

    def get_console_url(self) -> str:
        """Return the Tinker console page of this training run."""
        return f"{_CONSOLE}/training_runs/{self.model_id}"

    def get_telemetry(self) -> Any:
        """Return the runtime's telemetry reporter (None when telemetry is off)."""
        runtime = self._host.runtime
        return runtime.telemetry if runtime.config.telemetry else None

    def _session_id(self) -> str | None:
        return self._host.runtime.current_session_id()


class BackcompatSamplingClientFuture(BackcompatClientFuture[SamplingClient], SamplingClient):
    """A future of a SamplingClient (0.38 returns these from the sampler factories)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # As 0.38: pickling the future waits for its client and pickles that, so code that
        # hands save_weights_and_get_sampling_client()'s value to a worker process gets a
        # SamplingClient there (a Future itself holds locks and cannot be pickled).
        return self.result().__reduce__()


class BackcompatTrainingClientFuture(BackcompatClientFuture[TrainingClient], TrainingClient):
    """A future of a TrainingClient (0.38 returns these from the training-client factories)."""


forward_client(BackcompatSamplingClientFuture, SamplingClient)
forward_client(BackcompatTrainingClientFuture, TrainingClient)


def _config(config: Mapping[str, float | str] | None) -> dict[str, float | str] | None:
    if config is None:
        return None
    if not hasattr(config, "items"):
        raise InvalidInputError(f"loss_fn_config must be a mapping or None, got {config!r}")
    return dict(config)
