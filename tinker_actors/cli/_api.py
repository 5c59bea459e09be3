"""Talking to the service from a command: one SDK runtime per command, errors as one line.

:func:`call_api` opens :func:`tinker_actors.open` with the command line's connection settings,
runs an async function with an :class:`Api` (the runtime and its REST and admin clients) under
``trio.run``, and closes everything before returning. A session is created only if the function
needs one (sampling, checkpoint exports); it is finished when the runtime closes.

Every failure becomes a :class:`~tinker_actors.cli._group.CommandError` (exit status 1) or, for
input refused before anything was sent, :class:`~tinker_actors.cli._group.BadInput` (exit
status 2), with a one-line message that says what the command was doing, what the service said
and, where there is one, what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tinker_actors.cli._group import BadInput, CommandError, one_line
from tinker_actors.cli._options import api_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import click

    from tinker_actors import AdminClient, RestClient, Runtime

__all__ = ["Api", "call_api", "describe_error"]

T = TypeVar("T")


@dataclass(frozen=True)
class Api:
    """What a command's async function gets: the runtime and its REST clients."""

    runtime: Runtime
    rest: RestClient
    admin: AdminClient

    @property
    def base_url(self) -> str:
        """The service URL in use."""
        return self.runtime.config.base_url


def call_api(work: Callable[[Api], Awaitable[T]], *, action: str) -> T:
    """Run ``work`` against the service and return its result.

    Args:
        work: an async function of an :class:`Api`.
        action: what the command is doing, for error messages ("list training runs").

    Raises:
        CommandError: the service or the network failed (exit status 1).
        BadInput: an argument or the configuration was refused before sending (exit status 2).
    """
    import trio

    import tinker_actors
    from tinker_actors.clients import AdminClient

    settings = api_settings()
    overrides: dict[str, Any] = {}
    if settings.retries is not None:
        overrides["max_retries"] = settings.retries
    base_url = settings.base_url

    async def main() -> T:
        async with tinker_actors.open(
            base_url=settings.base_url, api_key=settings.api_key, **overrides
        ) as runtime:
            nonlocal base_url
            base_url = runtime.config.base_url
            api = Api(runtime, runtime.create_rest_client(), AdminClient(runtime.transport))
            return await work(api)

    try:
        return trio.run(main)
    except Exception as exc:
        error = describe_error(exc, action=action, base_url=base_url)
        if error is None:
            raise  # a bug: the root group reports it as unexpected
        raise error from None


def describe_error(
    exc: BaseException, *, action: str, base_url: str | None = None
) -> click.ClickException | None:
    """Return the one-line CLI error for a failure of ``action`` (None: not a known kind)."""
    from tinker_actors.errors import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BillingError,
        InternalServerError,
        InvalidInputError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        RequestFailedError,
        TinkerError,
    )

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # trio reports task failures in groups; the leaf says why
    if isinstance(exc, (CommandError, BadInput)):
        return exc
    where = base_url or "the service"
    if isinstance(exc, InvalidInputError):
        return BadInput(f"cannot {action}: {one_line(str(exc))}")
    if isinstance(exc, APIStatusError):
        detail = _detail(exc)
        status = exc.status_code
        if isinstance(exc, AuthenticationError):
            hint = "; check TINKER_API_KEY or --api-key"
            return CommandError(
                f"cannot {action}: {where} refused the credential ({status}: {detail}){hint}"
            )
        if isinstance(exc, PermissionDeniedError):
            return CommandError(f"cannot {action}: permission denied ({status}: {detail})")
        if isinstance(exc, NotFoundError):
            return CommandError(f"cannot {action}: not found ({status}: {detail})")
        if isinstance(exc, BillingError):
            return CommandError(f"cannot {action}: billing ({status}: {detail})")
        if isinstance(exc, RateLimitError):
            return CommandError(
                f"cannot {action}: rate limited ({status}: {detail}) after retries; try later"
            )
        if isinstance(exc, InternalServerError):
            return CommandError(
                f"cannot {action}: the service failed ({status}: {detail}) after retries"
            )
        return CommandError(f"cannot {action}: the service answered {status}: {detail}")
    if isinstance(exc, APITimeoutError):
        return CommandError(f"cannot {action}: {where} did not answer in time")
    if isinstance(exc, APIConnectionError):
        return CommandError(f"cannot {action}: cannot reach {where} ({one_line(exc.message)})")
    if isinstance(exc, RequestFailedError):
        return CommandError(f"cannot {action}: the service failed it ({one_line(exc.message)})")
    if isinstance(exc, TinkerError):
        return CommandError(f"cannot {action}: {one_line(str(exc))}")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        target = f" ({exc.filename})" if exc.filename else ""
        return CommandError(f"cannot {action}: {one_line(reason)}{target}")
    return None


def _detail(exc: Any) -> str:
    """The service's ``detail`` text, else the error's own message."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return one_line(body["detail"])
    return one_line(getattr(exc, "message", None) or str(exc))
