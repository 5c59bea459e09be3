"""Errors of public client calls go to telemetry (protocol.md §9.7), then to the caller.

Decorate a public ``async`` method of a client (anything with a ``_ctx``
:class:`~tinker_actors.clients.ClientContext`)::

    @reported
    async def forward_backward(self, data, loss_fn): ...

An exception it raises is reported once (``UNHANDLED_EXCEPTION``, or ``user_error`` for a
caller's mistake such as a 4xx) and re-raised unchanged. Failures of operations that have
already returned their future are reported when the future resolves (see
:meth:`ClientContext.watch`). Recording never blocks and never raises.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.clients._service import ClientContext

__all__ = ["reported"]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="_HasContext")


class _HasContext(Protocol):
    @property
    def _ctx(self) -> ClientContext: ...


def reported(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Awaitable[T]]:
    """Wrap ``method`` so that an exception it raises is reported to telemetry first."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            ctx: ClientContext | None = getattr(self, "_ctx", None)  # None: a detached client
            if ctx is not None:
                ctx.report(exc)
            raise

    return wrapper
