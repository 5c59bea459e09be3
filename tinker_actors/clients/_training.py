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
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, Literal, final

import trio

from tinker_actors.actors import (
    FutureState,
    QueueStateLog,
    ResultSpec,
    holder_retries,
    poll_future,
)
from tinker_actors.clients._chunking import combine_outputs, plan_chunks
from tinker_actors.clients._future import APIFuture
from tinker_actors.clients._sampling import SamplingClient
from tinker_actors.errors import InvalidInputError, TinkerError
from tinker_actors.supervisors import Actor, Reply
from tinker_actors.tokenizer import get_tokenizer
from tinker_actors.transport import RequestOptions
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    encode_forward_backward_request,
)
from tinker_actors.types import (
    AdamParams,
    Datum,
    DimuonParams,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    GetInfoRequest,
    GetInfoResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    OptimStepRequest,
    OptimStepResponse,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
    UntypedAPIFuture,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import msgspec

    from tinker_actors.actors import SessionHandle
    from tinker_actors.backoff import RetryConfig
    from tinker_actors.clients._service import ClientContext
    from tinker_actors.supervisors import ActorRef
    from tinker_actors.tokenizer import Tokenizer
    from tinker_actors.types import LossFnConfig, LossFnType

__all__ = ["TrainingClient", "TrainingOrderBrokenError", "start_training_client"]

PROTOBUF: Final = "application/x-protobuf"
#: A training op's pause warning waits this long (protocol §6.2: 15 min).
PAUSE_WARNING_GRACE: Final = 15 * 60.0
_CLASS: Final = "TrainingClient"
_LOSSES: Final = frozenset(
    {
        "cross_entropy",
        "importance_sampling",
        "ppo",
        "cispo",
        "dro",
        "gspo",
        "stable_reinforce",
        "custom",
    }
)


class TrainingOrderBrokenError(TinkerError):
    """An earlier request of this TrainingClient failed to submit, so later ones cannot run.

    Attributes:
        model_id: the model.
        seq_id: the first id that could not be submitted.
        request_type: what that request was.
    """

    def __init__(self, model_id: str, seq_id: int, request_type: str, cause: BaseException):
        super().__init__(
            f"TrainingClient for {model_id} refuses this request: {request_type} (seq_id "
            f"{seq_id}) failed to submit ({type(cause).__name__}: {cause}), and the server "
            "runs a model's requests strictly in order, so nothing after it can run. Create a "
            "new training client (e.g. from your last saved state)."
        )
        self.model_id = model_id
        self.seq_id = seq_id
        self.request_type = request_type
        self.__cause__ = cause


@final
class _Body:
    """One POST of an operation."""

    __slots__ = ("content", "content_type", "headers", "json")

    def __init__(
        self,
        *,
        json: msgspec.Struct | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.json = json
        self.content = content
        self.content_type = content_type
        self.headers = headers


@final
class _Op:
    """One public training call: how to build its POSTs from ids, and what it resolves to."""

    __slots__ = ("combine", "http_retries", "make", "n_ids", "path", "sdk_method", "spec")

    def __init__(
        self,
        *,
        path: str,
        sdk_method: str,
        spec: ResultSpec[Any],
        make: Callable[[Sequence[int]], list[_Body]],
        n_ids: int = 1,
        http_retries: int | None = None,
        combine: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.path = path
        self.sdk_method = sdk_method
        self.spec = spec
        self.make = make
        self.n_ids = n_ids
        self.http_retries = http_retries
        self.combine = combine


@final
class _Submit:
    """Ask the actor to submit ``op`` in order and reply with its future."""

    __slots__ = ("op", "reply")

    def __init__(self, op: _Op, reply: Reply[APIFuture[Any]]) -> None:
        self.op = op
        self.reply = reply


class TrainingActor(Actor[_Submit]):
    """Assigns seq ids in mailbox order, POSTs, and hands the futures to the poller."""

    def __init__(self, ctx: ClientContext, handle: SessionHandle, model_id: str) -> None:
        self._ctx = ctx
        self._handle = handle
        self._model_id = model_id
        self._next_seq = 1
        self._broken: TrainingOrderBrokenError | None = None
        self._queue_log = QueueStateLog(f"TrainingClient {model_id}", grace=PAUSE_WARNING_GRACE)

    async def handle(self, message: _Submit) -> None:
        op, reply = message.op, message.reply
        if reply.abandoned:
            return  # the caller gave up before its turn: take no id, send nothing
        if self._broken is not None:
            reply.fail(
                TrainingOrderBrokenError(
                    self._model_id,
                    self._broken.seq_id,
                    self._broken.request_type,
                    self._broken.__cause__ or self._broken,
                )
            )
            return
        ids = range(self._next_seq, self._next_seq + op.n_ids)
        try:
            bodies = op.make(ids)
        except Exception as exc:  # bad input: nothing sent, no id consumed
            reply.fail(exc)
            return
        self._next_seq += op.n_ids
        try:
            futures = await self._post_all(op, bodies)
        except Exception as exc:
            self._broken = TrainingOrderBrokenError(
                self._model_id, ids[0], op.spec.request_type, exc
            )
            reply.fail(exc)
            return
        except BaseException as exc:  # cancelled mid-submission: the actor is going away
            self._broken = TrainingOrderBrokenError(
                self._model_id, ids[0], op.spec.request_type, exc
            )
            raise
        state: FutureState[Any] = FutureState(op.spec.request_type, futures[0].request_id)
        await self._ctx.watch(state, functools.partial(self._wait, op, futures, state))
        reply.send(APIFuture(state))

    async def _post(self, op: _Op, body: _Body) -> UntypedAPIFuture:
        transport = self._ctx.transport
        options = RequestOptions(max_retries=op.http_retries, extra_headers=body.headers)
        response = await holder_retries(
            lambda: transport.request(
                "POST",
                op.path,
                json=body.json,
                content=body.content,
                content_type=body.content_type,
                options=options,
                sdk_method=op.sdk_method,
            ),
            what=op.spec.request_type,
        )
        return response.decode(UntypedAPIFuture)

    async def _post_all(self, op: _Op, bodies: list[_Body]) -> list[UntypedAPIFuture]:
        if len(bodies) == 1:
            return [await self._post(op, bodies[0])]
        futures: list[UntypedAPIFuture | None] = [None] * len(bodies)

        async def one(index: int) -> None:
            futures[index] = await self._post(op, bodies[index])

        if self._handle.client_config.parallel_fwdbwd_chunks:
            # The rest concurrently, then the first: the server starts none of them before
            # the first arrives, so it sees the whole batch queued.
            async with trio.open_nursery() as nursery:
                for index in range(1, len(bodies)):
                    nursery.start_soon(one, index)
            await one(0)
        else:
            for index in range(len(bodies)):
                await one(index)
        return [f for f in futures if f is not None]

    async def _wait(
        self, op: _Op, futures: list[UntypedAPIFuture], state: FutureState[Any]
    ) -> object:
        results = [
            await poll_future(
                self._ctx.transport,
                future.request_id,
                op.spec,
                budget=self._ctx.budget,
                state=state,
                queue_log=self._queue_log,
                sdk_method=op.sdk_method,
            )
            for future in futures
        ]
        return op.combine(results) if op.combine is not None else results[0]


def _check_loss(loss_fn: object, loss_fn_config: object) -> None:
    if loss_fn not in _LOSSES:
        raise InvalidInputError(
            f"loss_fn must be one of {', '.join(sorted(_LOSSES))}, got {loss_fn!r}"
        )
    if loss_fn_config is not None and not isinstance(loss_fn_config, dict):
        raise InvalidInputError(f"loss_fn_config must be a dict or None, got {loss_fn_config!r}")


def _check_ttl(ttl_seconds: object) -> None:
    if ttl_seconds is not None and (
        isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0
    ):
        raise InvalidInputError(f"ttl_seconds must be a positive int or None, got {ttl_seconds!r}")


def _public_sampler_response(
    internal: SaveWeightsForSamplerResponseInternal,
) -> SaveWeightsForSamplerResponse:
    if internal.path is None:
        raise InvalidInputError("the server returned no path for a named sampler save")
    return SaveWeightsForSamplerResponse(path=internal.path)


@final
class TrainingClient:
    """Trains one model; every operation is submitted in call order (see the module doc)."""

    __slots__ = ("_actor_id", "_ctx", "_handle", "_info", "_model_id", "_ref")

    def __init__(
        self,
        ctx: ClientContext,
        handle: SessionHandle,
        actor_id: str,
        ref: ActorRef[_Submit],
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

    async def _submit(self, op: _Op) -> APIFuture[Any]:
        return await self._ref.call(lambda reply: _Submit(op, reply))

    def _fwd_op(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: LossFnConfig | None,
        *,
        forward_only: bool,
    ) -> _Op:
        _check_loss(loss_fn, loss_fn_config)
        flags = self._handle.client_config
        chunks = plan_chunks(
            data, max_len=flags.fwdbwd_max_chunk_len, max_bytes=flags.fwdbwd_max_chunk_bytes_count
        )
        compress = flags.proto_compress_fwdbwd
        headers = {"Content-Encoding": "zstd"} if compress else None
        model_id = self._model_id

        def make(ids: Sequence[int]) -> list[_Body]:
            return [
                _Body(
                    content=encode_forward_backward_request(
                        ForwardBackwardRequest(
                            forward_backward_input=ForwardBackwardInput(
                                data=chunk.data, loss_fn=loss_fn, loss_fn_config=loss_fn_config
                            ),
                            model_id=model_id,
                            seq_id=seq_id,
                            forward_only=forward_only,
                        ),
                        compress=compress,
                    ),
                    content_type=PROTOBUF,
                    headers=headers,
                )
                for seq_id, chunk in zip(ids, chunks, strict=True)
            ]

        kind = "Forward" if forward_only else "ForwardBackward"
        return _Op(
            path="/api/v1/forward_backward",
            sdk_method=f"{_CLASS}.{'forward' if forward_only else 'forward_backward'}",
            spec=ResultSpec(kind, decode_proto=decode_forward_backward_output),
            make=make,
            n_ids=len(chunks),
            combine=combine_outputs if len(chunks) > 1 else None,
        )

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
        return await self._submit(self._fwd_op(data, loss_fn, loss_fn_config, forward_only=True))

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
        return await self._submit(self._fwd_op(data, loss_fn, loss_fn_config, forward_only=False))

    async def optim_step(
        self, adam_params: AdamParams | DimuonParams
    ) -> APIFuture[OptimStepResponse]:
        """Apply the accumulated gradients; return once accepted in order."""
        if not isinstance(adam_params, AdamParams | DimuonParams):
            raise InvalidInputError(
                f"optim_step takes AdamParams (or DimuonParams), got {type(adam_params).__name__}"
            )
        model_id = self._model_id
        return await self._submit(
            _Op(
                path="/api/v1/optim_step",
                sdk_method=f"{_CLASS}.optim_step",
                spec=ResultSpec("OptimStep", OptimStepResponse),
                make=lambda ids: [
                    _Body(json=OptimStepRequest.for_params(model_id, adam_params, seq_id=ids[0]))
                ],
            )
        )

    async def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<model>/weights/<name>``."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
        _check_ttl(ttl_seconds)
        model_id = self._model_id
        return await self._submit(
            _Op(
                path="/api/v1/save_weights",
                sdk_method=f"{_CLASS}.save_state",
                spec=ResultSpec("SaveWeights", SaveWeightsResponse),
                http_retries=0,
                make=lambda ids: [
                    _Body(
                        json=SaveWeightsRequest(
                            model_id=model_id,
                            path=name,
                            seq_id=ids[0],
                            ttl_seconds=ttl_seconds,
                            overwrite=overwrite,
                            user_metadata=user_metadata,
                        )
                    )
                ],
            )
        )

    async def _load(
        self, path: str, weights_access_token: str | None, *, optimizer: bool
    ) -> APIFuture[LoadWeightsResponse]:
        model_id = self._model_id
        request = LoadWeightsRequest(  # validates the path now
            model_id=model_id,
            seq_id=0,
            path=path,
            optimizer=optimizer,
            weights_access_token=weights_access_token,
        )
        return await self._submit(
            _Op(
                path="/api/v1/load_weights",
                sdk_method=f"{_CLASS}.load_state" + ("_with_optimizer" if optimizer else ""),
                spec=ResultSpec("LoadWeights", LoadWeightsResponse),
                make=lambda ids: [
                    _Body(
                        json=LoadWeightsRequest(
                            model_id=model_id,
                            seq_id=ids[0],
                            path=request.path,
                            optimizer=optimizer,
                            weights_access_token=weights_access_token,
                        )
                    )
                ],
            )
        )

    async def load_state(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights into this model (the optimizer state is not restored)."""
        return await self._load(path, weights_access_token, optimizer=False)

    async def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights and optimizer state into this model."""
        return await self._load(path, weights_access_token, optimizer=True)

    async def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        """Save sampler weights as ``tinker://<model>/sampler_weights/<name>``."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
        _check_ttl(ttl_seconds)
        model_id = self._model_id
        return await self._submit(
            _Op(
                path="/api/v1/save_weights_for_sampler",
                sdk_method=f"{_CLASS}.save_weights_for_sampler",
                spec=ResultSpec("SaveWeightsForSampler", SaveWeightsForSamplerResponseInternal),
                http_retries=0,
                combine=lambda results: _public_sampler_response(results[0]),
                make=lambda ids: [
                    _Body(
                        json=SaveWeightsForSamplerRequest(
                            model_id=model_id,
                            path=name,
                            seq_id=ids[0],
                            ttl_seconds=ttl_seconds,
                            user_metadata=user_metadata,
                        )
                    )
                ],
            )
        )

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
            _Op(
                path="/api/v1/save_weights_for_sampler",
                sdk_method=f"{_CLASS}.save_weights_and_get_sampling_client",
                spec=ResultSpec("SaveWeightsForSampler", SaveWeightsForSamplerResponseInternal),
                http_retries=0,
                make=lambda ids: [
                    _Body(
                        json=SaveWeightsForSamplerRequest(
                            model_id=model_id,
                            sampling_session_seq_id=sampling_seq,
                            seq_id=ids[0],
                            kind=kind,
                        )
                    )
                ],
            )
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
    actor_id, ref = await ctx.start_actor("training", lambda: TrainingActor(ctx, handle, model_id))
    return TrainingClient(ctx, handle, actor_id, ref, model_id, info)
