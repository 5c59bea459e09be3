"""The official SDK's futures: one object usable from blocking code, asyncio and trio.

A compat :class:`APIFuture` *is* a ``concurrent.futures.Future``, so it works everywhere
such futures work (``concurrent.futures.wait``, ``as_completed``, done callbacks), and adds
the official 0.38 surface::

    fut = training.forward_backward(data, "cross_entropy")   # queued in order, returned at once
    out = fut.result()                                        # block this thread
    out = await fut                                           # or await it (asyncio or trio)
    out = await fut.result_async(timeout=30)

Cancelling it (``fut.cancel()``, or cancelling the asyncio task awaiting it, as
``asyncio.wait_for`` does on timeout) cancels the operation, like the official client.
``result(timeout)`` leaves the operation running when the wait times out.

``result()`` blocks the calling thread. Called inside a running asyncio loop on a future that
is not done, it still blocks (as 0.38 does; the runtime is on its own thread, so it cannot
deadlock) and logs one warning per call site (0.38 logs a stack on every call). Called on the
runtime's own thread (from a done callback) it raises instead: that would wait on itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import sys
import warnings
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tinker_actors.compat._deprecation import deprecated, is_async
from tinker_actors.compat._process import RuntimeClosedError, on_runtime_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

__all__ = [
    "APIFuture",
    "BackcompatClientFuture",
    "completed",
    "forward_client",
]

T = TypeVar("T")
C = TypeVar("C")

logger = logging.getLogger("tinker_actors.compat")
_warned_sites: set[tuple[str, int]] = set()


class APIFuture(Future[T]):
    """The outcome of one operation; awaitable, blocking-readable and cancellable.

    ``APIFuture(future)`` (0.38's ``AwaitableConcurrentFuture(future)``, which code that fakes a
    client in its tests builds) wraps a ``concurrent.futures.Future``: it finishes as that one
    does, and cancelling it cancels that one.
    """

    # What cancel() must stop: a native APIFuture, or a trio CancelScope (set on the runtime).
    _cancel_target: Any = None
    _canceller: Callable[[APIFuture[Any]], None] | None = None
    _owner: Any = None  # what must stay alive until this finishes
    _source: Future[T] | None = None  # the future this one wraps, if any

    def __init__(self, future: Future[T] | None = None) -> None:
        super().__init__()
        if future is None:
            return
        if not isinstance(future, Future):
            raise TypeError(
                f"{type(self).__name__}(future) wraps a concurrent.futures.Future, not "
                f"{type(future).__name__}; for a value that is already known, set it on a "
                "Future first (future.set_result(value))"
            )
        self._source = future
        self._canceller = _cancel_source
        future.add_done_callback(self._settle_from)

    def _settle_from(self, source: Future[T]) -> None:
        # on whichever thread finished the source; this future may have been cancelled first
        if source.cancelled():
            self.cancel()
            return
        error = source.exception()
        with contextlib.suppress(InvalidStateError):
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(source.result())

    def __repr__(self) -> str:
        # a subclass written for 0.38's abstract APIFuture may never run Future.__init__
        state: str = getattr(self, "_state", "unknown")
        return f"<{type(self).__name__} {state.lower()}>"

    def result(self, timeout: float | None = None) -> T:
        """Block until the operation finishes and return its result (or raise its error).

        Raises:
            TimeoutError: ``timeout`` seconds passed; the operation keeps running.
            RuntimeError: called on the runtime's own thread while not done.
        """
        if not self.done():
            _check_blocking_allowed(type(self).__name__ + ".result")
        return super().result(timeout)

    async def result_async(self, timeout: float | None = None) -> T:  # noqa: ASYNC109 (0.38 API)
        """Wait for the outcome in asyncio (or trio) and return it.

        Args:
            timeout: seconds to wait; when it passes the operation is cancelled (as 0.38
                does) and TimeoutError is raised.
        """
        if self.done():
            return super().result()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return await _wait_in_trio(self, timeout)
        wrapped = asyncio.wrap_future(self, loop=loop)
        if timeout is None:
            return await wrapped
        return await asyncio.wait_for(wrapped, timeout)

    def future(self) -> Future[T]:
        """Return the ``concurrent.futures.Future`` of this operation: the one it wraps, else
        this object itself."""
        return self if self._source is None else self._source

    async def coroutine(self) -> T:
        """Return this future as a coroutine (for APIs that want one, e.g. ``create_task``)."""
        return await self.result_async()

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    def cancel(self) -> bool:
        """Cancel the operation; return False if it already finished."""
        if not super().cancel():
            return False
        canceller = self._canceller
        if canceller is not None:
            with contextlib.suppress(RuntimeClosedError):  # nothing is running any more
                canceller(self)
        return True


def _cancel_source(future: APIFuture[Any]) -> None:
    if future._source is not None:
        future._source.cancel()


async def _wait_in_trio(future: APIFuture[T], timeout: float | None) -> T:  # noqa: ASYNC109
    """Await ``future`` from a trio program (a thread waits; the trio loop stays free)."""
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(
            "await a tinker future inside asyncio or trio; in blocking code call .result()"
        ) from None
    return await trio.to_thread.run_sync(future.result, timeout, abandon_on_cancel=True)


def _check_blocking_allowed(what: str) -> None:
    if on_runtime_thread():
        raise RuntimeError(
            f"{what}() called on the tinker_actors runtime thread (from a done callback?) "
            "would wait on itself forever: read the result only once the future is done"
        )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if _in_jupyter():
        return
    frame = sys._getframe(2)
    site = (frame.f_code.co_filename, frame.f_lineno)
    if site in _warned_sites:
        return
    _warned_sites.add(site)
    logger.warning(
        "%s() called inside a running asyncio loop at %s:%d blocks that loop until the result "
        "arrives; use 'await future' (or 'await future.result_async()') instead",
        what,
        site[0],
        site[1],
    )


def _in_jupyter() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ in ("ZMQInteractiveShell", "Shell")


def completed(value: T) -> APIFuture[T]:
    """Return an APIFuture that is already done with ``value``."""
    future: APIFuture[T] = APIFuture()
    future.set_result(value)
    return future


class BackcompatClientFuture(APIFuture[C], Generic[C]):
    """A future of a client that can still be used, deprecated, as the client itself.

    0.38's client factories return a future of the client; code written before that uses the
    return value directly. A subclass also derives from the client's class, so
    ``isinstance(future, TrainingClient)`` holds as in 0.38, and :func:`forward_client` gives
    it one forwarder per public method and property of the client: the client's ``__init__``
    never runs on the future, so its own methods must not either. Each forwarder waits for the
    client, warns with FutureWarning in 0.38's words (so a warning filter written for the
    official client matches), and calls it. Anything else is read here the same way.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        client = Future.result(self)  # deprecated path: block like 0.38 does
        value = getattr(client, name)
        warnings.warn(_reading(name), FutureWarning, stacklevel=2)
        return value


