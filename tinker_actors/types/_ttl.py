"""Checkpoint time-to-live bounds shared by every request that sets one."""

from __future__ import annotations

from typing import Final

from tinker_actors.errors import InvalidInputError

__all__ = ["MAX_TTL_SECONDS", "MIN_TTL_SECONDS", "check_ttl_seconds"]

MIN_TTL_SECONDS: Final = 3600
"""The shortest checkpoint lifetime the API accepts: one hour."""
MAX_TTL_SECONDS: Final = 315_576_000
"""The longest: ten years of 365.25 days (the API documents "10 years")."""


def check_ttl_seconds(ttl_seconds: object) -> None:
    """Raise unless ``ttl_seconds`` is unset/None or an int between one hour and ten years.

    Raises:
        InvalidInputError: the value is out of range or not an integer.
    """
    if ttl_seconds is None or not isinstance(ttl_seconds, int | float):
        return  # UNSET / None mean "never expires"; msgspec checks the type itself.
    if isinstance(ttl_seconds, bool) or not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInputError(
            f"ttl_seconds must be between {MIN_TTL_SECONDS} (1 hour) and {MAX_TTL_SECONDS} "
            f"(10 years), got {ttl_seconds!r}; pass None for a checkpoint that never expires"
        )
