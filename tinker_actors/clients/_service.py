"""ServiceClient: the factories of training and sampling clients, over the runtime's actors.

``tinker_actors.open()`` yields a Runtime whose client factories delegate here::

    async with tinker_actors.open() as tinker:
        training = await tinker.create_lora_training_client("local/tiny", rank=16)
        sampler = await tinker.create_sampling_client(base_model="local/tiny")

:class:`ClientContext` is what every client holds: the transport and a few narrow entry points
into the runtime (the session, the poller, the clients supervisor). The runtime builds it; the
clients never see the tree itself.

Creation costs, as in the official client (protocol.md §8.6): a training client is
``create_model`` (or a create-via-load ``load_weights``), its future, then one ``get_info``;
a sampling client is one ``create_sampling_session`` (plus ``GET /samplers/{id}`` when only a
``model_path`` was given, to learn the base model). The first factory call of a runtime also
bootstraps the session.
"""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
import trio

from tinker_actors.actors import OperationCancelledError, ResultSpec, holder_retries, poll_future
from tinker_actors.clients._reporting import reported
from tinker_actors.clients._rest import RestClient
from tinker_actors.clients._sampler_handle import ShadowSessions, clone_id_for, decode_handle
from tinker_actors.clients._sampling import SamplingClient
from tinker_actors.clients._training import TrainingClient, start_training_client
from tinker_actors.errors import InvalidInputError
from tinker_actors.supervisors import ActorExited, Restart
from tinker_actors.transport import RequestOptions
from tinker_actors.types import (
    CreateModelRequest,
    CreateModelResponse,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    HealthResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    LoraConfig,
    OptimizerConfig,
    UntypedAPIFuture,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.actors import (
        FutureState,
        RateLimiter,
        ResponseBudget,
        SessionHandle,
        TelemetryReporter,
    )
    from tinker_actors.backoff import RetryConfig
    from tinker_actors.config import Config
    from tinker_actors.supervisors import Actor, ActorRef
    from tinker_actors.transport import Transport

__all__ = ["ClientContext", "ServiceClient"]

_SERVICE: Final = "ServiceClient"
_REPORTED: Final = "_tinker_actors_reported"


@final
class ClientContext:
    """What clients need from the runtime, as narrow callables (built by the runtime).

    Attributes:
        transport: the HTTP transport.
        config: the resolved configuration.
        budget: the in-flight response byte budget shared by all polls.
        telemetry: where errors of public calls are reported (None: nowhere).
        rng: jitter source for retry delays.
        shadows: the sessions of sampler handles this runtime samples on without owning them
            (None: handles join the runtime's own session).
    """

    __slots__ = (
        "_ensure",
        "_limiter",
        "_reserve",
        "_start_actor",
        "_stop_actor",
        "_watch",
        "budget",
        "config",
        "ids",
        "rng",
        "shadows",
        "telemetry",
        "transport",
    )

    def __init__(
        self,
        *,
        transport: Transport,
        config: Config,
        budget: ResponseBudget,
        ensure_session: Callable[[], Awaitable[SessionHandle]],
        reserve: Callable[[str], Awaitable[tuple[SessionHandle, int]]],
        watch: Callable[[FutureState[Any], Callable[[], Awaitable[object]]], Awaitable[None]],
        start_actor: Callable[
            [str, Callable[[trio.Nursery], Actor[Any]], Restart], Awaitable[ActorRef[Any]]
        ],
        stop_actor: Callable[[str], Awaitable[None]],
        rate_limiter: Callable[[], Awaitable[RateLimiter]],
        telemetry: TelemetryReporter | None = None,
        rng: random.Random | None = None,
        shadows: ShadowSessions | None = None,
    ) -> None:
        self.transport = transport
        self.config = config
        self.budget = budget
        self.rng = rng or random.Random()
        self.ids = 0
        self._ensure = ensure_session
        self._reserve = reserve
        self._watch = watch
        self._start_actor = start_actor
        self._stop_actor = stop_actor
        self._limiter = rate_limiter
        self.telemetry = telemetry
        self.shadows = shadows

    def __repr__(self) -> str:
        return f"<ClientContext {self.config.base_url}>"

    async def session(self) -> SessionHandle:
        """Return the session, bootstrapping it on first use."""
        return await self._ensure()

    async def reserve(self, counter: str) -> tuple[SessionHandle, int]:
        """Take the session's next ``model`` or ``sampling`` seq id."""
        return await self._reserve(counter)

    async def rate_limiter(self) -> RateLimiter:
        """Return the RateLimiter of this runtime's (base_url, API key), sized by the server."""
        return await self._limiter()

    async def watch(self, state: FutureState[Any], work: Callable[[], Awaitable[object]]) -> None:
        """Run ``work`` in the poller and resolve ``state`` with its outcome (errors reported)."""
        if self.telemetry is not None:
            state.add_done_callback(self._report_outcome)
        await self._watch(state, work)

    def _report_outcome(self, state: FutureState[Any]) -> None:
        try:
            state.outcome()
        except Exception as exc:
            self.report(exc)

    def report(self, error: BaseException) -> None:
        """Report an error that surfaced from a public call to telemetry, once per error.

        Cancellations the user asked for and the runtime's own shutdown are not errors.
        """
        telemetry = self.telemetry
        if telemetry is None or isinstance(error, OperationCancelledError | ActorExited):
            return
        if getattr(error, _REPORTED, False):
            return
        with contextlib.suppress(AttributeError):  # a __slots__ exception may be reported twice
            setattr(error, _REPORTED, True)
        telemetry.log_exception(error)

    async def start_actor(
        self, prefix: str, factory: Callable[[trio.Nursery], Actor[Any]]
    ) -> tuple[str, ActorRef[Any]]:
        """Start a TRANSIENT client actor named ``<prefix>-<n>``; return its id and ref.

        ``factory`` gets a nursery for the actor's background tasks, which end with it.
        """
        self.ids += 1
        actor_id = f"{prefix}-{self.ids}"
        return actor_id, await self._start_actor(actor_id, factory, Restart.TRANSIENT)

    async def stop_actor(self, actor_id: str) -> None:
        """Stop a client actor politely and forget it."""
        await self._stop_actor(actor_id)


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_metadata(value: object) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidInputError(f"user_metadata must be a dict or None, got {value!r}")
    return value


def _check_optimizer(value: object) -> OptimizerConfig:
    """Return ``value`` as the wire's OptimizerConfig (None: AdamW).

    Any config struct with a ``type`` (and, for versioned families, a ``version``) is
    accepted, so the official-style ``AdamOptimizerConfig()`` / ``DimuonOptimizerConfig()``
    work as well as ``OptimizerConfig.dimuon()``.
    """
    if value is None:
        return OptimizerConfig()
    if isinstance(value, OptimizerConfig):
        return value
    family = getattr(value, "type", None)
    if not isinstance(value, msgspec.Struct) or not isinstance(family, str) or not family:
        raise InvalidInputError(
            "optimizer must be an optimizer config such as OptimizerConfig.dimuon() or "
            f"DimuonOptimizerConfig(), got {value!r}"
        )
    version = getattr(value, "version", None)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidInputError(f"optimizer version must be an int, got {version!r}")
    return OptimizerConfig(type=family, version=version)


@final
class ServiceClient:
    """Creates training and sampling clients on one session (the runtime's)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx

    def __repr__(self) -> str:
        return f"<ServiceClient {self._ctx.config.base_url}>"

    async def session_id(self) -> str:
        """Return the session id (bootstrapping the session if needed), to quote to support."""
        return (await self._ctx.session()).session_id

    @reported
    async def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        """Return the models the server supports (no session needed)."""
        response = await self._ctx.transport.request(
            "GET",
            "/api/v1/get_server_capabilities",
            sdk_method=f"{_SERVICE}.get_server_capabilities",
        )
        return response.decode(GetServerCapabilitiesResponse)

    async def health_check(self) -> HealthResponse:
        """Ask the service whether it is up (``GET /api/v1/healthz``; no session needed).

        Raises:
            APIStatusError / APIConnectionError: the service is not healthy or not reachable,
                after the transport's retries.
        """
        response = await self._ctx.transport.request("GET", "/api/v1/healthz")
        return response.decode(HealthResponse)

    def create_rest_client(self) -> RestClient:
        """Return a RestClient over the runtime's transport (checkpoints, runs, sessions)."""
        shadows = self._ctx.shadows
        return RestClient(
            self._ctx.transport,
            project_id=self._ctx.config.project_id,
            server_flags=None if shadows is None else shadows.flags,
        )

    @reported
    async def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, Any] | None = None,
        optimizer: OptimizerConfig | None = None,
    ) -> TrainingClient:
        """Create a LoRA model on ``base_model`` and return its TrainingClient.

        ``optimizer`` fixes the optimizer family for the model's lifetime (default AdamW;
        ``OptimizerConfig.dimuon()`` selects Dimuon); per-step values go to ``optim_step``.

        Raises:
            InvalidInputError: no ``train_*`` flag is set, ``rank`` is not a positive int, or
                ``optimizer`` is not an optimizer config.
            RequestFailedError: the server refused to create the model.
        """
        _check_name("base_model", base_model)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise InvalidInputError(f"rank must be a positive int, got {rank!r}")
        if not (train_mlp or train_attn or train_unembed):
            raise InvalidInputError(
                "at least one of train_mlp, train_attn, train_unembed must be True"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidInputError(f"seed must be an int or None, got {seed!r}")
        metadata = _check_metadata(user_metadata)
        optimizer_config = _check_optimizer(optimizer)
        lora = LoraConfig(
            rank=rank,
            seed=seed,
            train_mlp=train_mlp,
            train_attn=train_attn,
            train_unembed=train_unembed,
        )
        ctx = self._ctx
        method = f"{_SERVICE}.create_lora_training_client"
        handle, model_seq = await ctx.reserve("model")
        request = CreateModelRequest(
            session_id=handle.session_id,
            model_seq_id=model_seq,
            base_model=base_model,
            user_metadata=metadata,
            lora_config=lora,
            optimizer_config=optimizer_config,
        )
        # create_model has HTTP retries only (no holder retries), protocol §3.2.
        started = trio.current_time()
        response = await ctx.transport.request(
            "POST", "/api/v1/create_model", json=request, sdk_method=method
        )
        future = response.decode(UntypedAPIFuture)
        created = await poll_future(
            ctx.transport,
            future.request_id,
            ResultSpec("CreateModel", CreateModelResponse),
            budget=ctx.budget,
            sdk_method=method,
            promise_roundtrip=trio.current_time() - started,
        )
        return await start_training_client(
            ctx, handle, created.model_id, sdk_method=method, service=self
        )

    @reported
    async def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, Any] | None = None,
        weights_access_token: str | None = None,
        optimizer: OptimizerConfig | None = None,
    ) -> TrainingClient:
        """Create a model from a saved state's weights (fresh optimizer); return its client.

        ``optimizer`` chooses the new model's optimizer family (default: the checkpoint's).
        """
        return await self._from_state(
            path,
            base_model,
            user_metadata,
            weights_access_token,
            optimizer=False,
            optimizer_config=None if optimizer is None else _check_optimizer(optimizer),
        )

    @reported
    async def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, Any] | None = None,
        weights_access_token: str | None = None,
    ) -> TrainingClient:
        """Create a model from a saved state, weights and optimizer; return its client."""
        return await self._from_state(
            path, base_model, user_metadata, weights_access_token, optimizer=True
        )

    async def _from_state(
        self,
        path: str,
        base_model: str | None,
        user_metadata: dict[str, Any] | None,
        weights_access_token: str | None,
        *,
        optimizer: bool,
        optimizer_config: OptimizerConfig | None = None,
    ) -> TrainingClient:
        _check_name("path", path)
        if not path.startswith("tinker://"):
            raise InvalidInputError(
                f"path must be a tinker:// checkpoint path (from save_state), got {path!r}"
            )
        metadata = _check_metadata(user_metadata)
        ctx = self._ctx
        method = f"{_SERVICE}.create_training_client_from_state" + (
            "_with_optimizer" if optimizer else ""
        )
        handle, model_seq = await ctx.reserve("model")
        request = LoadWeightsRequest(
            session_id=handle.session_id,
            model_seq_id=model_seq,
            base_model=base_model,
            user_metadata=metadata,
            path=path,
            optimizer=optimizer,
            weights_access_token=weights_access_token,
            optimizer_config=optimizer_config,
        )
        started = trio.current_time()
        response = await holder_retries(
            lambda: ctx.transport.request(
                "POST", "/api/v1/load_weights", json=request, sdk_method=method
            ),
            what="load_weights",
        )
        future = response.decode(UntypedAPIFuture)
        loaded = await poll_future(
            ctx.transport,
            future.request_id,
            ResultSpec("LoadWeights", LoadWeightsResponse),
            budget=ctx.budget,
            sdk_method=method,
            promise_roundtrip=trio.current_time() - started,
        )
        # The same id the server derives for a create-via-load model (protocol §8.1).
        model_id = loaded.model_id or future.model_id or f"{handle.session_id}:train:{model_seq}"
        return await start_training_client(ctx, handle, model_id, sdk_method=method, service=self)

    @reported
    async def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> SamplingClient:
        """Open a sampling session on saved sampler weights or on a base model.

        With ``record_stability_info``, every sample of the client asks the server to record
        its sequences' stability information (StableReinforce training refers to it by
        ``sequence_id``).

        Raises:
            InvalidInputError: neither ``model_path`` nor ``base_model`` was given, or the
                path is not a ``tinker://`` path.
        """
        if model_path is None and base_model is None:
            raise InvalidInputError("create_sampling_client needs model_path or base_model")
        if model_path is not None and not (
            isinstance(model_path, str) and model_path.startswith("tinker://")
        ):
            raise InvalidInputError(
                f"model_path must be a tinker:// sampler weights path, got {model_path!r}"
            )
        if base_model is not None:
            _check_name("base_model", base_model)
        ctx = self._ctx
        method = f"{_SERVICE}.create_sampling_client"
        handle, seq = await ctx.reserve("sampling")
        request = CreateSamplingSessionRequest(
            session_id=handle.session_id,
            sampling_session_seq_id=seq,
            base_model=base_model,
            model_path=model_path,
        )
        response = await holder_retries(
            lambda: ctx.transport.request(
                "POST", "/api/v1/create_sampling_session", json=request, sdk_method=method
            ),
            what="create_sampling_session",
        )
        sampler_id = response.decode(CreateSamplingSessionResponse).sampling_session_id
        if base_model is None:
            info = await ctx.transport.request(
                "GET",
                f"/api/v1/samplers/{sampler_id}",
                options=RequestOptions(),
                sdk_method=method,
            )
            base_model = info.decode(GetSamplerResponse).base_model
        return SamplingClient(
            ctx,
            handle,
            sampler_id,
            base_model,
            retry_config=retry_config,
            record_stability_info=record_stability_info,
        )

    async def sampling_client_from_handle(
        self, handle: str, retry_config: RetryConfig | None = None
    ) -> SamplingClient:
        """Return a clone SamplingClient for a handle from ``get_sampler_handle()``.

        The clone samples on the handle's session (this runtime heartbeats it but does not
        create a session of its own for it, nor finish it).

        Raises:
            InvalidInputError: not a sampler handle, or one for another base URL.
        """
        state = decode_handle(handle)
        ctx = self._ctx
        if state.base_url.rstrip("/") != ctx.config.base_url.rstrip("/"):
            raise InvalidInputError(
                f"the sampler handle is for {state.base_url}, but this runtime talks to "
                f"{ctx.config.base_url}; open the runtime with base_url={state.base_url!r}"
            )
        # A shadow holder (protocol §2): the handle's own session, heartbeated, never finished
        # here, and no create_session of this runtime's own.
        if ctx.shadows is not None:
            session = await ctx.shadows.join(state.session_id, ctx.watch)
        else:
            session = await ctx.session()
        clone = await clone_id_for(
            ctx.transport,
            session,
            state.sampling_session_id,
            rng=ctx.rng,
            sdk_method="SamplingClient.from_sampler_handle",
        )
        return SamplingClient(
            ctx,
            session,
            state.sampling_session_id,
            state.base_model,
            retry_config=retry_config,
            clone_id=clone,
            record_stability_info=state.record_stability_info,
        )
