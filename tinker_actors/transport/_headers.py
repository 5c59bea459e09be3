"""The standard header set of protocol.md §1.2, query encoding, and header redaction.

Every request carries the same platform description the official SDK sends (so a server sees
the same header *set*), under our own product name::

    User-Agent: tinker-actors/0.1.0 (tinker-protocol 0.38.0)
    X-Stainless-Package-Version: 0.38.0
    X-Stainless-OS: Linux            X-Stainless-Arch: x64
    X-Stainless-Runtime: CPython     X-Stainless-Runtime-Version: 3.11.9
    X-Stainless-Async: async:trio

``X-Stainless-Package-Version`` (like ``x-sdk-version``) carries the official protocol version we
implement, :data:`~tinker_actors._version.PROTOCOL_VERSION`, since the service keys flags and
compatibility on it; ``User-Agent`` says who we really are.
"""

from __future__ import annotations

import functools
import platform
import sys
from typing import TYPE_CHECKING, Final

from tinker_actors._version import PROTOCOL_VERSION, __version__

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "API_KEY_HEADER",
    "IDEMPOTENCY_HEADER",
    "REDACTED",
    "SENSITIVE_HEADERS",
    "base_headers",
    "encode_query",
    "get_architecture",
    "get_platform",
    "is_credential_header",
    "redact_headers",
    "shareable_headers",
    "user_agent",
]

API_KEY_HEADER: Final = "X-API-Key"
IDEMPOTENCY_HEADER: Final = "X-Idempotency-Key"
REDACTED: Final = "<redacted>"
#: Headers whose values never reach a log line.
SENSITIVE_HEADERS: Final = frozenset(
    {"x-api-key", "authorization", "cf-access-client-secret", "x-tinker-weights-access-token"}
)


# Name fragments of headers that carry a credential (Authorization, X-API-Key, Cookie,
# CF-Access-Client-Secret, X-Auth-Token, X-Session-Token, ...): they never leave the process.
_CREDENTIAL_PARTS: Final = (
    "auth",
    "cookie",
    "credential",
    "key",
    "password",
    "secret",
    "session",
    "signature",
    "token",
)


def is_credential_header(name: str) -> bool:
    """Say whether header ``name`` may carry a credential (by name: false positives are fine)."""
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or any(part in lowered for part in _CREDENTIAL_PARTS)


def shareable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the headers safe to hand to another process (pickles, sampler handles).

    Every header that may carry a credential is dropped: the receiving process sends its own
    credentials, read from its own environment or config, as the official SDK's does.
    """
    return {name: value for name, value in headers.items() if not is_credential_header(name)}


def user_agent() -> str:
    """Return our User-Agent: ``tinker-actors/<version> (tinker-protocol <protocol version>)``."""
    return f"tinker-actors/{__version__} (tinker-protocol {PROTOCOL_VERSION})"


def get_platform() -> str:
    """Name the OS the way the ``X-Stainless-OS`` header does."""
    try:
        system = platform.system().lower()
        name = platform.platform().lower()
    except Exception:  # platform probing must never break a request
        return "Unknown"
    if "iphone" in name or "ipad" in name:
        return "iOS"
    if system == "darwin":
        return "MacOS"
    if system == "windows":
        return "Windows"
    if "android" in name:
        return "Android"
    if system == "linux":
        return "Linux"
    if system == "freebsd":
        return "FreeBSD"
    if system == "openbsd":
        return "OpenBSD"
    return f"Other:{name}" if name else "Unknown"


def get_architecture() -> str:
    """Name the CPU the way the ``X-Stainless-Arch`` header does."""
    try:
        machine = platform.machine().lower()
    except Exception:  # platform probing must never break a request
        return "unknown"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine == "arm":
        return "arm"
    if machine in ("x86_64", "amd64"):
        return "x64"
    if sys.maxsize <= 2**32:
        return "x32"
    return f"other:{machine}" if machine else "unknown"


@functools.cache
def _platform_headers() -> tuple[tuple[str, str], ...]:
    return (
        ("X-Stainless-Package-Version", PROTOCOL_VERSION),
        ("X-Stainless-OS", get_platform()),
        ("X-Stainless-Arch", get_architecture()),
        ("X-Stainless-Runtime", platform.python_implementation()),
        ("X-Stainless-Runtime-Version", platform.python_version()),
    )


def base_headers(
    *,
    cf_access_client_id: str | None = None,
    cf_access_client_secret: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the headers every request starts from, user overrides merged last."""
    headers = {"Accept": "application/json", "User-Agent": user_agent()}
    headers.update(_platform_headers())
    headers["X-Stainless-Async"] = "async:trio"
    if cf_access_client_id:
        headers["CF-Access-Client-Id"] = cf_access_client_id
    if cf_access_client_secret:
        headers["CF-Access-Client-Secret"] = cf_access_client_secret
    if overrides:
        # Header names are case-insensitive: an override replaces, never duplicates.
        for name, value in overrides.items():
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value
    return headers


def _query_value(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def encode_query(params: Mapping[str, object]) -> list[tuple[str, str]]:
    """Encode query parameters the Stainless way: lists comma-joined, None dropped.

    Booleans become ``true``/``false``; everything else is ``str()``-ed.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            pairs.append((key, ",".join(_query_value(v) for v in value)))
        else:
            pairs.append((key, _query_value(value)))
    return pairs


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of ``headers`` safe to log: credential-bearing values replaced."""
    return {
        name: (REDACTED if name.lower() in SENSITIVE_HEADERS else value)
        for name, value in headers.items()
    }
