"""The process runtime: one trio run on a dedicated thread, shared by every compat client.

Code written for the official SDK calls from plain threads and asyncio loops; the actor tree
lives in trio. :class:`ProcessRuntime` is the bridge: a thread named ``tinker-actors-runtime``
running one ``trio.run``, in which each compat :class:`~tinker_actors.compat._host.Host` keeps
one ``tinker_actors.open()`` block (one actor tree, one transport, at most one session).

Lifetime, per process:

* the first compat client that needs the runtime starts it (:func:`acquire_runtime`); each
  host holds one reference, and the thread stops, and is joined, when the last is released;
* at interpreter exit every live host is closed (the session finishes as ``success``, or
  ``errored`` / ``interrupted`` when the program died of an exception) within a bounded wait;
* after ``fork()`` the child has no runtime thread: the next use starts a fresh runtime, and
  objects bound to the parent's raise :class:`ForkedRuntimeError` at once instead of hanging.

Calls from other threads never wait on the trio thread unless asked to: :meth:`call_soon`
queues a function (strictly first in, first out, which is what keeps a training client's
operations in call order), and blocking waits happen on ``concurrent.futures`` futures.
Calling a blocking method *on* the runtime thread would wait on itself, so it raises.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from tinker_actors.errors import TinkerError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.compat._host import Host

__all__ = [
    "THREAD_NAME",
    "ForkedRuntimeError",
    "ProcessRuntime",
    "RuntimeClosedError",
    "acquire_runtime",
    "on_runtime_thread",
]

T = TypeVar("T")

THREAD_NAME: Final = "tinker-actors-runtime"
#: Seconds interpreter exit waits for the hosts to finish their sessions, and for the thread.
EXIT_WAIT: Final = 15.0
#: Seconds exit waits quietly before saying what it waits for.
EXIT_NOTICE_AFTER: Final = 1.0
_START_TIMEOUT: Final = 30.0

logger = logging.getLogger("tinker_actors.compat")


class RuntimeClosedError(TinkerError, RuntimeError):
    """The client (or the whole process runtime) was closed; nothing more can be sent."""


class ForkedRuntimeError(TinkerError, RuntimeError):
    """An object bound to the parent's runtime was used in a ``fork()``-ed child."""


def on_runtime_thread() -> bool:
    """Return True when called on a process runtime's own thread."""
    return threading.current_thread().name == THREAD_NAME


