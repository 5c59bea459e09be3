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

If a submission fails after its retries (or is interrupted) the server may be left waiting for
an id that will never come, and every later request would wait behind it. The actor therefore
refuses that request and every queued or later one with :class:`TrainingOrderBrokenError`,
naming the failed request, instead of letting them hang or run out of order.

The requests each call builds (ids to bodies, chunking, the custom loss's two passes) are in
``_training_ops``; this module is the facade that checks, submits and returns futures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, final

from tinker_actors.actors import holder_retries
from tinker_actors.clients._reporting import reported
from tinker_actors.clients._sampling import SamplingClient
from tinker_actors.clients._training_actor import (
    Op,
    Submit,
    TrainingActor,
    TrainingOrderBrokenError,
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
from tinker_actors.errors import InvalidInputError
from tinker_actors.tokenizer import get_tokenizer
from tinker_actors.types import GetInfoRequest, GetInfoResponse

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.actors import SessionHandle
    from tinker_actors.backoff import RetryConfig
    from tinker_actors.clients._future import APIFuture
    from tinker_actors.clients._service import ClientContext
    from tinker_actors.custom_loss import CustomLossFn
    from tinker_actors.supervisors import ActorRef
    from tinker_actors.tokenizer import Tokenizer
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
        SaveWeightsExternalResponse,
        SaveWeightsForSamplerResponse,
        SaveWeightsForSamplerResponseInternal,
        SaveWeightsResponse,
    )

__all__ = ["TrainingClient", "TrainingOrderBrokenError", "start_training_client"]


@final
class TrainingClient:
    """Trains one model; every operation is submitted in call order (see the module doc)."""

    __slots__ = ("_actor_id", "_ctx", "_handle", "_info", "_model_id", "_ref")

    def __init__(
        self,
        ctx: ClientContext,
        handle: SessionHandle,
        actor_id: str,
        ref: ActorRef[Submit],
        model_id: str,
        info: GetInfoResponse,
    ) -> None:
        self._ctx = ctx
        self._handle = handle
        self._actor_id = actor_id
        self._ref = ref
        self._model_id = model_id
        self._info = info

    def __repr__(self) -> str:
        return f"<TrainingClient {self._model_id}>"

    @property
    def model_id(self) -> str:
        """The model (and training run) id."""
        return self._model_id

    def get_info(self) -> GetInfoResponse:
        """Return the model's info, fetched once when the client was created."""
        return self._info

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

    async def _submit(self, op: Op) -> APIFuture[Any]:
        return await self._ref.call(lambda reply: Submit(op, reply))

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
        return await self._submit(
            fwd_op(self._model_id, self._flags, data, loss_fn, loss_fn_config, forward_only=True)
        )

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
        return await self._submit(
            fwd_op(self._model_id, self._flags, data, loss_fn, loss_fn_config, forward_only=False)
        )

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

        If the forward pass, the loss or the second submission fails (or the future is
        cancelled) in between, the second pass's ids are lost and the client refuses later
        requests with :class:`TrainingOrderBrokenError`.

        Raises:
            InvalidInputError: empty data or a datum without ``target_tokens``.
            TypeError: ``loss_fn`` is not callable, or an item is not a Datum.
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
        """
        return await self._submit(custom_loss_op(self._model_id, self._flags, data, loss_fn))

    @reported
    async def optim_step(
        self, adam_params: AdamParams | DimuonParams
    ) -> APIFuture[OptimStepResponse]:
        """Apply the accumulated gradients; return once accepted in order."""
        return await self._submit(optim_step_op(self._model_id, adam_params))

    @reported
    async def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<model>/weights/<name>``."""
        return await self._submit(
            save_state_op(self._model_id, name, ttl_seconds, overwrite, user_metadata)
        )

    async def _load(
        self, path: str, weights_access_token: str | None, *, optimizer: bool
    ) -> APIFuture[LoadWeightsResponse]:
        return await self._submit(
            load_op(self._model_id, path, weights_access_token, optimizer=optimizer)
        )

    @reported
    async def load_state(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights into this model (the optimizer state is not restored)."""
        return await self._load(path, weights_access_token, optimizer=False)

    @reported
    async def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights and optimizer state into this model."""
        return await self._load(path, weights_access_token, optimizer=True)

    @reported
    async def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        """Save sampler weights as ``tinker://<model>/sampler_weights/<name>``."""
        return await self._submit(
            save_for_sampler_op(self._model_id, name, ttl_seconds, user_metadata)
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
        return await self._submit(
            save_external_op(self._model_id, name, ttl_seconds, age_encryption_recipients)
        )

    @reported
    async def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: RetryConfig | None = None,
        kind: Literal["snapshot", "inflight"] = "snapshot",
    ) -> SamplingClient:
        """Save ephemeral sampler weights and return a SamplingClient on them.

        ``name`` is ignored (as in the official client: the weights are ephemeral).
        """
        del name
        model_id = self._model_id
        handle, sampling_seq = await self._ctx.reserve("sampling")
        future: APIFuture[SaveWeightsForSamplerResponseInternal] = await self._submit(
            ephemeral_sampler_save_op(model_id, sampling_seq, kind)
        )
        saved = await future.result()
        if saved.sampling_session_id is None:
            raise InvalidInputError(
                "the server answered an ephemeral sampler save without a sampling_session_id"
            )
        base_model = self._info.model_data.model_name or self._info.model_name or ""
        return SamplingClient(
            self._ctx, handle, saved.sampling_session_id, base_model, retry_config=retry_config
        )

    async def close(self) -> None:
        """Stop this client's actor; submitted operations still finish in the poller."""
        await self._ctx.stop_actor(self._actor_id)


async def start_training_client(
    ctx: ClientContext, handle: SessionHandle, model_id: str, *, sdk_method: str
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
    actor_id, ref = await ctx.start_actor(
        "training", lambda nursery: TrainingActor(nursery, ctx, handle, model_id)
    )
    return TrainingClient(ctx, handle, actor_id, ref, model_id, info)
