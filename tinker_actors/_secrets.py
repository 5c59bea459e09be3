"""Credentials as values: a :class:`Secret` that never shows itself, the checks a key must pass
before it is sent or stored, the claims of a JWT, and the ``TINKER_CREDENTIAL_CMD`` run.

Every message here names where a credential came from and what is wrong with it, never the
credential: messages end up in logs and tracebacks. :func:`secret_forms` gives the ways a
secret can still appear in text that others wrote (h11's and httpx's errors quote header
values), for redaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import subprocess
import time
import urllib.parse
from typing import Any, Final, final

from tinker_actors.errors import InvalidInputError

__all__ = [
    "CREDENTIAL_CMD_TIMEOUT",
    "Secret",
    "check_api_key",
    "check_key_shape",
    "credential_from_output",
    "header_value_problem",
    "jwt_claims",
    "key_fingerprint",
    "run_credential_cmd",
    "secret_forms",
]

#: Seconds ``TINKER_CREDENTIAL_CMD`` may run before resolution gives up on it.
CREDENTIAL_CMD_TIMEOUT: Final = 30.0

_API_KEY_PREFIX: Final = "tml-"
_JWT_PREFIX: Final = "eyJ"


@final
class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings.

    Call :meth:`reveal` at the single point where the value must really be used (the
    ``X-API-Key`` header). Equality is constant-time; the hash is of the fingerprint.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the secret value itself."""
        return self._value

    def fingerprint(self) -> str:
        """Return :func:`key_fingerprint` of the value."""
        return key_fingerprint(self._value)

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return format(repr(self), format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __bool__(self) -> bool:
        return bool(self._value)


def key_fingerprint(api_key: str | Secret) -> str:
    """Return the hex sha256 of a credential, safe to use as a registry key or to log."""
    raw = api_key.reveal() if isinstance(api_key, Secret) else api_key
    return hashlib.sha256(raw.encode()).hexdigest()


def secret_forms(secret: str) -> tuple[str, ...]:
    """Return the ways ``secret`` can appear in text, longest first, for redaction.

    Besides the value itself: its ``repr`` escaping (``\\n`` for a newline), the ``repr`` of its
    UTF-8 bytes (what h11 and httpx quote in "Illegal header value b'...'"), its JSON escaping
    and its URL encodings (``%0A``, ``+``). A message that quotes the secret in any of these
    forms is redacted as completely as one that quotes it verbatim.
    """
    if not secret:
        return ()
    forms = {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        urllib.parse.quote(secret),
    }
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def header_value_problem(value: str, *, allow_spaces: bool) -> str | None:
    """Say what makes ``value`` unfit for an HTTP header, without quoting it; None when fit.

    Header values are visible ASCII (RFC 9110 field-value), with inner spaces and tabs where
    ``allow_spaces``; CR and LF would split the header (injection), and h11 refuses them and
    other control characters only when the request is sent, quoting the value in its error.
    """
    if not value:
        return "it is empty"
    for index, char in enumerate(value):
        code = ord(char)
        if char in "\r\n":
            return f"a line break at position {index}"
        if char in " \t":
            if not allow_spaces:
                return f"whitespace at position {index}"
            if index == 0 or index == len(value) - 1:
                return f"leading or trailing whitespace at position {index}"
            continue
        if code < 0x20 or code == 0x7F:
            return f"a control character at position {index}"
        if code > 0x7E:
            return f"a non-ASCII character at position {index}"
    return None


def jwt_claims(token: str) -> dict[str, Any]:
    """Decode a JWT's payload claims without verifying its signature.

    The client only reads claims (``exp``, ``iat``, ``sub``...) of tokens the server issued or
    the user supplied; the server verifies signatures.

    Raises:
        InvalidInputError: the token is not three dot-separated parts whose middle one is
            base64url-encoded JSON object. The message never contains the token.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidInputError(
            f"the JWT is malformed: expected 3 dot-separated parts, got {len(parts)}"
        )
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidInputError(
            f"the JWT payload is not base64url-encoded JSON ({type(exc).__name__})"
        ) from None
    if not isinstance(claims, dict):
        raise InvalidInputError("the JWT payload is not a JSON object")
    return claims


def _jwt_expiry(token: str) -> float | None:
    """Return the ``exp`` claim of a JWT, or None when it has none or it is not a number."""
    exp = jwt_claims(token).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def check_api_key(key: str, source: str, *, now: float | None = None) -> None:
    """Refuse a credential that cannot be one before it is sent or stored.

    Raises:
        InvalidInputError: ``key`` is empty, cannot go in a header, lacks the ``tml-`` prefix
            (and is no JWT), or is an expired JWT; the message names ``source``, never the key.
    """
    if not key:
        raise InvalidInputError(f"The api_key from {source} is empty.")
    check_key_shape(key, source)
    if key.startswith(_JWT_PREFIX):
        try:
            exp = _jwt_expiry(key)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"The api_key from {source} looks like a JWT but cannot be read: {exc}"
            ) from None
        if exp is not None and (time.time() if now is None else now) >= exp:
            raise InvalidInputError(
                f"The api_key JWT from {source} has expired. Pass a fresh one, or remove it "
                "and set TINKER_CREDENTIAL_CMD to a command that prints one."
            )


def check_key_shape(key: str, source: str) -> None:
    problem = header_value_problem(key, allow_spaces=False)
    if problem is not None:
        raise InvalidInputError(
            f"The api_key from {source} cannot be sent in an HTTP header: it has {problem}. "
            "(The key is not shown.) Copy the key again from the Tinker console, or run "
            "`tinker-actors auth login`."
        )
    if key.startswith(_API_KEY_PREFIX) or key.startswith(_JWT_PREFIX):
        return
    raise InvalidInputError(
        f"The api_key from {source} must start with the 'tml-' prefix (or be a JWT starting "
        "'eyJ'). Copy the key from the Tinker console, or run `tinker-actors auth login`."
    )


def run_credential_cmd(cmd: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            cmd,
            shell=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidInputError(
            f"TINKER_CREDENTIAL_CMD did not finish within {timeout:g} s; fix the command "
            "or unset TINKER_CREDENTIAL_CMD."
        ) from None
    except OSError as exc:
        raise InvalidInputError(
            f"TINKER_CREDENTIAL_CMD could not be started ({type(exc).__name__}); fix the "
            "command or unset TINKER_CREDENTIAL_CMD."
        ) from None
    return credential_from_output(done.returncode, done.stdout)


def credential_from_output(returncode: int, stdout: bytes) -> str:
    """Return the credential a ``TINKER_CREDENTIAL_CMD`` run printed.

    Raises:
        InvalidInputError: the command failed or printed nothing. Its output is never quoted:
            stdout (and stderr) may hold credentials, so only the exit status is reported.
    """
    if returncode != 0:
        raise InvalidInputError(
            f"TINKER_CREDENTIAL_CMD exited with status {returncode}; run it in a shell "
            "to see why, or unset TINKER_CREDENTIAL_CMD."
        )
    credential = stdout.decode(errors="replace").strip()
    if not credential:
        raise InvalidInputError("TINKER_CREDENTIAL_CMD printed an empty credential.")
    problem = header_value_problem(credential, allow_spaces=False)
    if problem is not None:
        raise InvalidInputError(
            f"TINKER_CREDENTIAL_CMD printed a credential that cannot be sent in an HTTP header: "
            f"it has {problem} (not shown). Make the command print the credential alone."
        )
    return credential