class ProcessRuntime:
    """One ``trio.run`` on a dedicated thread; hosts run inside it. Use :func:`acquire_runtime`."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._users = 0
        self._stopping = False
        self._hosts: set[Host] = set()
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._crash: BaseException | None = None
        self._on_exit: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<ProcessRuntime pid={self.pid} {state} hosts={len(self._hosts)}>"

    @property
    def alive(self) -> bool:
        """True while the thread runs and no stop was requested (in the process that made it)."""
        return (
            self.pid == os.getpid()
            and not self._stopping
            and self._thread.is_alive()
            and self._crash is None
        )

    # -- the thread ------------------------------------------------------------------------------

    def _start(self) -> None:
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._token is None:
            raise RuntimeClosedError(
                "the tinker_actors runtime thread did not start"
            ) from self._crash

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # the thread must end quietly; the cause is kept
            self._crash = exc
            logger.error("the tinker_actors runtime thread crashed", exc_info=exc)
        finally:
            self._stopping = True
            self._ready.set()
            for callback in self._on_exit:
                try:
                    callback()
                except Exception:
                    logger.exception("a tinker_actors runtime exit callback failed")

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            # Hosts exit on their own (each released its reference); what is left now is
            # work whose owner is gone: cancel it.
            nursery.cancel_scope.cancel()

    # -- scheduling --------------------------------------------------------------------------

    def check_process(self) -> None:
        """Raise ForkedRuntimeError in a forked child of the process that made this runtime."""
        if self.pid != os.getpid():
            raise ForkedRuntimeError(
                f"this object belongs to the tinker_actors runtime of process {self.pid}; its "
                f"thread does not exist in this fork()ed child (pid {os.getpid()}). Create new "
                "clients in the child (ServiceClient(...)), pass SamplingClients by pickle or "
                "sampler handle, or start workers with the 'spawn' method"
            )

    def call_soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the runtime thread soon; calls run in the order they were made.

        Raises:
            RuntimeClosedError: the runtime has stopped.
            ForkedRuntimeError: called in a forked child.
        """
        self.check_process()
        token = self._token
        if token is None or self._crash is not None:
            raise RuntimeClosedError("the tinker_actors runtime has stopped")
        try:
            token.run_sync_soon(_guarded, fn, args)
        except trio.RunFinishedError:
            raise RuntimeClosedError("the tinker_actors runtime has stopped") from None

    def start_soon(
        self, afn: Callable[..., Awaitable[object]], *args: Any, nursery: trio.Nursery | None = None
    ) -> None:
        """Start ``afn(*args)`` as a task on the runtime (in ``nursery``, else the runtime's)."""

        def spawn() -> None:
            target = nursery or self._nursery
            if target is None:
                raise RuntimeClosedError("the tinker_actors runtime has stopped")
            target.start_soon(afn, *args)

        self.call_soon(spawn)

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any, timeout: float | None = None) -> T:
        """Run ``afn(*args)`` on the runtime and block this thread for its result.

        Raises:
            RuntimeError: called on the runtime thread itself (it would wait on itself).
            RuntimeClosedError: the runtime stopped before the call finished.
        """
        if on_runtime_thread():
            raise RuntimeError(
                "a blocking tinker call was made on the tinker_actors runtime thread (from a "
                "done callback?): it would wait on itself forever; await the future instead"
            )
        future: Future[T] = Future()
        self.start_soon(settle_from, future, afn, *args)
        return future.result(timeout)

    # -- users ---------------------------------------------------------------------------------

    def host_started(self, host: Host) -> None:
        """Count ``host`` as live (called on the runtime thread)."""
        self._hosts.add(host)

    def host_stopped(self, host: Host) -> None:
        """Forget ``host`` (called on the runtime thread)."""
        self._hosts.discard(host)

    def hosts(self) -> list[Host]:
        """Return the live hosts."""
        return list(self._hosts)

    def release(self, then: Callable[[], None] | None = None) -> None:
        """Drop one reference; the last one stops the thread.

        Args:
            then: called once this reference is gone: at once while the runtime keeps
                running, else as the very last thing its thread does (so whoever waits on
                it sees the thread finished).
        """
        with _lock:
            self._users -= 1
            last = self._users <= 0 and not self._stopping
            if last:
                self._stopping = True
                global _current
                if _current is self:
                    _current = None
                if then is not None:
                    self._on_exit.append(then)
        if not last:
            if then is not None:
                then()
            return
        stop = self._stop
        token = self._token
        if stop is not None and token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop.set)
        self.join()

    def join(self, timeout: float = EXIT_WAIT) -> None:
        """Wait for a stopping runtime's thread to end (a no-op on that thread itself)."""
        if self._stopping and not on_runtime_thread() and self.pid == os.getpid():
            self._thread.join(timeout)


