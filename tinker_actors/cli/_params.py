"""Argument types checked while the command line is parsed (bad ones exit 2, nothing sent).

* :class:`CheckpointPath`: a ``tinker://<run>/<weights|sampler_weights|external_weights>/<name>``
  path, optionally limited to some kinds;
* :class:`ByteSize`: ``1048576``, ``500M``, ``16GiB``...;
* :class:`Duration`: ``3600``, ``90m``, ``12h``, ``30d``, ``1y`` (to seconds);
* :class:`Timestamp`: an ISO 8601 date or time, UTC unless it says otherwise.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import click

if TYPE_CHECKING:  # click >= 8.2 types ParamType by its value; older click is not generic
    _Str = click.ParamType[str, Any]
    _Int = click.ParamType[int, Any]
    _Time = click.ParamType[datetime, Any]
else:
    _Str = _Int = _Time = click.ParamType

__all__ = ["ByteSize", "CheckpointPath", "Duration", "Timestamp"]

_SEGMENTS: Final = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}
_SIZE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_DURATION: Final = re.compile(r"^\s*(\d+)\s*([smhdwy]?)\s*$", re.IGNORECASE)
_SECONDS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


class CheckpointPath(_Str):
    """A ``tinker://`` checkpoint path; the value stays the path string."""

    name = "tinker://PATH"

    def __init__(self, *kinds: str) -> None:
        self.kinds = kinds  # checkpoint_type values allowed; none: any

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        parts = text.removeprefix("tinker://").split("/")
        if not text.startswith("tinker://") or len(parts) != 3 or not all(parts):
            self.fail(
                f"{text!r} is not a checkpoint path; expected "
                "tinker://<run-id>/<weights|sampler_weights|external_weights>/<name>",
                param,
                ctx,
            )
        kind = _SEGMENTS.get(parts[1])
        if kind is None:
            self.fail(
                f"{text!r} has segment {parts[1]!r}; expected weights, sampler_weights or "
                "external_weights",
                param,
                ctx,
            )
        if self.kinds and kind not in self.kinds:
            allowed = ", ".join(s for s, k in _SEGMENTS.items() if k in self.kinds)
            self.fail(
                f"{text!r} is a {parts[1]} checkpoint; this command takes {allowed}", param, ctx
            )
        return text


class ByteSize(_Int):
    """A size in bytes, with an optional K/M/G/T suffix (powers of 1024)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a size such as 1048576, 500M or 16G", param, ctx)
        number, prefix = float(match[1]), match[2].lower()
        return int(number * 1024 ** " kmgt".index(prefix or " "))


class Duration(_Int):
    """A duration in seconds, with an optional s/m/h/d/w/y suffix."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _DURATION.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration such as 3600, 12h or 30d", param, ctx)
        return int(match[1]) * _SECONDS[match[2].lower()]


class Timestamp(_Time):
    """An ISO 8601 date or date-time; UTC unless it carries an offset."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2024-06-01T08:00:00Z", param, ctx)
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
