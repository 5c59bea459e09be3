"""``tinker_actors.open()``: the one ``async with`` that owns every lifetime.

Entering it resolves the configuration, opens the HTTP transport (a resource, not an actor),
and starts the supervision tree; leaving it stops the tree within ``shutdown_grace`` seconds and
closes the transport. Nothing it started outlives the block: no task, no socket.

::

    open()                         nursery + transport (see tinker_actors.transport)
    └── root            rest_for_one
        ├── limiters    Registry: one RateLimiter per (base_url, sha256(api_key))
        ├── pollers     one_for_one, dynamic: the FuturePoller (started on first use)
        ├── clients     one_for_one, dynamic: one actor per Training client (TRANSIENT)
        └── session     the SessionManager, started on first use (TEMPORARY)

The block yields the :class:`~tinker_actors._runtime.Runtime`, which is also the
ServiceClient (see :mod:`tinker_actors._runtime` for the tree's lazily started children).

Leaving the block, in order: however the block ended (normally, by an exception, or by a
cancel scope around it), the client actors stop first, so a training client sends what it
accepted as queued while the session still lives, and the results of those requests are
awaited; this flush is shielded and bounded by ``flush_timeout`` (30 s by default; see
:mod:`tinker_actors._flush`). Then, within ``shutdown_grace`` seconds, the session, if one was
created, is finished (``success`` on a normal exit, ``errored`` when the body raised an
Exception, ``interrupted`` on any other BaseException such as KeyboardInterrupt or a
cancellation); then the tree stops.

Errors of individual calls reach their callers as ordinary exceptions. Only an escalation (a
supervisor that gave up) leaves ``open()``, as trio's exception group holding the child's own
exception::

    try:
        async with open(api_key="tml-...") as runtime:
            ...
    except* ConnectionError as group:
        ...

An exception raised by the body of the ``async with`` itself comes out unchanged.
"""

from __future__ import annotations

import functools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from tinker_actors._flush import DEFAULT_FLUSH_TIMEOUT, check_flush_timeout
from tinker_actors._runtime import (
    DEFAULT_SHUTDOWN_GRACE,
    RUNTIME_TOKEN,
    Runtime,
    root_children,
)
from tinker_actors._runtime_parts import check_grace, check_session_options, finish_status
from tinker_actors.config import Config, resolve_config
from tinker_actors.errors import InvalidInputError
from tinker_actors.supervisors import Strategy, SupervisorRef, run_supervisor, track_actors
from tinker_actors.transport import open_transport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    import httpx

__all__ = ["open"]


