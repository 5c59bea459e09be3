"""A Host: one ``tinker_actors.open()`` block kept alive on the process runtime for a client.

Each compat ServiceClient (and each stand-alone RestClient / AdminClient, and the workers'
sampler host) owns one Host: the same actor tree, transport and session that
``async with tinker_actors.open()`` gives a trio program. The host runs its block as a task of
the :class:`~tinker_actors.compat._process.ProcessRuntime` until it is closed, and runs the
compat calls' tasks in a nursery of its own inside that block.

Work reaches the host in two ways, both returning a compat
:class:`~tinker_actors.compat._future.APIFuture` at once:

* :meth:`Host.spawn`: an independent task (sampling, REST calls, client creation);
* :meth:`Lane.push`: one client's operations, submitted one at a time in the order of the
  calls (a training client: the server needs its ``seq_id`` order). Only the submission is
  serialised; the waits for results run in parallel.

Closing the host (:meth:`Host.close_async`) lets queued lane operations go out (within a third
of the shutdown grace), then leaves the ``open()`` block: queued training requests are sent,
the session finishes with the chosen status, and every future still pending fails with
:class:`~tinker_actors.compat._process.RuntimeClosedError` instead of hanging.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from tinker_actors._open import open as open_runtime
from tinker_actors.compat._future import APIFuture
from tinker_actors.compat._process import (
    RuntimeClosedError,
    acquire_runtime,
    fail,
    succeed,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors._runtime import Runtime
    from tinker_actors.actors import FinishStatus
    from tinker_actors.clients import APIFuture as NativeFuture
    from tinker_actors.compat._process import ProcessRuntime
    from tinker_actors.config import Config

__all__ = ["Host", "Lane", "Submission"]

T = TypeVar("T")

#: What a lane or spawn submission returns once the operation is accepted: the native future
#: and how to turn its result into the compat value (None: as it is).
Submission = tuple["NativeFuture[Any]", "Callable[[Any], Any] | None"]

_START_TIMEOUT = 60.0


class Host:
    """One ``open()`` block on the process runtime; see the module doc."""

    def __init__(
        self,
        config: Config,
        *,
        user_metadata: dict[str, Any] | None = None,
        display_name: str | None = None,
    ) -> None:
        self.config = config
        self._user_metadata = user_metadata
        self._display_name = display_name
        self._lock = threading.Lock()
        self._closing = False
        self._finish: tuple[FinishStatus, str | None] | None = None
        self._closed: Future[None] = Future()
        self._pending: set[Future[Any]] = set()
        self._runtime: Runtime | None = None
        self._nursery: trio.Nursery | None = None
        self._exit: trio.Event | None = None
        self._lanes: list[Lane] = []
        self.process: ProcessRuntime = acquire_runtime()
        started: Future[None] = Future()
        try:
            self.process.start_soon(self._serve, started)
        except BaseException:
            self.process.release()
            raise
        started.result(_START_TIMEOUT)

    def __repr__(self) -> str:
        state = "closed" if self._closed.done() else "closing" if self._closing else "open"
        return f"<Host {self.config.base_url} {state}>"

    @property
    def runtime(self) -> Runtime:
        """The trio Runtime of this host's ``open()`` block.

        Raises:
            RuntimeClosedError: the host was closed.
        """
        self.process.check_process()
        runtime = self._runtime
        if runtime is None or self._closing:
            raise RuntimeClosedError("this tinker client was closed")
        return runtime

    @property
    def closed(self) -> bool:
        """True once closing was asked for."""
        return self._closing

    async def _serve(self, started: Future[None]) -> None:
        error: BaseException | None = None
        try:
            async with open_runtime(
                config=self.config,
                user_metadata=self._user_metadata,
                display_name=self._display_name,
            ) as runtime:
                async with trio.open_nursery() as nursery:
                    self._runtime, self._nursery = runtime, nursery
                    self._exit = trio.Event()
                    self.process.host_started(self)
                    succeed(started, None)
                    await self._exit.wait()
                    with trio.move_on_after(runtime._grace / 3):
                        for lane in list(self._lanes):
                            await lane.drained()
                    nursery.cancel_scope.cancel()
                if self._finish is not None:
                    runtime.set_finish(*self._finish)
        except BaseException as exc:
            error = exc
            fail(started, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._closing = True
            self.process.host_stopped(self)
            for future in list(self._pending):
                fail(
                    future, RuntimeClosedError("the tinker client was closed before this finished")
                )

            def settle() -> None:
                if error is None:
                    succeed(self._closed, None)
                else:
                    fail(self._closed, error)

            # The last host stops the thread: then its waiters wake once the thread is done.
            self.process.release(then=settle)

    def close_async(
        self, status: FinishStatus | None = None, detail: str | None = None
    ) -> Future[None]:
        """Leave the ``open()`` block (the session finishes with ``status``); once only.

        Returns:
            A future done when the block has exited (with its error if it failed).
        """
        with self._lock:
            if self._closing:
                return self._closed
            self._closing = True
            if status is not None:
                self._finish = (status, detail)
        exit_event = self._exit
        try:
            if exit_event is not None:
                self.process.call_soon(exit_event.set)
        except RuntimeClosedError:
            succeed(self._closed, None)
        return self._closed

    # -- work ------------------------------------------------------------------------------------

    def new_future(self, cls: type[APIFuture[Any]] = APIFuture) -> APIFuture[Any]:
        """Return a pending future that fails if this host closes before it is done."""
        future = cls()
        future._canceller = self._cancel
        pending = self._pending
        pending.add(future)
        future.add_done_callback(pending.discard)
        return future

    def spawn(
        self,
        work: Callable[[], Awaitable[Any]],
        *,
        future: APIFuture[Any] | None = None,
        submission: bool = False,
    ) -> APIFuture[Any]:
        """Run ``work()`` as a task of this host; return the future of its outcome at once.

        With ``submission=True``, ``work()`` returns a :data:`Submission` and the future
        follows the native future it names (cancelling it cancels the operation).
        """
        if future is None:
            future = self.new_future()
        self.process.call_soon(self._start_task, future, work, submission)
        return future

    def _start_task(
        self, future: APIFuture[Any], work: Callable[[], Awaitable[Any]], submission: bool
    ) -> None:
        nursery = self._nursery
        if nursery is None or self._closed.done():
            fail(future, RuntimeClosedError("this tinker client was closed"))
            return
        nursery.start_soon(drive, future, work, submission)

    def lane(self) -> Lane:
        """Return a new ordered lane of this host (one per training client)."""
        lane = Lane(self)
        self._lanes.append(lane)
        return lane

    def run(self, work: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``work()`` on this host and block for its result (setup calls, not hot paths)."""
        future: APIFuture[T] = self.spawn(work)
        return future.result(timeout)

    def _cancel(self, future: APIFuture[Any]) -> None:
        self.process.call_soon(_cancel_target, future)


