"""What the REST clients share: argument checks and the one-request call (protocol.md §3.5).

Every REST method validates its arguments with the checks here before anything is sent, so a
malformed id or page raises :class:`~tinker_actors.errors.InvalidInputError` locally; then it
makes exactly one logical request through :meth:`_Base._call`, which names the public method in
``x-sdk-method`` and leaves retries to the transport.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final, TypeVar

from tinker_actors.errors import InvalidInputError
from tinker_actors.transport import RequestOptions, Transport
from tinker_actors.types import TinkerPath

if TYPE_CHECKING:
    from collections.abc import Mapping

    import msgspec

__all__ = [
    "MAX_PAGE_LIMIT",
    "RestBase",
    "access_scope_param",
    "checked_checkpoint_id",
    "checked_tinker_path",
    "format_datetime",
    "nonempty",
    "page_params",
    "path_id",
    "rfc3339",
]

T = TypeVar("T")

#: The largest page a list call may ask for.
MAX_PAGE_LIMIT: Final = 1000
_V1: Final = "/api/v1"
_ACCESS_SCOPES: Final = ("owned", "accessible")
_CHECKPOINT_SEGMENTS: Final = ("weights", "sampler_weights", "external_weights")
# Characters that would end or split a URL path segment when interpolated unescaped.
_PATH_BREAKERS: Final = frozenset("/?#%\\") | frozenset(chr(c) for c in range(33))


# -- argument checks ------------------------------------------------------------------------------


def path_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be a non-empty string, got {value!r}")
    bad = sorted({c for c in value if c in _PATH_BREAKERS})
    if bad:
        raise InvalidInputError(
            f"{name} {value!r} contains {''.join(bad)!r}, which cannot appear in a URL path; "
            "pass the id exactly as the API returned it"
        )
    return value


def nonempty(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be a non-empty string, got {value!r}")
    return value


def checked_checkpoint_id(value: object) -> str:
    if not isinstance(value, str) or value.count("/") != 1:
        raise InvalidInputError(
            f"checkpoint_id must be '<segment>/<name>' (e.g. 'weights/step-10'), got {value!r}"
        )
    segment, name = value.split("/")
    if segment not in _CHECKPOINT_SEGMENTS:
        raise InvalidInputError(
            f"checkpoint_id {value!r} has segment {segment!r}; expected one of "
            f"{', '.join(_CHECKPOINT_SEGMENTS)}"
        )
    path_id("checkpoint name", name)
    return value


def checked_tinker_path(value: object) -> TinkerPath:
    path = TinkerPath.parse(value)  # type: ignore[arg-type]  # parse() checks the type itself
    path_id("training_run_id", path.training_run_id)
    path_id("checkpoint name", path.name)
    return path


def page_params(limit: object, offset: object) -> dict[str, object]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidInputError(f"limit must be an int from 0 to {MAX_PAGE_LIMIT}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInputError(f"offset must be an int >= 0, got {offset!r}")
    return {"limit": limit, "offset": offset}


def access_scope_param(value: object) -> str:
    if value not in _ACCESS_SCOPES:
        raise InvalidInputError(f"access_scope must be 'owned' or 'accessible', got {value!r}")
    return str(value)


def rfc3339(name: str, value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInputError(
        f"{name} must be a datetime or an RFC 3339 string such as '2026-07-13T00:00:00Z', "
        f"got {value!r}"
    )


def format_datetime(value: datetime) -> str:
    # The official client serializes through pydantic: UTC as "Z", other offsets kept.
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# -- the shared base ---------------------------------------------------------------------------


class RestBase:
    __slots__ = ("_kind", "_transport")

    def __init__(self, transport: Transport, *, _attribute_to: str | None = None) -> None:
        if not isinstance(transport, Transport):
            raise TypeError(f"expected a Transport, got {type(transport).__name__}")
        self._transport = transport
        # The class named in x-sdk-method: the outermost public caller's.
        self._kind = _attribute_to or type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._transport!r}>"

    async def _call(
        self,
        method: str,
        path: str,
        sdk_method: str,
        result: type[T] | None,
        *,
        params: Mapping[str, object] | None = None,
        json: msgspec.Struct | Mapping[str, object] | None = None,
        options: RequestOptions | None = None,
    ) -> T | None:
        response = await self._transport.request(
            method,
            _V1 + path,
            params=params,
            json=json,
            options=options,
            sdk_method=f"{self._kind}.{sdk_method}",
        )
        return None if result is None else response.decode(result)

    async def _get(
        self, path: str, sdk_method: str, result: type[T], params: Mapping[str, object] | None
    ) -> T:
        value = await self._call("GET", path, sdk_method, result, params=params)
        assert value is not None
        return value