def _guarded(fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    # An exception escaping a run_sync_soon callback would crash the whole trio run.
    try:
        fn(*args)
    except BaseException:
        logger.exception("a tinker_actors runtime callback failed")


async def settle_from(future: Future[T], afn: Callable[..., Awaitable[T]], *args: Any) -> None:
    """Run ``afn(*args)`` and put its outcome into ``future`` (if nobody cancelled it)."""
    if future.done():
        return
    try:
        value = await afn(*args)
    except trio.Cancelled:
        fail(future, RuntimeClosedError("the tinker_actors runtime stopped during the call"))
        raise
    except BaseException as exc:
        fail(future, exc)
        if not isinstance(exc, Exception):
            raise
    else:
        succeed(future, value)


def succeed(future: Future[T], value: T) -> None:
    """Set ``future``'s result unless it is already done (cancelled by its owner)."""
    if not future.done():
        # Losing a race with cancel() means the owner no longer wants the value.
        with contextlib.suppress(Exception):
            future.set_result(value)


def fail(future: Future[Any], error: BaseException) -> None:
    """Set ``future``'s exception unless it is already done."""
    if not future.done():
        with contextlib.suppress(Exception):
            future.set_exception(error)


# -- the process-wide instance ------------------------------------------------------------------

_lock = threading.Lock()
_current: ProcessRuntime | None = None


def acquire_runtime() -> ProcessRuntime:
    """Return this process's runtime with one more reference, starting it if needed.

    Pair each call with :meth:`ProcessRuntime.release`.

    Raises:
        RuntimeClosedError: the thread could not be started.
    """
    global _current
    with _lock:
        runtime = _current
        if runtime is None or not runtime.alive:
            runtime = ProcessRuntime()
            runtime._start()
            _current = runtime
        runtime._users += 1
        return runtime


def current_runtime() -> ProcessRuntime | None:
    """Return this process's live runtime, if one is running."""
    runtime = _current
    return runtime if runtime is not None and runtime.alive else None


def _exit_status() -> tuple[str, str | None]:
    """How the program is ending, for the sessions still open at interpreter exit."""
    error = getattr(sys, "last_value", None)
    if error is None:
        return "success", None
    kind = "errored" if isinstance(error, Exception) else "interrupted"
    return kind, f"the program exited with {type(error).__name__}"


def _close_at_exit() -> None:
    runtime = current_runtime()
    if runtime is None:
        return
    status, detail = _exit_status()
    closing = [host.close_async(status, detail) for host in runtime.hosts()]  # type: ignore[arg-type]
    try:
        _await_closing(closing, announce=status == "interrupted")
        runtime.join()
    except KeyboardInterrupt:
        # a second Ctrl-C while exit waits: the user wants out now, and a traceback from an
        # atexit callback would say nothing they need
        logger.warning(
            "exiting without waiting for the tinker session to finish (interrupted); training "
            "requests already sent may still be applied by the server"
        )


def _await_closing(closing: list[Future[None]], *, announce: bool) -> None:
    """Wait for the hosts to finish, EXIT_WAIT in all.

    Finishing waits for the training requests the program was told are accepted (see
    :mod:`tinker_actors._flush`), which after a Ctrl-C can be a step still running: without a
    word the program would seem to ignore the interrupt for up to EXIT_WAIT seconds. So with
    ``announce`` (the program was interrupted) a wait longer than a moment says so.
    """
    deadline = time.monotonic() + EXIT_WAIT
    if announce and EXIT_NOTICE_AFTER < EXIT_WAIT:
        _, pending = futures_wait(closing, timeout=EXIT_NOTICE_AFTER)
        if pending:
            logger.warning(
                "finishing the tinker session before exit: waiting up to %g s for the "
                "training requests already accepted (Ctrl-C again to exit now)",
                EXIT_WAIT,
            )
    for done in closing:
        try:
            done.result(max(0.0, deadline - time.monotonic()))
        except TimeoutError:  # a traceback would say nothing more than this
            logger.warning(
                "a tinker session was not closed at exit: the server did not answer within "
                "%g s (a training request still running, or the server gone); exiting without "
                "waiting longer",
                EXIT_WAIT,
            )
        except Exception:
            logger.warning("a tinker session did not finish cleanly at exit", exc_info=True)


def _after_fork_in_child() -> None:
    # The parent's thread does not exist here; its lock may have been held mid-update.
    global _lock, _current
    _lock = threading.Lock()
    _current = None


atexit.register(_close_at_exit)
os.register_at_fork(
    before=lambda: _lock.acquire(),
    after_in_parent=lambda: _lock.release(),
    after_in_child=_after_fork_in_child,
)
