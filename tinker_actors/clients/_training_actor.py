"""The TrainingClient's actor: seq ids in mailbox order, POSTs in id order, waiting elsewhere.

The facade (:mod:`tinker_actors.clients._training`) turns each public call into an :class:`Op`
and puts it into the actor's mailbox. The actor takes one at a time: it assigns the next ids,
builds the op's bodies (so bad input fails the call before any id is taken), queues it on its
*outbox* and answers the caller with an :class:`APIFuture` at once: the first await means
"queued, ordering fixed" (workloads.md §2.2 P1), not "POSTed". A sender task POSTs the outbox
strictly in id order (holding each body's bytes of the forward_backward dispatch budget) and
then hands each op's waiting to the runtime's FuturePoller. So a caller submitting
``forward_backward`` and then ``optim_step`` is not held up by the first one's upload, and
builds its next batch while the server reads the previous one.

Once queued, an op is sent even if its caller stops waiting: its ids are taken, and a gap would
stall the model. On a polite stop (leaving ``open()``, ``close()``) the actor first sends what
is queued, within the stop's grace. The outbox holds at most :data:`OUTBOX_SIZE` ops; past
that, the first await waits for room.

A custom-loss op (``forward_backward_custom``, protocol.md §9.3) reserves twice its chunk
count: the forward ids are POSTed in turn, the backward ids only once the forward result is back
and the user's loss has run. Until then the sender's *gate* is closed: later ops wait in the
outbox, so every POST still leaves in id order, as the official client's turn-taking does.

A request the server read and *refused* at submission (400, 404 or 422: bad input it could
check) fails alone, as with the official client: the server has seen its id and consumed it,
so the actor goes on with the next one. The other ids of a chunked op are still POSTed, so
none is left unsent. A request that cannot be submitted at all (connection failures after the
retries, 401/403/409/410/413/429/5xx, a custom loss's forward pass that failed, a
cancellation mid-send) leaves the server waiting for an id that will never come; its future
fails with the submission's error, and the actor refuses every queued and later request with
:class:`TrainingOrderBrokenError` (it is *poisoned*), naming the first id that was lost,
instead of letting them hang.

The id counter and the poison live in a :class:`SeqCounter` owned by the client, not by the
actor: an actor restarted by its supervisor resumes after the last id its predecessor
reserved, and never sends an id the server has seen. Ids its predecessor reserved but never
POSTed poison the client, since the server would wait for them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, final

import trio

from tinker_actors.actors import (
    FutureState,
    QueueStateLog,
    ResultSpec,
    holder_retries,
    poll_future,
)
from tinker_actors.clients._future import APIFuture
from tinker_actors.errors import APIStatusError, TinkerError
from tinker_actors.supervisors import SHUTDOWN, Actor, ActorExited, Reply
from tinker_actors.transport import RequestOptions
from tinker_actors.types import UntypedAPIFuture

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import msgspec

    from tinker_actors.actors import SessionHandle
    from tinker_actors.clients._service import ClientContext
    from tinker_actors.supervisors import ExitReason
    from tinker_actors.transport import Response

__all__ = [
    "CONSUMED_STATUSES",
    "OUTBOX_SIZE",
    "Body",
    "Op",
    "SeqCounter",
    "Submit",
    "TrainingActor",
    "TrainingOrderBrokenError",
]

#: A training op's pause warning waits this long (protocol §6.2: 15 min).
PAUSE_WARNING_GRACE: Final = 15 * 60.0
#: Ops accepted but not yet POSTed; past this many the first await waits for room.
OUTBOX_SIZE: Final = 32
#: Answers to a submission that mean the server read and refused it: it consumed the seq_id,
#: so the request fails alone (the local server agrees: ``tinker_actors.local._refusals``).
CONSUMED_STATUSES: Final = frozenset({400, 404, 422})
#: Seconds a cancelled custom loss may spend sending the requests that fill its reserved ids.
FILL_TIMEOUT: Final = 30.0


def _consumed(exc: BaseException) -> bool:
    return isinstance(exc, APIStatusError) and exc.status_code in CONSUMED_STATUSES


class _Refused(Exception):
    """Every POST of an op reached the server, and it refused some: the op fails alone."""

    def __init__(self, cause: APIStatusError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@final
class SeqCounter:
    """A training client's next seq id and poison, kept across restarts of its actor.

    Attributes:
        next_seq: the next id to reserve (1 after the model's creation, which is 0).
        broken: why the order is broken, once it is.
        incarnations: how many actors have used this counter.
    """

    __slots__ = ("broken", "incarnations", "next_seq")

    def __init__(self, next_seq: int = 1) -> None:
        self.next_seq = next_seq
        self.broken: TrainingOrderBrokenError | None = None
        self.incarnations = 0


def training_queue_log(model_id: str) -> QueueStateLog:
    """The queue-state log of a training client: it warns once a pause lasted 15 minutes."""
    return QueueStateLog(f"TrainingClient {model_id}", grace=PAUSE_WARNING_GRACE)


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
class Body:
    """One POST of an operation (``nbytes``: its forward_backward dispatch cost, 0 for none)."""

    __slots__ = ("content", "content_type", "headers", "json", "nbytes")

    def __init__(
        self,
        *,
        json: msgspec.Struct | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        nbytes: int = 0,
    ) -> None:
        self.json = json
        self.content = content
        self.content_type = content_type
        self.headers = headers
        self.nbytes = nbytes


@final
class Op:
    """One public training call: how to build its POSTs from ids, and what it resolves to.

    Attributes:
        n_ids: ids its POSTs use now (one per body).
        follow_up: for a two-pass (custom loss) op, builds the second pass; the op then
            reserves ``2 * n_ids`` and the second half is POSTed by :meth:`TrainingActor._two_pass`.
        fill: for a two-pass op, builds requests that use the second half's ids without
            changing the model (forward passes), sent when the op is cancelled before its
            second pass, so its ids are not lost.
        label: the request type its future reports (default: ``spec.request_type``).
    """

    __slots__ = (
        "combine",
        "fill",
        "follow_up",
        "http_retries",
        "label",
        "make",
        "n_ids",
        "path",
        "sdk_method",
        "spec",
    )

    def __init__(
        self,
        *,
        path: str,
        sdk_method: str,
        spec: ResultSpec[Any],
        make: Callable[[Sequence[int]], list[Body]],
        n_ids: int = 1,
        http_retries: int | None = None,
        combine: Callable[[list[Any]], Any] | None = None,
        follow_up: Callable[[Any, Sequence[int]], Awaitable[tuple[Op, list[Body]]]] | None = None,
        label: str | None = None,
    ) -> None:
        self.path = path
        self.sdk_method = sdk_method
        self.spec = spec
        self.make = make
        self.n_ids = n_ids
        self.http_retries = http_retries
        self.combine = combine
        self.follow_up = follow_up
        self.fill: Callable[[Sequence[int]], tuple[Op, list[Body]]] | None = None
        self.label = label or spec.request_type

    @property
    def reserved(self) -> int:
        """How many seq ids the op takes at its turn."""
        return self.n_ids * 2 if self.follow_up is not None else self.n_ids


@final
class Submit:
    """Ask the actor to submit ``op`` in order and reply with its future."""

    __slots__ = ("op", "reply")

    def __init__(self, op: Op, reply: Reply[APIFuture[Any]]) -> None:
        self.op = op
        self.reply = reply


@final
class _Outgoing:
    """An op accepted in order: its bodies wait in the outbox until the sender POSTs them."""

    __slots__ = ("bodies", "error", "futures", "gate", "ids", "op", "sent", "state")

    def __init__(self, op: Op, bodies: list[Body], ids: range, state: FutureState[Any]) -> None:
        self.op = op
        self.bodies = bodies
        self.ids = ids
        self.state = state
        self.sent = trio.Event()
        self.futures: list[UntypedAPIFuture] = []
        self.error: BaseException | None = None
        # a two-pass op's gate: later ops wait for it until the second half is POSTed
        self.gate = trio.Event() if op.follow_up is not None else None

    async def submitted(self) -> list[UntypedAPIFuture]:
        """Wait until the sender is done with this op; return its futures or raise why not."""
        await self.sent.wait()
        if self.error is not None:
            raise self.error
        return self.futures


class TrainingActor(Actor[Submit]):
    """Assigns seq ids in mailbox order, queues, POSTs in order, hands futures to the poller."""

    def __init__(
        self,
        nursery: trio.Nursery,
        ctx: ClientContext,
        handle: SessionHandle,
        model_id: str,
        counter: SeqCounter | None = None,
        queue_log: QueueStateLog | None = None,
    ) -> None:
        self._nursery = nursery
        self._ctx = ctx
        self._handle = handle
        self._model_id = model_id
        # shared with the actors that replace this one after a crash (see the module doc)
        self._counter = counter if counter is not None else SeqCounter()
        self._counter.incarnations += 1
        # Closed while a two-pass op's second half is not yet POSTed.
        self._gate: trio.Event | None = None
        self._outbox_in, self._outbox = trio.open_memory_channel[_Outgoing](OUTBOX_SIZE)
        self._unsent = 0
        self._flushed: trio.Event | None = None
        # the client's (shared, like the counter, with any actor that replaces this one)
        self._queue_log = queue_log if queue_log is not None else training_queue_log(model_id)
        # request id -> seconds its submission took, reported on its first poll (§6.1)
        self._roundtrips: dict[str, float] = {}

    async def init(self) -> None:
        self._nursery.start_soon(self._sender, name=f"training {self._model_id} sender")

    async def handle(self, message: Submit) -> None:
        op, reply = message.op, message.reply
        if reply.abandoned:
            return  # the caller gave up before its turn: take no id, send nothing
        if self._counter.broken is not None:
            reply.fail(self._refusal())
            return
        ids = range(self._counter.next_seq, self._counter.next_seq + op.reserved)
        try:
            bodies = op.make(ids[: op.n_ids])
        except Exception as exc:  # bad input: nothing sent, no id consumed
            reply.fail(exc)
            return
        self._counter.next_seq += op.reserved
        state: FutureState[Any] = FutureState(op.label)
        out = _Outgoing(op, bodies, ids, state)
        self._unsent += 1
        await self._outbox_in.send(out)  # waits while OUTBOX_SIZE ops are queued
        if op.follow_up is None:
            work = functools.partial(self._wait_single, out)
        else:
            work = functools.partial(self._two_pass, out)
        await self._ctx.watch(state, work)
        reply.send(APIFuture(state))

    async def terminate(self, reason: ExitReason) -> None:
        handle = self._handle
        usable = handle.finished is None and not handle.lost
        if self._unsent and usable and not isinstance(reason, BaseException):
            # A polite stop while the session lives: send what callers were told is queued
            # (the stop's grace bounds this; the sender fails whatever is left after it).
            self._flushed = trio.Event()
            await self._flushed.wait()

    def _refusal(self) -> TrainingOrderBrokenError:
        assert self._counter.broken is not None
        return TrainingOrderBrokenError(
            self._model_id,
            self._counter.broken.seq_id,
            self._counter.broken.request_type,
            self._counter.broken.__cause__ or self._counter.broken,
        )

    async def _sender(self) -> None:
        """POST the outbox in order; whatever is left when this task ends fails, never hangs."""
        gone = ActorExited(self._model_id, SHUTDOWN)
        try:
            async for out in self._outbox:
                try:
                    await self._send_outgoing(out)
                finally:
                    if out.error is None and not out.futures:  # interrupted before or mid-POST
                        self._poison(out.ids[0], out.op.label, gone)
                        out.error = gone
                    out.sent.set()
                    self._unsent -= 1
                    if self._unsent == 0 and self._flushed is not None:
                        self._flushed.set()
        finally:
            while True:
                try:
                    left = self._outbox.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                # reserved but never POSTed: the server would wait for these ids forever
                self._poison(left.ids[0], left.op.label, gone)
                left.error = gone
                left.sent.set()

    async def _send_outgoing(self, out: _Outgoing) -> None:
        gate = self._gate
        if gate is not None:
            await gate.wait()  # a custom loss's backward ids come before ours
            if self._gate is gate:
                self._gate = None
        if self._counter.broken is not None:
            out.error = self._refusal()
            return
        try:
            futures = await self._post_all(out.op, out.bodies)
        except _Refused as refused:  # every id reached the server: this op fails alone
            out.error = refused.cause
            return
        except Exception as exc:
            self._poison(out.ids[0], out.op.label, exc)
            out.error = exc
            return
        except BaseException as exc:  # cancelled mid-submission: the actor is going away
            self._poison(out.ids[0], out.op.label, exc)
            raise
        out.futures = futures
        out.state.request_id = futures[0].request_id
        if out.gate is not None:
            self._gate = out.gate

    async def _wait_single(self, out: _Outgoing) -> object:
        futures = await out.submitted()
        return await self._wait(out.op, futures, out.state)

    def _poison(self, seq_id: int, request_type: str, cause: BaseException) -> None:
        if self._counter.broken is None:
            self._counter.broken = TrainingOrderBrokenError(
                self._model_id, seq_id, request_type, cause
            )

    async def _two_pass(self, out: _Outgoing) -> object:
        """Wait for the first pass, build and POST the second, then wait for it.

        Until the second pass is POSTed the gate stays closed; if anything fails before then
        (the first pass's submission included), its ids are lost and the client is poisoned.
        Two cases fill the ids instead and fail this op alone: a loss that raises
        (``follow_up`` returns the fill as the second pass) and a cancellation after the first
        pass was POSTed and before the second started (:meth:`_fill`, shielded).
        """
        op, state, gate = out.op, out.state, out.gate
        assert op.follow_up is not None
        assert gate is not None
        second_ids = out.ids[op.n_ids :]
        first_posted = second_started = False
        try:
            futures = await out.submitted()
            first_posted = True
            first = await self._wait(op, futures, state)
            second_op, bodies = await op.follow_up(first, second_ids)
            second_started = True
            second = await self._post_all(second_op, bodies)
        except _Refused as refused:  # the second pass reached the server: no id is lost
            raise refused.cause from None
        except trio.Cancelled as exc:
            # Cancelled between the passes (future.cancel(), or a waiter that gave up): the
            # second half's ids get requests that change nothing, so the client goes on.
            if not (first_posted and not second_started and await self._fill(op, second_ids)):
                self._poison(second_ids[0], op.label, exc)
            raise
        except BaseException as exc:
            self._poison(second_ids[0], op.label, exc)
            raise
        finally:
            gate.set()
        state.request_id = second[0].request_id
        return await self._wait(second_op, second, state)

    async def _fill(self, op: Op, ids: Sequence[int]) -> bool:
        """POST ``op.fill``'s requests for ``ids``, shielded and bounded; True once all are in.

        The server would otherwise wait for those ids forever. A runtime shutting down (its
        transport closing) makes this fail fast, and the client is poisoned as before.
        """
        if op.fill is None:
            return False
        filler, bodies = op.fill(ids)
        with trio.CancelScope(shield=True), trio.move_on_after(FILL_TIMEOUT):
            try:
                await self._post_all(filler, bodies)
            except _Refused:  # refused, but every id reached the server: none is lost
                return True
            except Exception:
                return False
            return True
        return False

    async def _post(self, op: Op, body: Body) -> UntypedAPIFuture:
        started = trio.current_time()
        future = await self._post_body(op, body)
        self._roundtrips[future.request_id] = trio.current_time() - started
        return future

    async def _post_body(self, op: Op, body: Body) -> UntypedAPIFuture:
        if body.nbytes:
            limiter = await self._ctx.rate_limiter()
            # Each chunk holds its estimated bytes of the 50 MB budget during its POST (§7.7).
            async with limiter.fwdbwd_dispatch(body.nbytes):
                response = await self._send(op, body)
        else:
            response = await self._send(op, body)
        return response.decode(UntypedAPIFuture)

    async def _send(self, op: Op, body: Body) -> Response:
        transport = self._ctx.transport
        options = RequestOptions(max_retries=op.http_retries, extra_headers=body.headers)
        return await holder_retries(
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

    async def _post_all(self, op: Op, bodies: list[Body]) -> list[UntypedAPIFuture]:
        """POST every body of ``op``; raise :class:`_Refused` if the server refused some.

        A refusal that consumed its id (:data:`CONSUMED_STATUSES`) does not stop the other
        bodies: their ids are reserved too, and each must reach the server.
        """
        futures: list[UntypedAPIFuture | None] = [None] * len(bodies)
        refusals: list[APIStatusError] = []

        async def one(index: int) -> None:
            try:
                futures[index] = await self._post(op, bodies[index])
            except APIStatusError as exc:
                if not _consumed(exc):
                    raise
                refusals.append(exc)

        if len(bodies) == 1:
            await one(0)
        elif self._handle.client_config.parallel_fwdbwd_chunks:
            # The rest concurrently, then the first: the server starts none of them before
            # the first arrives, so it sees the whole batch queued.
            async with trio.open_nursery() as nursery:
                for index in range(1, len(bodies)):
                    nursery.start_soon(one, index)
            await one(0)
        else:
            for index in range(len(bodies)):
                await one(index)
        if refusals:
            raise _Refused(refusals[0])
        return [f for f in futures if f is not None]

    async def _wait(
        self, op: Op, futures: list[UntypedAPIFuture], state: FutureState[Any]
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
                promise_roundtrip=self._roundtrips.pop(future.request_id, None),
            )
            for future in futures
        ]
        return op.combine(results) if op.combine is not None else results[0]
