"""What ``auth login`` and ``auth logout`` ask the service: the key's own record, or its removal.

Both endpoints act on the key the request presents (``GET`` / ``DELETE
/api/v1/auth/apikey/me``, protocol.md §11). They run before a credential is stored, or with
only a raw key in hand, so they go over one plain HTTP request, not the SDK's runtime (which
resolves a credential first and, on a JWT service, would present a JWT instead of the key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tinker_actors.cli._group import CommandError, one_line
from tinker_actors.config import display_url

__all__ = ["KeyRecord", "delete_key", "read_key"]

_PATH: Final = "/api/v1/auth/apikey/me"
_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class KeyRecord:
    """What the service says of a key: its id, name and note, and who it belongs to."""

    key_id: str
    name: str
    note: str | None
    details: dict[str, Any]

    @property
    def email(self) -> str:
        return str(self.details["user_details"]["email"])

    @property
    def organization(self) -> str:
        return str(self.details["org_details"]["name"])


def _request(method: str, base_url: str, key: str, action: str) -> Any:
    import httpx

    where = display_url(base_url)
    try:
        with httpx.Client(timeout=_TIMEOUT) as client:
            response = client.request(method, base_url + _PATH, headers={"X-API-Key": key})
    except httpx.HTTPError as exc:
        raise CommandError(
            f"cannot {action}: the service at {where} did not answer ({type(exc).__name__}: "
            f"{one_line(str(exc)) or 'no detail'}); check --base-url / TINKER_BASE_URL"
        ) from None
    if not response.is_success:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        said = f": {one_line(str(detail))}" if detail else ""
        raise CommandError(f"cannot {action}: {where} answered {response.status_code}{said}")
    try:
        return response.json()
    except ValueError:
        raise CommandError(f"cannot {action}: {where} answered with something not JSON") from None


def read_key(base_url: str, key: str) -> KeyRecord:
    """Ask the service about ``key``: it must accept it and say whose it is."""
    action = "check the API key"
    body = _request("GET", base_url, key, action)
    try:
        details = body["details"]
        record = KeyRecord(
            key_id=str(body["key_id"]),
            name=str(body["name"]),
            note=None if body.get("note") is None else str(body["note"]),
            details=details,
        )
        _ = record.email, record.organization
    except (KeyError, TypeError) as exc:
        raise CommandError(
            f"cannot {action}: {display_url(base_url)} answered without the key's "
            f"{exc} (expected key_id, name, details.org_details.name, details.user_details.email)"
        ) from None
    return record


def delete_key(base_url: str, key: str) -> None:
    """Delete ``key`` on the service (it revokes the key presented, nothing else)."""
    _request("DELETE", base_url, key, "delete the API key on the service")
