"""Client configuration: where the service is, who we are, and how patiently we talk to it.

A :class:`Config` is an immutable value built once, usually by :func:`resolve_config`, which
applies the same resolution order as the official SDK (protocol.md §1.1, §1.3, §9.8):

* base URL: the ``base_url`` argument, else ``TINKER_BASE_URL``, else the production URL;
  an empty ``TINKER_BASE_URL`` counts as unset, an empty ``base_url`` argument is refused, and
  a trailing ``/`` is stripped; a URL with whitespace or without a host is refused at once;
* credential: the ``api_key`` argument, else ``TINKER_API_KEY``, else the trimmed stdout of
  ``TINKER_CREDENTIAL_CMD``, else the default key in ``~/.tinker/credentials.json``. The
  credential must be an opaque key starting ``tml-`` or a JWT (``eyJ...``) that has not expired,
  made of visible ASCII characters only (it travels in a header);
* HTTP backend: the ``http_backend`` argument, else ``TINKER_HTTP_BACKEND``, else ``auto``
  when ``http2=True`` was asked for (only httpx speaks HTTP/2), else the default.

Every header value (the credential, ``default_headers``, the Cloudflare Access pair) is checked
here, when the config is built: a line break, control or non-ASCII character fails at once with
an :class:`~tinker_actors.errors.InvalidInputError` that names the problem and never the value,
instead of failing each request later with an error that quoted it.

The credential is held in a :class:`Secret`, whose ``repr`` and ``str`` never show it, so a
``Config`` can be printed, logged or put in an exception safely. Registries that need a key per
credential use :func:`key_fingerprint`, a sha256 digest, never the key itself.

Example::

    config = resolve_config(base_url="http://127.0.0.1:8000", api_key="tml-local")
    print(config)                 # ... api_key=Secret('<redacted>') ...
    config.api_key.reveal()       # 'tml-local', for the one place that sends it
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
import urllib.parse
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

from tinker_actors._credentials import default_credentials_path, stored_default_key
from tinker_actors._secrets import (
    CREDENTIAL_CMD_TIMEOUT,
    Secret,
    check_api_key,
    check_key_shape,
    credential_from_output,
    header_value_problem,
    jwt_claims,
    key_fingerprint,
    run_credential_cmd,
    secret_forms,
)
from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = [
    "CREDENTIAL_CMD_TIMEOUT",
    "DEFAULT_BASE_URL",
    "Config",
    "Secret",
    "check_api_key",
    "credential_from_output",
    "default_credentials_path",
    "display_url",
    "jwt_claims",
    "key_fingerprint",
    "resolve_base_url",
    "resolve_config",
    "secret_forms",
]

DEFAULT_BASE_URL: Final = "https://tinker.thinkingmachines.dev/services/tinker-prod"
_TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
CredentialSource = Literal["api_key", "credential_cmd"]
HttpBackend = Literal["auto", "h11", "httpx"]
_HTTP_BACKENDS: Final = ("auto", "h11", "httpx")


_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _check_default_headers(headers: Mapping[str, str]) -> None:
    """Refuse header names and values h11/httpx would refuse at send time (values unquoted)."""
    for position, (name, value) in enumerate(headers.items()):
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInputError("default_headers must map str header names to str values")
        if not name or not set(name) <= _TOKEN_CHARS:
            raise InvalidInputError(
                f"default_headers entry {position} has a name that is not an HTTP header name "
                "(letters, digits and !#$%&'*+-.^_`|~ only, no spaces or colons)"
            )
        problem = header_value_problem(value, allow_spaces=True)
        if problem is not None:
            raise InvalidInputError(
                f"the value of default header {name!r} cannot be sent in an HTTP header: it has "
                f"{problem}. (The value is not shown, since headers often carry credentials.)"
            )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """Everything the transport needs to reach the service; immutable.

    Attributes:
        base_url: the API root, without a trailing ``/``; paths start with ``/api/v1/``.
        api_key: the credential (``tml-...`` key or JWT), sent in ``X-API-Key``.
        api_key_source: where the credential came from, for error messages (never the key).
        timeout: default total per-request timeout in seconds; sent as
            ``x-stainless-read-timeout`` via ``str()``, so ``60`` stays ``"60"``.
        connect_timeout: seconds allowed to open a connection.
        max_retries: HTTP-layer retries per logical request (protocol.md §7.1).
        default_headers: headers merged over the standard set on every request.
        max_connections: httpx pool size.
        max_keepalive_connections: idle connections kept for reuse.
        keepalive_expiry: seconds an idle connection is kept.
        http2: negotiate HTTP/2 (TLS only; plain ``http://`` is always HTTP/1.1); needs
            ``http_backend="httpx"``.
        http_backend: ``"h11"``, the lean HTTP/1.1 transport of
            :mod:`tinker_actors.transport._h11`; ``"httpx"``, httpx's own (httpcore)
            transport; or ``"auto"`` (the default; ``TINKER_HTTP_BACKEND``): ``h11`` unless
            HTTP/2 is asked for or a proxy is configured in the environment, which only the
            httpx transport supports.
        jwt_auth: exchange the credential for a JWT first (server flag ``pjwt_auth_enabled``).
        jwt_credential_source: what the exchange presents: the api key, or a fresh run of
            ``credential_cmd`` (server flag ``credential_default_source``).
        credential_cmd: ``TINKER_CREDENTIAL_CMD``, kept for JWT exchanges that need it.
        billing_max_pause: seconds to keep retrying through HTTP 402 before failing.
        project_id: ``TINKER_PROJECT_ID``, the default project for new sessions.
        tags: ``TINKER_TAGS``, session tags.
        telemetry: send client telemetry (``TINKER_TELEMETRY``, default on).
        cf_access_client_id: Cloudflare Access client id header, when set.
        cf_access_client_secret: Cloudflare Access client secret header, when set.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: Secret
    api_key_source: str = "the api_key argument"
    timeout: float = 60
    connect_timeout: float = 5.0
    max_retries: int = 10
    default_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_connections: int = 1000
    max_keepalive_connections: int = 20
    keepalive_expiry: float = 5.0
    http2: bool = False
    http_backend: HttpBackend = "auto"
    jwt_auth: bool = False
    jwt_credential_source: CredentialSource = "api_key"
    credential_cmd: str | None = dataclasses.field(default=None, repr=False)
    billing_max_pause: float = 3600.0
    project_id: str | None = None
    tags: tuple[str, ...] = ()
    telemetry: bool = True
    cf_access_client_id: str | None = None
    cf_access_client_secret: Secret | None = None

    def __repr__(self) -> str:
        # the generated repr, with credentials in the URL masked like the key itself
        parts = []
        for f in dataclasses.fields(self):
            if f.repr:
                value = getattr(self, f.name)
                shown = display_url(value) if f.name == "base_url" else value
                parts.append(f"{f.name}={shown!r}")
        return f"Config({', '.join(parts)})"

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, Secret):
            raise TypeError(
                "Config.api_key must be a Secret; build configs with resolve_config(api_key=...)"
            )
        _check_base_url(self.base_url)
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        secret: object = self.cf_access_client_secret
        if isinstance(secret, str):  # resolve_config(cf_access_client_secret="...") passes a str
            secret = Secret(secret)
            object.__setattr__(self, "cf_access_client_secret", secret)
        elif secret is not None and not isinstance(secret, Secret):
            raise InvalidInputError(
                f"cf_access_client_secret must be a str, got {type(secret).__name__}"
            )
        check_key_shape(self.api_key.reveal(), self.api_key_source)
        _positive("timeout", self.timeout)
        _positive("connect_timeout", self.connect_timeout)
        _positive("billing_max_pause", self.billing_max_pause, allow_zero=True)
        _positive("keepalive_expiry", self.keepalive_expiry, allow_zero=True)
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidInputError(f"max_retries must be an int, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise InvalidInputError(
                f"max_retries must be >= 0 (0 disables retries), got {self.max_retries}"
            )
        if self.max_connections < 1 or self.max_keepalive_connections < 0:
            raise InvalidInputError(
                "need max_connections >= 1 and max_keepalive_connections >= 0, got "
                f"{self.max_connections} and {self.max_keepalive_connections}"
            )
        if self.http_backend not in _HTTP_BACKENDS:
            raise InvalidInputError(
                f"http_backend must be 'auto', 'h11' or 'httpx', got {self.http_backend!r} "
                "(check TINKER_HTTP_BACKEND)"
            )
        if self.http2 and self.http_backend == "h11":
            raise InvalidInputError(
                f"http2=True needs http_backend='httpx' (the {self.http_backend!r} backend "
                "speaks HTTP/1.1 only); set http_backend='httpx' or TINKER_HTTP_BACKEND=httpx"
            )
        if self.jwt_credential_source == "credential_cmd" and not self.credential_cmd:
            raise InvalidInputError(
                "jwt_credential_source='credential_cmd' needs credential_cmd "
                "(set TINKER_CREDENTIAL_CMD to a command that prints a credential)"
            )
        headers = dict(self.default_headers)
        _check_default_headers(headers)
        for what, value in (
            ("cf_access_client_id", self.cf_access_client_id),
            ("cf_access_client_secret", secret.reveal() if isinstance(secret, Secret) else None),
        ):
            problem = None if value is None else header_value_problem(value, allow_spaces=False)
            if problem is not None:
                raise InvalidInputError(
                    f"{what} cannot be sent in an HTTP header: it has {problem} (value not shown)"
                )
        object.__setattr__(self, "default_headers", MappingProxyType(headers))
        object.__setattr__(self, "tags", tuple(self.tags))


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise InvalidInputError(f"{name} must be > 0 seconds, got {value!r}")


