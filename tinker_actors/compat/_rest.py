"""RestClient and AdminClient with the official 0.38 calling conventions.

Each REST method of the native clients (:class:`tinker_actors.clients.RestClient`, whose names,
arguments and defaults already are 0.38's) appears twice here: ``name(...)`` returns an
:class:`~tinker_actors.compat._future.APIFuture` at once (``.result()`` or ``await`` it), and
``name_async(...)`` is a coroutine returning the value, as in 0.38::

    rest = tinker.RestClient()                       # base_url / api_key from the environment
    runs = rest.list_training_runs(limit=10).result()
    ckpts = await rest.list_checkpoints_async(run_id)

A stand-alone client has a host of its own (an actor tree without a session) that closes
when the client is garbage-collected or at interpreter exit; one from
``ServiceClient.create_rest_client()`` shares its ServiceClient's.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from typing import TYPE_CHECKING, Any, Final

from tinker_actors.clients import AdminClient as NativeAdminClient
from tinker_actors.clients import RestClient as NativeRestClient
from tinker_actors.compat._deprecation import deprecated
from tinker_actors.compat._host import Host
from tinker_actors.compat._types import ExperimentalWarning
from tinker_actors.config import resolve_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from tinker_actors.compat._future import APIFuture

__all__ = ["AdminClient", "RestClient"]

#: RestClient methods that 0.38 has in both forms (``name`` and ``name_async``).
_REST_TWINS: Final = (
    "assign_session_project",
    "copy_weights",
    "delete_checkpoint",
    "delete_checkpoint_from_tinker_path",
    "export_session_trace",
    "get_audit_log",
    "get_billing_usage",
    "get_current_checkpoint_storage_usage",
    "get_external_weights_urls",
    "get_sampler",
    "get_session",
    "get_training_run",
    "get_training_run_by_tinker_path",
    "list_checkpoints",
    "list_sessions",
    "list_training_runs",
    "list_user_checkpoints",
    "publish_checkpoint_from_tinker_path",
    "set_checkpoint_ttl_from_tinker_path",
    "unpublish_checkpoint_from_tinker_path",
)
#: RestClient methods that 0.38 has only as future-returning calls.
_REST_ONLY_SYNC: Final = (
    "get_server_capabilities",
    "get_weights_info_by_tinker_path",
    "search_sessions",
    "whoami",
)
_ADMIN_TWINS: Final = (
    "get_audit_log",
    "get_billing_usage",
    "get_current_checkpoint_storage_usage",
)


class _RestFacade:
    """A native REST client reached through a host; methods are attached per class below."""

    _native_class: Any = NativeRestClient

    def __init__(
        self,
        _holder: Host | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        if _holder is not None:
            if not isinstance(_holder, Host):
                raise TypeError(f"{type(self).__name__}() takes base_url= and api_key=")
            self._host = _holder
            return
        self._host = Host(resolve_config(base_url=base_url, api_key=api_key))
        # A stand-alone client's host ends with the client (no session to finish).
        weakref.finalize(self, self._host.close_async)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._host.config.base_url}>"

    def _native(self) -> Any:
        return self._host.runtime.create_rest_client()

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> APIFuture[Any]:
        method = getattr(self._native(), name)
        future = self._host.spawn(lambda: method(*args, **kwargs))
        # A pending call keeps its client (and so the client's host) alive:
        # `RestClient().list_training_runs().result()` must not close the host under it.
        future._owner = self
        future.add_done_callback(_release_owner)
        return future

    def get_telemetry(self) -> Any:
        """Return the host runtime's telemetry reporter (None when telemetry is off)."""
        runtime = self._host.runtime
        return runtime.telemetry if runtime.config.telemetry else None


def _release_owner(future: Future[Any]) -> None:
    future._owner = None  # type: ignore[attr-defined]


def _future_method(native: Callable[..., Any], name: str) -> Callable[..., APIFuture[Any]]:
    @functools.wraps(native)
    def method(self: _RestFacade, *args: Any, **kwargs: Any) -> APIFuture[Any]:
        return self._call(name, args, kwargs)

    method.__doc__ = (
        f"{native.__doc__}\n\nReturns an APIFuture at once: call .result() or await it."
    )
    # The parameters are the native method's; it is not itself a coroutine function.
    method.__signature__ = inspect.signature(native)  # type: ignore[attr-defined]
    del method.__wrapped__
    return method


def _async_method(native: Callable[..., Any], name: str, owner: str) -> Callable[..., Any]:
    @functools.wraps(native)
    async def method(self: _RestFacade, *args: Any, **kwargs: Any) -> Any:
        return await self._call(name, args, kwargs)

    method.__name__ = method.__qualname__ = f"{name}_async"
    return deprecated(
        f"DEPRECATED: {owner}.{name}_async() is deprecated in tinker 0.38: use "
        f"`await {owner}.{name}(...)`; {name}() returns an APIFuture at once"
    )(method)


def _attach(
    cls: type[_RestFacade],
    twins: tuple[str, ...],
    only_sync: tuple[str, ...],
    marks: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]],
) -> None:
    native_class = cls._native_class
    for name in (*twins, *only_sync):
        method = _future_method(getattr(native_class, name), name)
        setattr(cls, name, marks[name](method) if name in marks else method)
    for name in twins:
        setattr(
            cls, f"{name}_async", _async_method(getattr(native_class, name), name, cls.__name__)
        )


class RestClient(_RestFacade):
    """REST resources (runs, checkpoints, sessions, samplers) with 0.38's conventions."""

    _native_class = NativeRestClient


class AdminClient(_RestFacade):
    """Organization-admin calls (audit log, billing) with 0.38's conventions."""

    _native_class = NativeAdminClient

    def _native(self) -> Any:
        return NativeAdminClient(self._host.runtime.transport)


def _moved_to_admin(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return deprecated(
        f"DEPRECATED: RestClient.{name}() is deprecated in tinker 0.38: call it on an "
        "AdminClient, which takes the same base_url and api_key"
    )


_attach(
    RestClient,
    _REST_TWINS,
    _REST_ONLY_SYNC,
    {name: _moved_to_admin(name) for name in _ADMIN_TWINS}
    | {
        "search_sessions": deprecated(
            "RestClient.search_sessions is experimental in tinker 0.38: its arguments and "
            "answer may change in any release",
            ExperimentalWarning,
        )
    },
)
_attach(AdminClient, _ADMIN_TWINS, (), {})