def _reading(name: str) -> str:
    return (
        f"Reading `.{name}` from the future returned by a client-creation method is "
        "deprecated and will stop working in a future tinker SDK version. Call .result() on "
        "the future, or await it, to get the client first."
    )


def forward_client(future_cls: type[BackcompatClientFuture[Any]], client_cls: type) -> None:
    """Give ``future_cls`` (a subclass of ``client_cls``) a deprecated forwarder for each public
    method and property that ``client_cls`` defines; static and class methods need none."""
    using = (
        f"Using the future as the {client_cls.__name__} is deprecated; call .result() on it, "
        f"or await it, to get the {client_cls.__name__} first"
    )
    for name, member in vars(client_cls).items():
        if name.startswith("_") or name in vars(future_cls):
            continue
        if isinstance(member, property):
            setattr(future_cls, name, _property(name, member))
        elif is_async(member):
            setattr(future_cls, name, _async_method(name, member, using))
        elif inspect.isfunction(member):
            setattr(future_cls, name, _method(name, member, using))


def _property(name: str, member: property) -> property:
    def read(self: BackcompatClientFuture[Any]) -> Any:
        warnings.warn(_reading(name), FutureWarning, stacklevel=2)
        return getattr(Future.result(self), name)

    return property(read, doc=member.__doc__)


def _method(name: str, member: Callable[..., Any], message: str) -> Callable[..., Any]:
    @deprecated(message)
    @functools.wraps(member)
    def forward(self: BackcompatClientFuture[Any], *args: Any, **kwargs: Any) -> Any:
        return getattr(Future.result(self), name)(*args, **kwargs)

    return forward


def _async_method(name: str, member: Callable[..., Any], message: str) -> Callable[..., Any]:
    # waits for the client without blocking; the warning comes at the call, as in 0.38
    @deprecated(message)
    @functools.wraps(member)
    def forward(self: BackcompatClientFuture[Any], *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            client = await self.result_async()
            return await getattr(client, name)(*args, **kwargs)

        return call()

    return forward