def _cancel_target(future: APIFuture[Any]) -> None:
    target = future._cancel_target
    if target is not None:
        target.cancel()


async def drive(
    future: APIFuture[Any], work: Callable[[], Awaitable[Any]], submission: bool
) -> None:
    """Run one call on the runtime thread and connect its outcome to ``future``."""
    if future.done():
        return  # cancelled before it started: nothing was sent
    with trio.CancelScope() as scope:
        future._cancel_target = scope
        try:
            value = await work()
        except trio.Cancelled:
            fail(future, RuntimeClosedError("the tinker client closed during the call"))
            raise
        except Exception as exc:
            fail(future, exc)
            return
    if scope.cancelled_caught:
        return  # the owner cancelled the future
    if not submission:
        succeed(future, value)
        return
    native, transform = value
    future._cancel_target = native
    if future.cancelled():
        native.cancel()
        return
    native.add_done_callback(lambda done: _copy_outcome(future, done, transform))


def _copy_outcome(
    future: APIFuture[Any], native: NativeFuture[Any], transform: Callable[[Any], Any] | None
) -> None:
    try:
        value = native.outcome()
        if transform is not None:
            value = transform(value)
    except Exception as exc:
        fail(future, exc)
    else:
        succeed(future, value)


class Lane:
    """Submits one client's operations one at a time, in the order of the calls."""

    __slots__ = ("_host", "_idle", "_queue", "_running")

    def __init__(self, host: Host) -> None:
        self._host = host
        self._queue: collections.deque[tuple[APIFuture[Any], Callable[[], Awaitable[Any]]]] = (
            collections.deque()
        )
        self._running = False
        self._idle: trio.Event | None = None

    def push(
        self, submit: Callable[[], Awaitable[Submission]], *, future: APIFuture[Any] | None = None
    ) -> APIFuture[Any]:
        """Queue ``submit()`` behind this lane's earlier calls; return its future at once."""
        host = self._host
        if future is None:
            future = host.new_future()
        host.process.call_soon(self._append, future, submit)
        return future

    def _append(self, future: APIFuture[Any], submit: Callable[[], Awaitable[Any]]) -> None:
        # On the runtime thread, in call order (call_soon is first in, first out).
        self._queue.append((future, submit))
        if self._running:
            return
        nursery = self._host._nursery
        if nursery is None or self._host._closed.done():
            self._fail_queued()
            return
        self._running = True
        nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while self._queue:
                future, submit = self._queue.popleft()
                await drive(future, submit, True)
        finally:
            self._running = False
            self._fail_queued()
            if self._idle is not None:
                self._idle.set()

    def _fail_queued(self) -> None:
        while self._queue:
            future, _ = self._queue.popleft()
            fail(future, RuntimeClosedError("the tinker client closed before this was sent"))

    async def drained(self) -> None:
        """Wait until nothing is queued or being submitted."""
        while self._running:
            self._idle = trio.Event()
            await self._idle.wait()
