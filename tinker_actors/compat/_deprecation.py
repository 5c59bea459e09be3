"""Deprecated and experimental methods, marked the way 0.38 marks them.

0.38 decorates each such method with ``typing_extensions.deprecated``. What code can observe,
and so what this keeps:

* the warning is raised when the method is *called*, before an ``async def``'s coroutine exists,
  and names the caller's line: a filter by module or line, ``pytest.warns`` around the call,
  and the default "once per location" display all see it where 0.38's appears;
* the method carries the message as ``__deprecated__`` (PEP 702);
* an ``async def`` stays a coroutine function to ``asyncio.iscoroutinefunction`` (and to
  ``inspect`` from Python 3.12, as in 0.38).

Every message starts with ``DEPRECATED:`` as 0.38's do (experimental ones excepted), so a
filter such as ``message="DEPRECATED"`` matches both SDKs; the wording is ours.
"""

from __future__ import annotations

import asyncio.coroutines
import functools
import inspect
import sys
import warnings
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable

F = TypeVar("F", bound="Callable[..., Any]")

__all__ = ["deprecated", "is_async"]


def deprecated(message: str, category: type[Warning] = FutureWarning) -> Callable[[F], F]:
    """Mark ``function`` deprecated (or, with ``ExperimentalWarning``, experimental)."""

    def mark(function: F) -> F:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            warnings.warn(message, category, stacklevel=2)
            return function(*args, **kwargs)

        if is_async(function):
            _mark_coroutine_function(call)
        call.__deprecated__ = message  # type: ignore[attr-defined]
        return cast("F", call)

    return mark


def is_async(function: object) -> bool:
    """Say whether ``function`` (or what it wraps) is an ``async def``."""
    return inspect.iscoroutinefunction(inspect.unwrap(function))  # type: ignore[arg-type]


def _mark_coroutine_function(function: Callable[..., Any]) -> None:
    if sys.version_info >= (3, 12):
        inspect.markcoroutinefunction(function)
    else:  # what asyncio.iscoroutinefunction looks for before 3.12
        function._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", None)  # type: ignore[attr-defined]
