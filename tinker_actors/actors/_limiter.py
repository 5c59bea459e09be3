"""RateLimiter: admission control shared by every client of one (base_url, API key).

The service pushes back on a tenant, not on a client object, so the state that reacts to that
push-back is kept once per ``(base_url, sha256(api_key))`` and shared by all clients of the
runtime (protocol.md §7.4, §7.7):

* a shared **backoff deadline**: a 429 to a backpressured ``/asample`` sets it to now + 1 s
  (prompt estimate <= 128 KiB) or + 5 s (larger); every sampler waits for it before resubmitting;
* **dispatch concurrency**: at most 400 sample submissions in flight, and at most 10 while
  *throttled* (from the start of a backoff until 10 s after its end);
* **byte budgets with overdraft** (:class:`ByteBudget`, in :mod:`._byte_budget`): a submission
  is admitted whenever the budget is non-negative, even if its own size takes it below zero, so
  one huge request can never starve; while throttled a sample is charged 20x its estimated
  bytes (10 MiB budget by default);
* the **forward_backward dispatch budget**: each chunk POST holds its estimated bytes of a
  50 MB budget (same overdraft rule).

Limits are held only while *submitting*, never while waiting for a result::

    limiter = await rate_limiter_for(runtime.registry, runtime.limiter_key)
    async with limiter.sample_dispatch(nbytes):
        while True:
            await limiter.wait_backoff()
            response = await transport.request("POST", "/api/v1/asample", ...)
            if response.status != 429:
                break
            limiter.report_backpressure(nbytes)

Why an actor owns it, and callers use it directly. :class:`RateLimiterActor` is a registry
entry that owns one :class:`RateLimiter`: it gives the state a lifetime (it lives as long as the
limiter registry, which the root's rest_for_one order keeps alive across restarts of pollers and
clients, so backoff state is never forgotten), a name in the runtime dump, and a clean end
(when it exits, every waiter and every later caller gets :class:`ActorExited`). The dispatch
path itself does not go through the mailbox: trio runs all tasks on one thread and every state
change here is a synchronous method with no checkpoint inside, so each one is atomic, which is
what the Elixir port's "single writer, many readers" bought with a GenServer plus ETS. Waiting
happens in the caller's own task, so a cancelled caller leaves the queue (or gives its bytes
back) in its own ``finally``; a mailbox round trip per sample would also cap throughput at
one actor's turn rate for thousands of concurrent samples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable
from typing import TYPE_CHECKING, Final, TypeVar, final

import msgspec
import trio

from tinker_actors.actors._byte_budget import ByteBudget, ByteBudgetStatistics, check_nbytes
from tinker_actors.backoff import backpressure_delay
from tinker_actors.supervisors import Actor, ActorExited, Reply, actor_spec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tinker_actors.supervisors import ActorRef, ChildSpec, ExitReason, Registry

__all__ = [
    "DEFAULT_FWDBWD_DISPATCH_BYTES",
    "DEFAULT_SAMPLE_DISPATCH_BYTES",
    "SAMPLE_DISPATCH_SLOTS",
    "THROTTLED_BYTES_MULTIPLIER",
    "THROTTLED_DISPATCH_SLOTS",
    "THROTTLE_WINDOW",
    "ByteBudget",
    "ByteBudgetStatistics",
    "GetRateLimiter",
    "RateLimiter",
    "RateLimiterActor",
    "RateLimiterStatistics",
    "rate_limiter_for",
    "rate_limiter_spec",
]

K = TypeVar("K", bound=Hashable)

#: ``sample_dispatch_bytes_semaphore_size``'s default (10 MiB).
DEFAULT_SAMPLE_DISPATCH_BYTES: Final = 10 * 1024 * 1024
#: ``fwdbwd_dispatch_bytes_semaphore_size``'s default (50 MB).
DEFAULT_FWDBWD_DISPATCH_BYTES: Final = 50_000_000
#: Sample submissions in flight at once.
SAMPLE_DISPATCH_SLOTS: Final = 400
#: Sample submissions in flight at once while throttled.
THROTTLED_DISPATCH_SLOTS: Final = 10
#: A sample submitted while throttled is charged this many times its estimated bytes.
THROTTLED_BYTES_MULTIPLIER: Final = 20
#: Throttling lasts this many seconds past the end of a backoff.
THROTTLE_WINDOW: Final = 10.0


class RateLimiterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a RateLimiter.

    Attributes:
        backoff_remaining: seconds until the shared backoff deadline passes (0 when none).
        throttled: whether samples are throttled now (10 slots, 20x bytes).
        backpressure_reports: 429s reported so far.
        sample_dispatching: sample submissions holding a dispatch slot.
        sample_slots_waiting: sample submissions waiting for a dispatch slot.
        throttled_dispatching: sample submissions holding a throttled slot.
        throttled_slots_waiting: sample submissions waiting for a throttled slot.
        sample_bytes: the sample byte budget.
        fwdbwd_bytes: the forward_backward byte budget.
        closed: whether the owning actor has exited.
    """

    backoff_remaining: float
    throttled: bool
    backpressure_reports: int
    sample_dispatching: int
    sample_slots_waiting: int
    throttled_dispatching: int
    throttled_slots_waiting: int
    sample_bytes: ByteBudgetStatistics
    fwdbwd_bytes: ByteBudgetStatistics
    closed: bool


