"""TrainingClient: one model, one actor, one mailbox: requests reach the server in order.

Every training operation on a model carries a ``seq_id`` and the server runs them in that
order (protocol.md §8.4). The client keeps that order the actor way: the TrainingClient facade
puts each call into its actor's FIFO mailbox; the actor takes them one at a time, assigns the
next ids (one per chunk), POSTs them, hands the server's future to the poller and answers the
caller with an :class:`APIFuture`. So::

    fb = await training.forward_backward(batch, "cross_entropy")  # 1st await: accepted in order
    opt = await training.optim_step(AdamParams(learning_rate=1e-4))
    print((await fb.result()).metrics)                            # 2nd await: done

Ids are taken when the actor reaches the call, in mailbox order, which is the order of the
calls; a call whose caller gave up before the actor reached it takes no id and sends nothing.
The first operation after model creation is ``seq_id 1`` (the creation is 0).

A forward/forward_backward batch larger than the server's chunk limits is split (protocol §9.1):
chunks are POSTed concurrently with the first chunk sent last, so the server sees the whole
batch queued, and their results are merged (§9.2).

Bad input the client can check is refused before anything is queued
(:mod:`~tinker_actors.clients._checks`). A request the server reads and refuses (400, 404,
422) fails alone: the server consumed its id, and later requests go on. If a submission fails
otherwise after its retries (or is interrupted) the server may be left waiting for an id that
will never come, and every later request would wait behind it. The actor therefore refuses
that request and every queued or later one with :class:`TrainingOrderBrokenError`, naming the
failed request, instead of letting them hang or run out of order.

The requests each call builds (ids to bodies, chunking, the custom loss's two passes) are in
``_training_ops``; this module is the facade that checks, submits and returns futures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias, final

from tinker_actors.actors import holder_retries
from tinker_actors.clients._checks import ModelLimits, check_forward_data
from tinker_actors.clients._reporting import reported
from tinker_actors.clients._sampling import SamplingClient
from tinker_actors.clients._training_actor import (
    Op,
    SeqCounter,
    Submit,
    TrainingActor,
    TrainingOrderBrokenError,
    training_queue_log,
)
from tinker_actors.clients._training_ops import (
    custom_loss_op,
    ephemeral_sampler_save_op,
    fwd_op,
    load_op,
    optim_step_op,
    save_external_op,
    save_for_sampler_op,
    save_state_op,
)
from tinker_actors.errors import APIResponseValidationError, InvalidInputError
from tinker_actors.tokenizer import get_tokenizer
from tinker_actors.types import GetInfoRequest, GetInfoResponse

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tinker_actors.actors import QueueStateLog, SessionHandle
    from tinker_actors.backoff import RetryConfig
    from tinker_actors.clients._future import APIFuture
    from tinker_actors.clients._service import ClientContext, ServiceClient
    from tinker_actors.custom_loss import CustomLossFn
    from tinker_actors.supervisors import ActorRef
    from tinker_actors.tokenizer import Tokenizer
    from tinker_actors.transport.proto._request_fast import KnownTokens
    from tinker_actors.types import (
        AdamParams,
        ClientConfigResponse,
        Datum,
        DimuonParams,
        ForwardBackwardOutput,
        LoadWeightsResponse,
        LossFnConfig,
        LossFnType,
        OptimStepResponse,
        QueueState,
        SaveWeightsExternalResponse,
        SaveWeightsForSamplerResponse,
        SaveWeightsForSamplerResponseInternal,
        SaveWeightsResponse,
    )

__all__ = [
    "PendingSampler",
    "PreparedOp",
    "TrainingClient",
    "TrainingOrderBrokenError",
    "start_training_client",
]


PreparedOp: TypeAlias = Op
"""A checked, encoded training operation, ready for :meth:`TrainingClient.submit`."""


@final
class PendingSampler:
    """An ephemeral sampler save in flight; :meth:`client` builds the SamplingClient on it."""

    __slots__ = ("_base_model", "_ctx", "_handle", "_record", "_retry", "saved")

    def __init__(
        self,
        saved: APIFuture[SaveWeightsForSamplerResponseInternal],
        ctx: ClientContext,
        handle: SessionHandle,
        base_model: str,
        retry_config: RetryConfig | None,
        record_stability_info: bool,
    ) -> None:
        self.saved = saved
        self._ctx = ctx
        self._handle = handle
        self._base_model = base_model
        self._retry = retry_config
        self._record = record_stability_info

    def client(self, saved: SaveWeightsForSamplerResponseInternal) -> SamplingClient:
        """Return the SamplingClient on the saved weights (``saved``: the save's result).

        Raises:
            APIResponseValidationError: the server's answer named no sampling session.
        """
        if saved.sampling_session_id is None:
            raise APIResponseValidationError(
                "the server answered an ephemeral sampler save without a sampling_session_id",
                status_code=200,
            )
        return SamplingClient(
            self._ctx,
            self._handle,
            saved.sampling_session_id,
            self._base_model,
            retry_config=self._retry,
            record_stability_info=self._record,
        )


@final
class TrainingClient:
    """Trains one model; every operation is submitted in call order (see the module doc)."""

    __slots__ = (
        "_actor_id",
        "_counter",
        "_ctx",
        "_handle",
        "_info",
        "_limits",
        "_model_id",
        "_queue_log",
        "_ref",
        "_service",
    )

    def __init__(
        self,
        ctx: ClientContext,
        handle: SessionHandle,
        actor_id: str,
        ref: ActorRef[Submit],
        model_id: str,
        info: GetInfoResponse,
        service: ServiceClient,
        counter: SeqCounter | None = None,
        queue_log: QueueStateLog | None = None,
    ) -> None:
        self._service = service
        # the seq ids its actor (and any restarted one) takes, and its queue-state log
        self._counter = counter if counter is not None else SeqCounter()
        self._queue_log = queue_log if queue_log is not None else training_queue_log(model_id)
        self._ctx = ctx
        self._handle = handle
        self._actor_id = actor_id
        self._ref = ref
        self._model_id = model_id
        self._info = info
        # fetched once with the client; token ids and lengths are checked against it
        self._limits = ModelLimits.from_info(info)

    def __repr__(self) -> str:
        return f"<TrainingClient {self._model_id}>"

    @property
    def model_id(self) -> str:
        """The model (and training run) id."""
        return self._model_id

    def get_info(self) -> GetInfoResponse:
        """Return the model's info, fetched once when the client was created."""
        return self._info

    def observe_queue_state(
        self, observer: Callable[[QueueState, str | None], object] | None
    ) -> None:
        """Call ``observer(state, reason)`` as the service reports the queue state of this
        model's requests (a pause for capacity or the training-client limit, then ACTIVE as
        each finishes); None stops. It runs in the runtime and must not block."""
        self._queue_log.observe(observer)

    def get_tokenizer(self) -> Tokenizer:
        """Return the model's tokenizer, loaded offline (see :mod:`tinker_actors.tokenizer`).

        Raises:
            InvalidInputError: the server reported no model name.
        """
        data = self._info.model_data
        name = data.model_name or self._info.model_name
        if not name:
            raise InvalidInputError(f"the server reported no model name for {self._model_id}")
        return get_tokenizer(name, data.tokenizer_id)

    @property
    def _flags(self) -> ClientConfigResponse:
        return self._handle.client_config

    async def submit(self, op: PreparedOp) -> APIFuture[Any]:
        """Queue a prepared operation in call order; return its future once accepted.

        Every public operation is ``submit(prepare_...(...))``. A blocking facade prepares on
        the caller's thread (so bad input raises there) and submits from the runtime's, in
        the caller's order.

        Raises:
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
            ActorExited: the client was closed.
        """
        if not isinstance(op, Op):
            raise TypeError(f"submit takes a prepared operation, got {type(op).__name__}")
        return await self._ref.call(lambda reply: Submit(op, reply))

    # -- preparing operations (pure: checks and encoding, no I/O, any thread) -------------------

    def prepare_forward(
        self, data: Sequence[Datum], loss_fn: LossFnType, loss_fn_config: LossFnConfig | None = None
    ) -> PreparedOp:
        """Check and encode a :meth:`forward` for :meth:`submit`."""
        known: KnownTokens = {}
        check_forward_data(data, loss_fn, self._limits, known)
        return fwd_op(
            self._model_id, self._flags, data, loss_fn, loss_fn_config, forward_only=True,
            known=known,
        )  # fmt: skip

    def prepare_forward_backward(
        self, data: Sequence[Datum], loss_fn: LossFnType, loss_fn_config: LossFnConfig | None = None
    ) -> PreparedOp:
        """Check and encode a :meth:`forward_backward` for :meth:`submit`."""
        known: KnownTokens = {}
        check_forward_data(data, loss_fn, self._limits, known)
        return fwd_op(
            self._model_id, self._flags, data, loss_fn, loss_fn_config, forward_only=False,
            known=known,
        )  # fmt: skip

    def prepare_forward_backward_custom(
        self, data: Sequence[Datum], loss_fn: CustomLossFn
    ) -> PreparedOp:
        """Check and encode a :meth:`forward_backward_custom` for :meth:`submit`."""
        known: KnownTokens = {}
        check_forward_data(data, "custom", self._limits, known)
        return custom_loss_op(self._model_id, self._flags, data, loss_fn, known=known)

    def prepare_optim_step(self, adam_params: AdamParams | DimuonParams) -> PreparedOp:
        """Check an :meth:`optim_step` for :meth:`submit`."""
        return optim_step_op(self._model_id, adam_params)

    def prepare_save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> PreparedOp:
        """Check a :meth:`save_state` for :meth:`submit`."""
        return save_state_op(self._model_id, name, ttl_seconds, overwrite, user_metadata)

    def prepare_load_state(
        self, path: str, weights_access_token: str | None = None, *, optimizer: bool = False
    ) -> PreparedOp:
        """Check a :meth:`load_state` (``optimizer=True``: with optimizer) for :meth:`submit`."""
        return load_op(self._model_id, path, weights_access_token, optimizer=optimizer)

    def prepare_save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> PreparedOp:
        """Check a :meth:`save_weights_for_sampler` for :meth:`submit`."""
        return save_for_sampler_op(self._model_id, name, ttl_seconds, user_metadata)

    def prepare_save_weights_external(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> PreparedOp:
        """Check a :meth:`save_weights_external` for :meth:`submit`."""
        return save_external_op(self._model_id, name, ttl_seconds, age_encryption_recipients)

    # -- operations --------------------------------------------------------------------------

    @reported
    async def forward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: LossFnConfig | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Run a forward pass (no gradients); return once accepted in order.

        Raises:
            InvalidInputError: empty data, unknown loss, or data that cannot be encoded.
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
        """
        return await self.submit(self.prepare_forward(data, loss_fn, loss_fn_config))

    @reported
    async def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: LossFnConfig | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Compute the loss and accumulate gradients; return once accepted in order.

        Raises:
            InvalidInputError: empty data, unknown loss, or data that cannot be encoded.
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
        """
        return await self.submit(self.prepare_forward_backward(data, loss_fn, loss_fn_config))

    @reported
    async def forward_backward_custom(
        self, data: Sequence[Datum], loss_fn: CustomLossFn
    ) -> APIFuture[ForwardBackwardOutput]:
        """Train on a loss computed client-side from the model's logprobs (protocol.md §9.3).

        ``loss_fn(data, logprobs_list) -> (loss, metrics)`` gets one logprobs tensor per datum
        (torch, requiring grad) and returns a scalar tensor and a dict of numbers. The call
        reserves two ids per chunk in call order: a ``forward`` (cross_entropy) now, then,
        once its logprobs are back and the loss ran in a worker thread, a ``forward_backward``
        with ``weights = -dloss/dlogprobs`` on the same chunks. Later calls of this client are
        submitted only after that second pass. The result is the second pass's output with
        ``loss:sum`` the custom loss, ``surrogate_loss:sum`` the server's, and the user's
        metrics.

        If the loss raises (or returns something other than a finite scalar), the second
        pass's ids carry the forward pass again (no gradient), and this future fails alone
        with the loss's error: later calls go on (0.38 poisons the client here). A loss may
        refuse data it cannot read before anything is sent (``check_data``; see
        :mod:`tinker_actors.custom_loss`). A future cancelled between the passes fails alone
        the same way (the fill is sent shielded). If the forward pass or the second submission
        fails, the second pass's ids are lost and the client refuses later requests with
        :class:`TrainingOrderBrokenError`.

        Raises:
            InvalidInputError: empty data or a datum without ``target_tokens``.
            TypeError: ``loss_fn`` is not callable, or an item is not a Datum.
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
        """
        return await self.submit(self.prepare_forward_backward_custom(data, loss_fn))

    @reported
    async def optim_step(
        self, adam_params: AdamParams | DimuonParams
    ) -> APIFuture[OptimStepResponse]:
        """Apply the accumulated gradients; return once accepted in order."""
        return await self.submit(self.prepare_optim_step(adam_params))

    @reported
    async def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<model>/weights/<name>``."""
        return await self.submit(
            self.prepare_save_state(name, ttl_seconds, overwrite, user_metadata)
        )

    @reported
    async def load_state(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights into this model (the optimizer state is not restored)."""
        return await self.submit(self.prepare_load_state(path, weights_access_token))

    @reported
    async def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights and optimizer state into this model."""
        return await self.submit(
            self.prepare_load_state(path, weights_access_token, optimizer=True)
        )

    @reported
    async def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        """Save sampler weights as ``tinker://<model>/sampler_weights/<name>``."""
        return await self.submit(
            self.prepare_save_weights_for_sampler(name, ttl_seconds, user_metadata)
        )

    @reported
    async def save_weights_external(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> APIFuture[SaveWeightsExternalResponse]:
        """Export downloadable weights as ``tinker://<model>/external_weights/<name>``.

        Args:
            name: the export's name.
            ttl_seconds: its lifetime (None: kept until deleted).
            age_encryption_recipients: up to 10 age or SSH public keys to encrypt the files to.

        Raises:
            InvalidInputError: an empty name, a bad ttl, or bad recipients.
        """
        return await self.submit(
            self.prepare_save_weights_external(name, ttl_seconds, age_encryption_recipients)
        )

    @reported
    async def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: RetryConfig | None = None,
        kind: Literal["snapshot", "inflight"] = "snapshot",
        record_stability_info: bool = False,
    ) -> SamplingClient:
        """Save ephemeral sampler weights and return a SamplingClient on them.

        ``name`` is ignored (as in the official client: the weights are ephemeral).
        """
        del name
        sampler = await self.submit_sampler_save(kind, retry_config, record_stability_info)
        return sampler.client(await sampler.saved.result())

    async def submit_sampler_save(
        self,
        kind: Literal["snapshot", "inflight"] = "snapshot",
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> PendingSampler:
        """Queue the ephemeral save of :meth:`save_weights_and_get_sampling_client` in order.

        The save takes its place among this client's operations now; the SamplingClient comes
        from :meth:`PendingSampler.client` once ``saved`` is done.
        """
        if kind not in ("snapshot", "inflight"):
            raise InvalidInputError(f"kind must be 'snapshot' or 'inflight', got {kind!r}")
        handle, sampling_seq = await self._ctx.reserve("sampling")
        saved: APIFuture[SaveWeightsForSamplerResponseInternal] = await self.submit(
            ephemeral_sampler_save_op(self._model_id, sampling_seq, kind)
        )
        base_model = self._info.model_data.model_name or self._info.model_name or ""
        return PendingSampler(
            saved, self._ctx, handle, base_model, retry_config, record_stability_info
        )

    async def create_sampling_client(
        self,
        model_path: str,
        retry_config: RetryConfig | None = None,
        record_stability_info: bool = False,
    ) -> SamplingClient:
        """Open a sampling session on saved sampler weights (as the ServiceClient does)."""
        return await self._service.create_sampling_client(
            model_path=model_path,
            retry_config=retry_config,
            record_stability_info=record_stability_info,
        )

    async def close(self) -> None:
        """Stop this client's actor; submitted operations still finish in the poller."""
        await self._ctx.stop_actor(self._actor_id)


async def start_training_client(
    ctx: ClientContext,
    handle: SessionHandle,
    model_id: str,
    *,
    sdk_method: str,
    service: ServiceClient,
) -> TrainingClient:
    """Fetch the model's info once, start its actor, and return the facade."""
    response = await holder_retries(
        lambda: ctx.transport.request(
            "POST", "/api/v1/get_info", json=GetInfoRequest(model_id=model_id),
            sdk_method=sdk_method,
        ),
        what="get_info",
    )  # fmt: skip
    info = response.decode(GetInfoResponse)
    # The counter outlives any one actor: a restarted actor never reuses a sent seq id.
    counter, log = SeqCounter(), training_queue_log(model_id)
    actor_id, ref = await ctx.start_actor(
        "training", lambda nursery: TrainingActor(nursery, ctx, handle, model_id, counter, log)
    )
    return TrainingClient(ctx, handle, actor_id, ref, model_id, info, service, counter, log)
