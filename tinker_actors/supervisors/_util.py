"""Small shared pieces of the kernel: the private-constructor token and exit reasons."""

from __future__ import annotations

from typing import Final, TypeAlias, final

import msgspec

__all__ = ["NORMAL", "SHUTDOWN", "ExitReason", "Normal", "Shutdown", "describe_reason"]


@final
class _Private:
    """Proof that a constructor was called from inside the kernel.

    Runtime-owned classes (ActorRef, Reply, Mailbox, SupervisorRef, Registry) take this token as
    their first argument, so user code cannot build one by hand and bypass the bookkeeping that
    guarantees every caller an answer. A token (rather than trio's metaclass trick) keeps the
    classes generic and fully typed.
    """

    __slots__ = ()


PRIVATE: Final = _Private()


def check_private(token: object, cls: type) -> None:
    """Raise TypeError unless ``token`` is the kernel's private token."""
    if token is not PRIVATE:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor; "
            "obtain one from the runtime (start an actor, call, or open a supervisor)"
        )


class Normal(msgspec.Struct, frozen=True):
    """Exit reason: the actor returned, or stopped itself with ``Actor.stop()``."""


class Shutdown(msgspec.Struct, frozen=True):
    """Exit reason: the actor was stopped from outside (supervisor, runtime, or cancellation)."""


NORMAL: Final = Normal()
SHUTDOWN: Final = Shutdown()

#: Why an actor or child exited: normal, shutdown, or the exception it crashed with.
ExitReason: TypeAlias = Normal | Shutdown | BaseException


def describe_reason(reason: ExitReason) -> str:
    """Return a short human-readable description of an exit reason."""
    match reason:
        case Normal():
            return "normal"
        case Shutdown():
            return "shutdown"
        case _:
            return f"crashed with {type(reason).__name__}: {reason}"
