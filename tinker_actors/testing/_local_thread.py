"""A local server on a background thread that a test can stop, restart and re-fault.

The server runs ``trio.run`` on a daemon thread of its own and serves on a loopback port, so
code under test reaches it the way it reaches the real service, whatever it runs on: blocking
code, asyncio, or trio (the test's own event loop is never involved)::

    with LocalServerThread(faults=FaultPlan.from_flags(["asample:429@0.2"])) as server:
        client = tinker.ServiceClient(base_url=server.url, api_key=server.api_key)
        ...
        server.restart()                    # same port, same data: clients reconnect
        server.counters().assert_steps_applied_once(steps=10)

Everything the test thread asks of the server (counters, a new fault plan) runs on the server's
own thread through ``trio.from_thread``, so it never races the requests being served.

:meth:`LocalServerThread.restart` stops the server (every connection drops, as when a process
dies) and starts a new one on the same port and the same data directory, which keeps sessions,
training runs and checkpoints (docs/local-server.md). What lived only in memory does not
survive: live models, pending futures and the counters. The counters of each stopped server
are kept in :attr:`LocalServerThread.history`.
"""

from __future__ import annotations

import functools
import inspect
import queue
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, final

import trio

from tinker_actors.testing._counters import ServerCounters

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.local import FaultPlan, LocalServer
    from tinker_actors.local._backend import Backend
    from tinker_actors.testing._lost import LostAnswers

__all__ = ["DEFAULT_API_KEY", "LocalServerThread", "make_backend"]

#: The key test clients use: any ``tml-`` key is accepted unless ``api_keys`` says otherwise.
DEFAULT_API_KEY: Final = "tml-pytest"
_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 30.0


def make_backend(backend: str | Backend | Callable[[], Backend] | None) -> Backend | None:
    """Return the backend a name (``null``, ``torch``), a factory or an instance stands for.

    Raises:
        ValueError: an unknown name.
        ImportError: ``torch`` without PyTorch installed.
    """
    if backend is None or backend == "null":
        return None
    if backend == "torch":
        from tinker_actors.local._torch_backend import TorchBackend

        return TorchBackend()
    if isinstance(backend, str):
        raise ValueError(f"unknown backend {backend!r}; use 'null' or 'torch'")
    if isinstance(backend, (type, functools.partial)) or inspect.isroutine(backend):
        factory: Callable[[], Backend] = backend
        return factory()
    return backend  # type: ignore[return-value]