@final
class RateLimiter:
    """Per-(base_url, API key) admission control; get it from :func:`rate_limiter_for`.

    Time is ``trio.current_time()``, so tests drive it with trio's ``MockClock``.
    """

    __slots__ = (
        "_backoff_until",
        "_closed",
        "_fwdbwd_bytes",
        "_reports",
        "_sample_bytes",
        "_sample_slots",
        "_throttled_slots",
    )

    def __init__(
        self,
        *,
        sample_dispatch_bytes: int = DEFAULT_SAMPLE_DISPATCH_BYTES,
        fwdbwd_dispatch_bytes: int = DEFAULT_FWDBWD_DISPATCH_BYTES,
    ) -> None:
        self._sample_bytes = ByteBudget(sample_dispatch_bytes, name="sample_dispatch_bytes")
        self._fwdbwd_bytes = ByteBudget(fwdbwd_dispatch_bytes, name="fwdbwd_dispatch_bytes")
        self._sample_slots = trio.Semaphore(SAMPLE_DISPATCH_SLOTS)
        self._throttled_slots = trio.Semaphore(THROTTLED_DISPATCH_SLOTS)
        self._backoff_until: float | None = None
        self._reports = 0
        self._closed: ActorExited | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("throttled" if self.throttled else "open")
        return f"<RateLimiter {state}>"

    def configure(
        self,
        *,
        sample_dispatch_bytes: int | None = None,
        fwdbwd_dispatch_bytes: int | None = None,
    ) -> None:
        """Apply the server's budget sizes (``/api/v1/client/config`` flags).

        Raises:
            InvalidInputError: a size is not a positive int.
        """
        if sample_dispatch_bytes is not None:
            self._sample_bytes.resize(sample_dispatch_bytes)
        if fwdbwd_dispatch_bytes is not None:
            self._fwdbwd_bytes.resize(fwdbwd_dispatch_bytes)

    # -- backoff ---------------------------------------------------------------------------------

    @property
    def backoff_until(self) -> float | None:
        """The shared backoff deadline (``trio.current_time()`` scale), or None if never set."""
        return self._backoff_until

    @property
    def closed(self) -> bool:
        """Whether the owning actor has exited (every later caller gets its ActorExited)."""
        return self._closed is not None

    @property
    def in_backoff(self) -> bool:
        """Whether the shared backoff deadline lies in the future."""
        until = self._backoff_until
        return until is not None and trio.current_time() < until

    @property
    def throttled(self) -> bool:
        """Whether a backoff began and has not been over for :data:`THROTTLE_WINDOW` seconds."""
        until = self._backoff_until
        return until is not None and trio.current_time() < until + THROTTLE_WINDOW

    def report_backpressure(self, nbytes: int) -> float:
        """Record a 429 to a submission of ``nbytes`` and return the new backoff deadline.

        The deadline becomes now + 1 s (``nbytes`` <= 128 KiB) or + 5 s, but never moves
        earlier: a small prompt's 429 does not cut short a backoff set for a large one.
        """
        nbytes = check_nbytes(nbytes)
        self._reports += 1
        deadline = trio.current_time() + backpressure_delay(nbytes)
        if self._backoff_until is None or deadline > self._backoff_until:
            self._backoff_until = deadline
        return self._backoff_until

    async def wait_backoff(self) -> None:
        """Return once the shared backoff deadline has passed (at once when there is none).

        Another caller may push the deadline further while we sleep; we then sleep on.

        Raises:
            ActorExited: the owning actor has exited.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed is not None:
                raise self._closed
            until = self._backoff_until
            if until is None or trio.current_time() >= until:
                break
            await trio.sleep_until(until)
        await trio.lowlevel.cancel_shielded_checkpoint()

    # -- dispatch --------------------------------------------------------------------------------

    def sample_dispatch(self, nbytes: int) -> SampleDispatch:
        """Hold a sample dispatch slot and ``nbytes`` (20x while throttled) of the sample budget.

        Acquired in order: one of 400 slots; while throttled, also one of 10 throttled slots;
        then the bytes. Everything taken is given back when the block exits, however it exits.
        Entering waits only for what is not free; when everything is, it takes it without a
        checkpoint (the request sent inside the block is one).

        Raises:
            ActorExited: the owning actor has exited.
            InvalidInputError: ``nbytes`` is negative or not an int.
        """
        return SampleDispatch(self, check_nbytes(nbytes))

    @contextlib.asynccontextmanager
    async def fwdbwd_dispatch(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` of the forward_backward dispatch budget while the block runs.

        Raises:
            ActorExited: the owning actor has exited.
            InvalidInputError: ``nbytes`` is negative or not an int.
        """
        nbytes = check_nbytes(nbytes)
        self._check_open()
        async with self._fwdbwd_bytes.hold(nbytes):
            yield

    # -- lifetime and introspection --------------------------------------------------------------

    def close(self, error: ActorExited) -> None:
        """Fail every waiter and every later caller with ``error`` (the owner has exited)."""
        if self._closed is not None:
            return
        self._closed = error
        self._sample_bytes.close(error)
        self._fwdbwd_bytes.close(error)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    def statistics(self) -> RateLimiterStatistics:
        """Return the backoff state, slots in use and both byte budgets."""
        until = self._backoff_until
        remaining = 0.0 if until is None else max(0.0, until - trio.current_time())
        slots = self._sample_slots.statistics()
        throttled_slots = self._throttled_slots.statistics()
        return RateLimiterStatistics(
            backoff_remaining=remaining,
            throttled=self.throttled,
            backpressure_reports=self._reports,
            sample_dispatching=SAMPLE_DISPATCH_SLOTS - self._sample_slots.value,
            sample_slots_waiting=slots.tasks_waiting,
            throttled_dispatching=THROTTLED_DISPATCH_SLOTS - self._throttled_slots.value,
            throttled_slots_waiting=throttled_slots.tasks_waiting,
            sample_bytes=self._sample_bytes.statistics(),
            fwdbwd_bytes=self._fwdbwd_bytes.statistics(),
            closed=self._closed is not None,
        )