@asynccontextmanager
async def open(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
    user_metadata: dict[str, Any] | None = None,
    display_name: str | None = None,
    config: Config | None = None,
    **config_overrides: Any,
) -> AsyncIterator[Runtime]:
    """Open the transport, start the supervision tree, and yield the :class:`Runtime`.

    Args:
        base_url: the API root (else ``TINKER_BASE_URL``, else the default service).
        api_key: the credential (else ``TINKER_API_KEY`` and the other sources of
            :func:`~tinker_actors.config.resolve_config`).
        http_transport: an httpx transport to use instead of the network (tests:
            ``httpx.MockTransport`` / ``httpx.ASGITransport``).
        shutdown_grace: seconds the tree gets to stop politely on exit before it is cancelled.
        flush_timeout: seconds leaving the block may first spend sending the training requests
            it accepted and awaiting their results, however the block ended (a cancellation
            included); what is not settled by then fails with OperationCancelledError saying
            so. ``0`` skips the flush. See :mod:`tinker_actors._flush`.
        user_metadata: metadata of the session, sent in ``create_session``.
        display_name: a human-readable name of the session, sent in ``create_session``.
        config: an already resolved :class:`~tinker_actors.config.Config` to use as it is
            (then ``base_url``, ``api_key`` and config overrides must not be given).
        **config_overrides: any other Config field, e.g. ``timeout=30``.

    Raises:
        InvalidInputError: bad settings or no credential, before anything starts.
        ExceptionGroup: a supervisor escalation; it holds the crashed child's own exception.
    """
    grace = check_grace(shutdown_grace)
    flush = check_flush_timeout(flush_timeout)
    check_session_options(user_metadata, display_name)
    if config is None:
        config = resolve_config(base_url=base_url, api_key=api_key, **config_overrides)
    elif not isinstance(config, Config):
        raise InvalidInputError(f"config must be a Config, got {type(config).__name__}")
    elif base_url is not None or api_key is not None or config_overrides:
        raise InvalidInputError(
            "pass either config= or base_url/api_key/config overrides to open(), not both"
        )
    body_error: BaseException | None = None
    try:
        async with open_transport(config, http_transport=http_transport) as transport:
            with track_actors() as census:
                async with trio.open_nursery() as nursery:
                    # The tree runs shielded from the caller's cancel scopes: a deadline around
                    # open() cancels the body, and the tree is then stopped by the ladder below
                    # (flush, finish, polite stop, cancel), never cut down mid-send with it.
                    tree_scope = trio.CancelScope(shield=True)
                    root: SupervisorRef = await nursery.start(
                        functools.partial(
                            _run_shielded,
                            tree_scope,
                            functools.partial(
                                run_supervisor,
                                root_children(),
                                name="root",
                                strategy=Strategy.REST_FOR_ONE,
                            ),
                        )
                    )
                    try:
                        runtime = Runtime(
                            RUNTIME_TOKEN,
                            config=config,
                            transport=transport,
                            root=root,
                            census=census,
                            grace=grace,
                            flush_timeout=flush,
                            user_metadata=user_metadata,
                            display_name=display_name,
                        )
                    except BaseException as exc:
                        # the shielded tree would otherwise keep the nursery open forever
                        body_error = exc
                        tree_scope.cancel()
                        raise
                    try:
                        yield runtime
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        try:
                            # However the block ended (a cancel scope around it included):
                            # first what training clients accepted is sent and its results
                            # awaited, shielded, within flush_timeout (see _flush.py), while
                            # the session lives.
                            await runtime._flush(
                                interrupted=isinstance(body_error, KeyboardInterrupt)
                            )
                            # The ladder, bounded as a whole by the grace: polite stop, then
                            # cancel.
                            with trio.CancelScope(shield=True), trio.move_on_after(grace):
                                if body_error is None:
                                    # Clients first, while the session lives: whatever a
                                    # training client still holds as queued is sent, not
                                    # dropped.
                                    with trio.move_on_after(grace / 3):
                                        await runtime._stop_clients()
                                # Finishing gets part of the grace, so the tree always gets
                                # the rest.
                                with trio.move_on_after(grace / 3):
                                    await runtime._finish_session(finish_status(body_error))
                                root.request_stop()
                                await root.wait_stopped()
                        finally:
                            # Shields do not stop a KeyboardInterrupt: a second Ctrl-C during
                            # the flush or the ladder ends them. The shielded tree must be
                            # cancelled even then, or this nursery waits for it forever.
                            tree_scope.cancel()
                            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Our nursery wraps whatever the body raised; give the user their own exception back.
        # Escalations from the tree stay in the group. A Ctrl-C that ended the cleanup comes
        # out as itself: the program was told to stop, and it exits as a Ctrl-C'd one does
        # (raised outside this handler, so it keeps the body's error as its context).
        mine = body_error
        if mine is None or group.split(lambda exc: exc is mine)[1] is not None:
            interrupt = _first_interrupt(group)
            if interrupt is None:
                raise
            mine = interrupt
    else:
        return
    raise mine


def _first_interrupt(group: BaseExceptionGroup[BaseException]) -> KeyboardInterrupt | None:
    for exc in group.exceptions:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_interrupt(exc)
            if found is not None:
                return found
    return None


async def _run_shielded(
    scope: trio.CancelScope,
    start: Callable[..., Awaitable[None]],
    *,
    task_status: trio.TaskStatus[SupervisorRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``start(task_status=...)`` inside ``scope`` (a shielded scope its owner cancels)."""
    with scope:
        await start(task_status=task_status)