@final
class LocalServerThread:
    """A local Tinker server served from a background thread; start, stop and restart it.

    Args:
        backend: ``"null"`` (default), ``"torch"``, a backend, or a function that makes one
            (called at every start, so a restart gets a fresh backend).
        faults: the fault plan to serve with (None: no faults).
        lost_answers: answers to lose after the server did the work
            (:class:`~tinker_actors.testing._lost.LostAnswers`; None: none).
        data_dir: where the state persists across restarts (default: a temporary directory,
            removed by :meth:`close`).
        host: the loopback address to bind.
        port: the port (0: any free one, then kept across restarts).
        api_key: the key :attr:`api_key` hands to clients.
        **settings: any :class:`~tinker_actors.local.ServerSettings` field.
    """

    def __init__(
        self,
        *,
        backend: str | Backend | Callable[[], Backend] | None = "null",
        faults: FaultPlan | None = None,
        lost_answers: FaultPlan | None = None,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        **settings: Any,
    ) -> None:
        self._backend = backend
        self._faults = faults
        self._lost_plan = lost_answers
        self._lost: LostAnswers | None = None
        self._remove_owned_dir: weakref.finalize[Any, Any] | None = None
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="tinker-test-server-"))
            # removed by close(), else when this object is collected or the interpreter exits:
            # a thread whose start failed, or that nobody closed, leaves no directory behind
            self._remove_owned_dir = weakref.finalize(
                self, shutil.rmtree, data_dir, ignore_errors=True
            )
        self.data_dir: Path = Path(data_dir)
        self.host = host
        self.port = port
        self.api_key = api_key
        self._settings = settings
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self._server: LocalServer | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._url: str | None = None
        #: the counters of every server stopped so far, oldest first
        self.history: list[ServerCounters] = []
        self.starts = 0

    def __repr__(self) -> str:
        state = self._url if self.running else "stopped"
        return f"<LocalServerThread {state}>"

    def __enter__(self) -> LocalServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether a server is being served now."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        """The base URL clients use (the fault proxy's, when the plan has connection faults)."""
        if self._url is None:
            raise RuntimeError("the server has not been started")
        return self._url

    @property
    def openai_base_url(self) -> str:
        """The base URL of the server's OpenAI-compatible API, for ``openai.OpenAI(base_url=)``
        with :attr:`api_key` (see docs/local-server.md)."""
        from tinker_actors.local._oai import OAI_PREFIX

        return self.url + OAI_PREFIX

    @property
    def anthropic_base_url(self) -> str:
        """The base URL of the server's Anthropic-compatible API, for
        ``anthropic.Anthropic(base_url=)`` with :attr:`api_key` (see docs/local-server.md)."""
        from tinker_actors.local._anthropic_text import ANTHROPIC_PREFIX

        return self.url + ANTHROPIC_PREFIX

    @property
    def server(self) -> LocalServer:
        """The running :class:`~tinker_actors.local.LocalServer` (use from its thread only)."""
        if self._server is None or not self.running:
            raise RuntimeError("the server is not running")
        return self._server

    @property
    def faults(self) -> FaultPlan | None:
        """The fault plan the server was last started or re-faulted with."""
        return self._faults

    def start(self) -> str:
        """Start serving (on the port of the previous start, if any); return the URL.

        Raises:
            RuntimeError: it is already running, or the server failed to start (the cause is
                chained).
        """
        if self.running:
            raise RuntimeError("the server is already running")
        from tinker_actors.local import open_local_server
        from tinker_actors.testing._lost import LostAnswers, check_lost_plan

        if self._lost_plan is not None:
            check_lost_plan(self._lost_plan)  # refused here, in the caller's thread

        ready: queue.Queue[tuple[str, LocalServer, trio.lowlevel.TrioToken] | BaseException]
        ready = queue.Queue()
        stop = threading.Event()
        options: dict[str, Any] = {
            **self._settings,
            "backend": make_backend(self._backend),
            "faults": self._faults,
            "data_dir": self.data_dir,
        }

        async def main() -> None:
            started = False
            try:
                async with (
                    open_local_server(**options) as server,
                    trio.open_nursery() as nursery,
                ):
                    # between the fault injector and the API: faults first, then lost answers
                    lost = LostAnswers(server.faults.app, self._lost_plan)
                    server.faults.app = lost
                    self._lost = lost
                    url = await nursery.start(server.serve, self.host, self.port)
                    ready.put((url, server, trio.lowlevel.current_trio_token()))
                    started = True
                    await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)
                    nursery.cancel_scope.cancel()
            except BaseException as exc:
                if started:
                    raise  # a crash while serving escapes the thread, where pytest reports it
                ready.put(exc)  # a failed start is raised by start(), in the caller's thread

        thread = threading.Thread(
            target=trio.run, args=(main,), name="tinker-test-server", daemon=True
        )
        thread.start()
        try:
            item = ready.get(timeout=_START_TIMEOUT)
        except queue.Empty:
            stop.set()
            raise RuntimeError(
                f"the local server did not start within {_START_TIMEOUT:g} s"
            ) from None
        if isinstance(item, BaseException):
            thread.join(timeout=_STOP_TIMEOUT)
            raise RuntimeError(f"the local server failed to start: {item!r}") from item
        self._url, self._server, self._token = item
        self._thread, self._stop = thread, stop
        self.port = int(self._url.rsplit(":", 1)[1])
        self.starts += 1
        return self._url

    def stop(self) -> ServerCounters | None:
        """Stop serving (connections drop); return the stopped server's counters."""
        if self._thread is None or self._stop is None:
            return None
        final: ServerCounters | None = None
        if self.running:
            try:
                final = self.counters()
            except RuntimeError:
                final = None
        self._stop.set()
        self._thread.join(timeout=_STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the local server did not stop within {_STOP_TIMEOUT:g} s")
        self._thread = self._stop = self._server = self._token = None
        self._lost = None
        if final is not None:
            self.history.append(final)
        return final

    def restart(
        self, *, downtime: float = 0.0, faults: FaultPlan | Literal["keep"] | None = "keep"
    ) -> str:
        """Stop and start again on the same port and data; return the URL.

        Args:
            downtime: seconds to stay down in between (clients see refused connections).
            faults: the plan to start with (None: no faults); ``"keep"`` keeps the current one.
        """
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        if faults != "keep":
            self._faults = faults
        return self.start()

    def close(self) -> None:
        """Stop serving and remove the data directory this object created."""
        self.stop()
        if self._remove_owned_dir is not None:
            self._remove_owned_dir()  # runs once: later calls and collection do nothing

    def _on_server_thread(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's thread and return its result (from any thread).

        ``TrioToken.run_sync_soon`` rather than ``trio.from_thread``, which refuses to be
        called from a thread that runs trio itself: a trio test reads the counters too.
        """
        if self._token is None or not self.running:
            raise RuntimeError("the server is not running")
        answer: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

        def call() -> None:
            try:
                answer.put((True, fn()))
            except BaseException as exc:  # handed to the caller, who re-raises it
                answer.put((False, exc))

        self._token.run_sync_soon(call)
        try:
            ok, value = answer.get(timeout=_STOP_TIMEOUT)
        except queue.Empty:
            raise RuntimeError("the server did not answer within 30 s") from None
        if not ok:
            raise value
        return value

    def counters(self) -> ServerCounters:
        """Return what the running server received, applied and injected (a snapshot)."""
        server, lost = self.server, self._lost

        def read() -> dict[str, Any]:
            data = server.counters()
            if lost is not None:
                data["lost_answers"] = lost.statistics()
            return data

        return ServerCounters.from_dict(self._on_server_thread(read))

    def set_lost_answers(self, plan: FaultPlan | None) -> None:
        """Replace the lost-answer plan now (None: lose nothing); its statistics restart."""
        from tinker_actors.local import FaultPlan
        from tinker_actors.testing._lost import check_lost_plan

        plan = check_lost_plan(plan if plan is not None else FaultPlan())
        lost = self._lost
        if lost is None or not self.running:
            raise RuntimeError("the server is not running")
        self._on_server_thread(lambda: lost.set_plan(plan))
        self._lost_plan = plan

    def set_faults(self, plan: FaultPlan | None) -> None:
        """Replace the fault plan now (None: no faults); the injector's counters restart.

        Raises:
            ValueError: the plan has connection faults but the server was started without
                any (the proxy exists only when the starting plan has a connection section;
                :meth:`restart` with ``faults=plan`` instead).
        """
        from tinker_actors.local import FaultPlan

        plan = plan if plan is not None else FaultPlan()
        server = self.server
        if plan.connection_faults() is not None and server.proxy is None:
            raise ValueError(
                "connection faults need a server started with a connection plan; call "
                "restart(faults=plan) instead"
            )
        self._on_server_thread(lambda: server.set_faults(plan))
        self._faults = plan