@final
class SampleDispatch:
    """What :meth:`RateLimiter.sample_dispatch` holds: a slot, maybe a throttled slot, bytes.

    A class rather than a generator-based context manager: one is entered per sample, and the
    generator, its exit stack and their frames were most of the objects a waiting sample kept
    alive for the garbage collector to traverse.
    """

    __slots__ = ("_cost", "_limiter", "_nbytes", "_throttled")

    def __init__(self, limiter: RateLimiter, nbytes: int) -> None:
        self._limiter = limiter
        self._nbytes = nbytes
        self._throttled = False
        self._cost = 0

    async def __aenter__(self) -> None:
        limiter = self._limiter
        limiter._check_open()
        await _take(limiter._sample_slots)
        try:
            limiter._check_open()
            if limiter.throttled:
                await _take(limiter._throttled_slots)
                self._throttled = True
                limiter._check_open()
            cost = self._nbytes * THROTTLED_BYTES_MULTIPLIER if limiter.throttled else self._nbytes
            budget = limiter._sample_bytes
            if not budget.try_acquire(cost):
                await budget.acquire(cost)
            self._cost = cost
        except BaseException:
            self._give_slots_back()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._limiter._sample_bytes.release(self._cost)
        self._give_slots_back()

    def _give_slots_back(self) -> None:
        if self._throttled:
            self._throttled = False
            self._limiter._throttled_slots.release()
        self._limiter._sample_slots.release()


