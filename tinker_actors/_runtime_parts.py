"""The parts of :class:`~tinker_actors._runtime.Runtime` that need none of its tree wiring.

``_runtime`` keeps the lifetimes: ``open()``, the supervision tree and the lazily started
actors. What lives here is plain: the up-front checks of ``open()``'s own arguments, the rule
that maps how the body ended to the session's finish status, the statistics snapshot, and the
ServiceClient factories the runtime exposes as its own methods (pure delegation, so a runtime
can be used wherever the official SDK has a ``ServiceClient``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from tinker_actors.errors import InvalidInputError
from tinker_actors.latency import LatencyBook, LatencyReport
from tinker_actors.supervisors import (
    Census,
    Registry,
    RegistryStatistics,
    SupervisorRef,
    SupervisorStatistics,
)
from tinker_actors.transport import Transport, TransportStatistics

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tinker_actors.actors import FinishStatus
    from tinker_actors.backoff import RetryConfig
    from tinker_actors.clients import RestClient, SamplingClient, ServiceClient, TrainingClient
    from tinker_actors.types import (
        GetServerCapabilitiesResponse,
        HealthResponse,
        OptimizerConfig,
    )

__all__ = [
    "RuntimeStatistics",
    "ServiceMethods",
    "check_grace",
    "check_session_options",
    "collect_statistics",
    "finish_status",
    "latency_report",
]


class RuntimeStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a runtime.

    Attributes:
        uptime: seconds since the tree was ready.
        actors: live actors (not counting supervisors).
        supervisors: each supervisor's statistics, root first.
        limiters: the limiter registry's entries and starts.
        transport: the HTTP layer's counters.
    """

    uptime: float
    actors: int
    supervisors: tuple[SupervisorStatistics, ...]
    limiters: RegistryStatistics | None
    transport: TransportStatistics


def collect_statistics(
    root: SupervisorRef,
    child_ids: Iterable[str],
    census: Census,
    started_at: float,
    transport: Transport,
) -> RuntimeStatistics:
    """Gather the root's and its fixed children's counters, the census and the transport's."""
    supervisors = [root.statistics()]
    limiters: RegistryStatistics | None = None
    for child_id in child_ids:
        value = root.child(child_id)
        if isinstance(value, Registry):
            limiters = value.statistics()
            supervisors.append(value.supervisor.statistics())
        elif isinstance(value, SupervisorRef):
            supervisors.append(value.statistics())
    dump = census.dump()
    return RuntimeStatistics(
        uptime=trio.current_time() - started_at,
        actors=sum(1 for info in dump.actors if info.kind == "actor"),
        supervisors=tuple(supervisors),
        limiters=limiters,
        transport=transport.statistics(),
    )


def latency_report(requests: LatencyBook, operations: LatencyBook, window: float) -> LatencyReport:
    """The two books' summaries over a window of ``window`` seconds."""
    return LatencyReport(
        window=window, requests=requests.summaries(), operations=operations.summaries()
    )


def check_grace(shutdown_grace: object) -> float:
    """Return ``shutdown_grace`` as seconds, or raise InvalidInputError if it is not finite >= 0."""
    if (
        isinstance(shutdown_grace, bool)
        or not isinstance(shutdown_grace, int | float)
        or not 0 <= shutdown_grace < math.inf
    ):
        raise InvalidInputError(
            f"shutdown_grace must be a finite number of seconds >= 0, got {shutdown_grace!r}"
        )
    return float(shutdown_grace)


def check_session_options(user_metadata: object, display_name: object) -> None:
    """Raise InvalidInputError unless the session's metadata and display name are well typed."""
    if user_metadata is not None and not (
        isinstance(user_metadata, dict) and all(isinstance(k, str) for k in user_metadata)
    ):
        raise InvalidInputError(
            f"user_metadata must be a dict with str keys or None, got {user_metadata!r}"
        )
    if display_name is not None and not isinstance(display_name, str):
        raise InvalidInputError(f"display_name must be a str or None, got {display_name!r}")


def finish_status(error: BaseException | None) -> FinishStatus:
    """Map how the body of ``open()`` ended to the session's finish status."""
    if error is None:
        return "success"
    return "errored" if isinstance(error, Exception) else "interrupted"


class ServiceMethods:
    """The ServiceClient factories as methods of the runtime: each delegates to ``_service``."""

    __slots__ = ()

    _service: ServiceClient

    @property
    def service(self) -> ServiceClient:
        """The ServiceClient of this runtime (its factories are also methods of the runtime)."""
        return self._service

    async def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        """Return the models the server supports (no session needed)."""
        return await self._service.get_server_capabilities()

    async def health_check(self) -> HealthResponse:
        """Ask the service whether it is up (no session needed)."""
        return await self._service.health_check()

    def create_rest_client(self) -> RestClient:
        """Return a RestClient over this runtime's transport (no session needed)."""
        return self._service.create_rest_client()

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
        """Create a LoRA model and return its TrainingClient (see ServiceClient)."""
        return await self._service.create_lora_training_client(
            base_model,
            rank=rank,
            seed=seed,
            train_mlp=train_mlp,
            train_attn=train_attn,
            train_unembed=train_unembed,
            user_metadata=user_metadata,
            optimizer=optimizer,
        )

    async def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, Any] | None = None,
        weights_access_token: str | None = None,
        optimizer: OptimizerConfig | None = None,
    ) -> TrainingClient:
        """Create a model from saved weights (fresh optimizer) and return its client."""
        return await self._service.create_training_client_from_state(
            path, base_model, user_metadata, weights_access_token, optimizer=optimizer
        )

    async def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, Any] | None = None,
        weights_access_token: str | None = None,
    ) -> TrainingClient:
        """Create a model from saved weights and optimizer state and return its client."""
        return await self._service.create_training_client_from_state_with_optimizer(
            path, base_model, user_metadata, weights_access_token
        )

    async def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> SamplingClient:
        """Open a sampling session on saved weights or a base model (see ServiceClient)."""
        return await self._service.create_sampling_client(
            model_path, base_model, retry_config, record_stability_info
        )