_USERINFO: Final = re.compile(r"(?<=//)[^/?#@]*@")


def display_url(url: str) -> str:
    """Return ``url`` fit for messages and reprs: any ``user:password@`` becomes ``***@``."""
    return _USERINFO.sub("***@", url, count=1)


def _check_base_url(url: object) -> None:
    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError(
            "base_url is empty: pass the API root (e.g. 'http://127.0.0.1:8000'), or leave it "
            "out (None) to use TINKER_BASE_URL or the default service"
        )
    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"base_url must start with http:// or https://, got {display_url(url)!r}"
        )
    for index, char in enumerate(url):
        if char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F:
            raise InvalidInputError(
                f"base_url has whitespace or a control character at position {index}; "
                "remove it (URLs cannot contain spaces; percent-encode one as %20 in a path)"
            )
    if not urllib.parse.urlsplit(url).hostname:
        raise InvalidInputError("base_url has no host; pass e.g. 'https://host[:port][/path]'")


def resolve_base_url(base_url: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Return the service root the SDK uses: ``base_url``, else ``TINKER_BASE_URL``, else
    :data:`DEFAULT_BASE_URL`, without a trailing ``/``.

    Raises:
        InvalidInputError: the URL chosen is malformed (the message says how).
    """
    env = os.environ if env is None else env
    if base_url is not None:
        # An explicit empty base_url used to fall back to the production service silently.
        _check_base_url(base_url)
    resolved = base_url or _env(env, "TINKER_BASE_URL") or DEFAULT_BASE_URL
    _check_base_url(resolved)
    return resolved.rstrip("/")


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


_FIELD_NAMES: Final = frozenset(f.name for f in dataclasses.fields(Config))


def resolve_config(
    *,
    base_url: str | None = None,
    api_key: str | Secret | None = None,
    env: Mapping[str, str] | None = None,
    credentials_path: Path | None = None,
    now: float | None = None,
    **overrides: Any,
) -> Config:
    """Build a :class:`Config` from arguments, the environment and the credentials file.

    Args:
        base_url: the API root; else ``TINKER_BASE_URL``; else :data:`DEFAULT_BASE_URL`.
        api_key: the credential; else ``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD``, then the
            stored default key.
        env: the environment to read (default ``os.environ``), injectable for tests.
        credentials_path: the credentials file (default :func:`default_credentials_path`).
        now: the POSIX time used to check a JWT credential's ``exp`` (default: now).
        **overrides: any other :class:`Config` field, winning over the environment.

    Raises:
        InvalidInputError: no credential was found, or the one found is malformed or expired.
            The message names where it came from and how to fix it, never the key.
        TypeError: an override names no Config field.
    """
    env = os.environ if env is None else env
    now = time.time() if now is None else now
    unknown = set(overrides) - _FIELD_NAMES
    if unknown or {"api_key", "base_url", "api_key_source"} & set(overrides):
        bad = sorted(unknown | ({"api_key_source"} & set(overrides)))
        raise TypeError(
            f"resolve_config() got unknown or reserved settings {bad}; valid ones are "
            f"{sorted(_FIELD_NAMES - {'api_key', 'base_url', 'api_key_source'})}"
        )

    resolved_url = resolve_base_url(base_url, env)
    credential_cmd = _env(env, "TINKER_CREDENTIAL_CMD")

    key: str | None
    if isinstance(api_key, Secret):
        key, source = api_key.reveal() or None, "the api_key argument"
    else:
        key, source = api_key or None, "the api_key argument"
    if key is None and (key := _env(env, "TINKER_API_KEY")) is not None:
        source = "TINKER_API_KEY"
    if key is None and credential_cmd is not None:
        key, source = (
            run_credential_cmd(credential_cmd, CREDENTIAL_CMD_TIMEOUT),
            ("TINKER_CREDENTIAL_CMD"),
        )
    if key is None:
        path = credentials_path if credentials_path is not None else default_credentials_path()
        key, source = stored_default_key(path), f"the credentials file {path}"
    if key is None:
        raise InvalidInputError(
            "No Tinker API key found. Pass api_key=..., set the TINKER_API_KEY environment "
            "variable, set TINKER_CREDENTIAL_CMD, or store a key with `tinker-actors auth login` "
            "(or `tinker auth login`)."
        )
    check_api_key(key, source, now=now)

    settings: dict[str, Any] = {
        "credential_cmd": credential_cmd,
        "project_id": _env(env, "TINKER_PROJECT_ID"),
        "telemetry": env.get("TINKER_TELEMETRY", "1").strip().lower() in _TRUE_WORDS,
    }
    if (tags := env.get("TINKER_TAGS")) is not None:
        settings["tags"] = tuple(dict.fromkeys(t.strip() for t in tags.split(",") if t.strip()))
    if (cf_id := _env(env, "CLOUDFLARE_ACCESS_CLIENT_ID")) is not None:
        settings["cf_access_client_id"] = cf_id
    if (cf_secret := _env(env, "CLOUDFLARE_ACCESS_CLIENT_SECRET")) is not None:
        settings["cf_access_client_secret"] = Secret(cf_secret)
    if (backend := _env(env, "TINKER_HTTP_BACKEND")) is not None:
        settings["http_backend"] = backend.strip().lower()
    elif overrides.get("http2") and "http_backend" not in overrides:
        settings["http_backend"] = "httpx"  # the one backend that speaks HTTP/2 (auto would too)
    settings.update(overrides)
    return Config(base_url=resolved_url, api_key=Secret(key), api_key_source=source, **settings)