async def _take(slots: trio.Semaphore) -> None:
    """One of ``slots``: at once if one is free (no checkpoint), else in turn."""
    try:
        slots.acquire_nowait()
    except trio.WouldBlock:
        await slots.acquire()


class GetRateLimiter(msgspec.Struct, frozen=True):
    """Ask a :class:`RateLimiterActor` for the limiter it owns."""

    reply: Reply[RateLimiter]


class RateLimiterActor(Actor[GetRateLimiter]):
    """Owns one :class:`RateLimiter` for as long as it runs; closes it when it exits."""

    mailbox_size = 64

    def __init__(
        self,
        *,
        sample_dispatch_bytes: int = DEFAULT_SAMPLE_DISPATCH_BYTES,
        fwdbwd_dispatch_bytes: int = DEFAULT_FWDBWD_DISPATCH_BYTES,
    ) -> None:
        self.limiter = RateLimiter(
            sample_dispatch_bytes=sample_dispatch_bytes,
            fwdbwd_dispatch_bytes=fwdbwd_dispatch_bytes,
        )

    async def handle(self, message: GetRateLimiter) -> None:
        """Answer with the owned limiter."""
        message.reply.send(self.limiter)

    async def terminate(self, reason: ExitReason) -> None:
        """Close the limiter so that nobody waits on a limiter no one owns."""
        self.limiter.close(ActorExited(self.ref.name, reason))


def rate_limiter_spec(
    id: str = "rate-limiter",
    *,
    sample_dispatch_bytes: int = DEFAULT_SAMPLE_DISPATCH_BYTES,
    fwdbwd_dispatch_bytes: int = DEFAULT_FWDBWD_DISPATCH_BYTES,
) -> ChildSpec[ActorRef[GetRateLimiter]]:
    """Return a spec that runs a :class:`RateLimiterActor` outside a registry (PERMANENT)."""
    return actor_spec(
        id,
        lambda: RateLimiterActor(
            sample_dispatch_bytes=sample_dispatch_bytes,
            fwdbwd_dispatch_bytes=fwdbwd_dispatch_bytes,
        ),
    )


async def rate_limiter_for(
    registry: Registry[K],
    key: K,
    *,
    sample_dispatch_bytes: int | None = None,
    fwdbwd_dispatch_bytes: int | None = None,
) -> RateLimiter:
    """Return the limiter for ``key``, starting its actor under ``registry`` on first use.

    Pass the runtime's ``registry`` and ``limiter_key`` (``(base_url, sha256(api_key))``);
    every caller with the same key shares one limiter. Budget sizes, when given, are applied
    (the server's flags are the same for every caller of one key).

    Raises:
        ActorExited: the registry is not running.
        InvalidInputError: a budget size is not a positive int.
    """
    ref = await registry.get(key, RateLimiterActor)
    try:
        limiter = await ref.call(GetRateLimiter)
    except ActorExited:
        if ref.exit_reason is None:
            raise
        ref = await registry.get(key, RateLimiterActor)  # raced with its exit: start anew once
        limiter = await ref.call(GetRateLimiter)
    limiter.configure(
        sample_dispatch_bytes=sample_dispatch_bytes, fwdbwd_dispatch_bytes=fwdbwd_dispatch_bytes
    )
    return limiter
