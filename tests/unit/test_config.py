"""Config resolution (protocol.md §1.1, §1.3, §9.8) and the secrecy of the credential."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import pytest

from tinker_actors.config import (
    DEFAULT_BASE_URL,
    Config,
    Secret,
    jwt_claims,
    key_fingerprint,
    resolve_config,
)
from tinker_actors.errors import InvalidInputError

KEY = "tml-config-test-SECRET-0123456789"
NOW = 1_700_000_000.0


def make_jwt(claims: dict[str, object]) -> str:
    def part(obj: object) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.fixture
def no_file(tmp_path: Path) -> Path:
    return tmp_path / "absent" / "credentials.json"


def write_credentials(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def py_cmd(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


# -- base URL -------------------------------------------------------------------------------


def test_defaults(no_file: Path) -> None:
    config = resolve_config(api_key=KEY, env={}, credentials_path=no_file)
    assert config.base_url == DEFAULT_BASE_URL
    assert config.timeout == 60
    assert str(config.timeout) == "60"
    assert config.connect_timeout == 5.0
    assert config.max_retries == 10
    assert (config.max_connections, config.max_keepalive_connections) == (1000, 20)
    assert config.http2 is False
    assert config.jwt_auth is False
    assert config.telemetry is True
    assert config.tags == ()
    assert config.project_id is None
    assert config.cf_access_client_id is None
    assert config.cf_access_client_secret is None
    assert config.api_key_source == "the api_key argument"


@pytest.mark.parametrize(
    ("arg", "env", "expected"),
    [
        ("http://arg:1/", {"TINKER_BASE_URL": "http://env:2"}, "http://arg:1"),
        (None, {"TINKER_BASE_URL": "http://env:2///"}, "http://env:2"),
        (None, {"TINKER_BASE_URL": ""}, DEFAULT_BASE_URL),
        ("https://x.example/services/tinker", {}, "https://x.example/services/tinker"),
    ],
)
def test_base_url_resolution(
    arg: str | None, env: dict[str, str], expected: str, no_file: Path
) -> None:
    config = resolve_config(base_url=arg, api_key=KEY, env=env, credentials_path=no_file)
    assert config.base_url == expected


def test_base_url_must_be_http(no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="http:// or https://"):
        resolve_config(base_url="ftp://nope", api_key=KEY, env={}, credentials_path=no_file)


# -- credential resolution order ----------------------------------------------------------


def test_argument_beats_env(no_file: Path) -> None:
    config = resolve_config(
        api_key=KEY, env={"TINKER_API_KEY": "tml-env"}, credentials_path=no_file
    )
    assert config.api_key.reveal() == KEY


def test_env_used_when_no_argument_and_empty_counts_as_unset(no_file: Path) -> None:
    config = resolve_config(api_key="", env={"TINKER_API_KEY": "tml-env"}, credentials_path=no_file)
    assert config.api_key.reveal() == "tml-env"
    assert config.api_key_source == "TINKER_API_KEY"


def test_credential_cmd_runs_when_no_key(no_file: Path) -> None:
    env = {"TINKER_CREDENTIAL_CMD": py_cmd("print('  tml-from-cmd  ')")}
    config = resolve_config(env=env, credentials_path=no_file)
    assert config.api_key.reveal() == "tml-from-cmd"
    assert config.api_key_source == "TINKER_CREDENTIAL_CMD"
    assert config.credential_cmd == env["TINKER_CREDENTIAL_CMD"]
    assert "print" not in repr(config)  # the command may embed a credential: not in repr


def test_credential_cmd_not_run_when_key_given(tmp_path: Path, no_file: Path) -> None:
    marker = tmp_path / "ran"
    env = {
        "TINKER_API_KEY": KEY,
        "TINKER_CREDENTIAL_CMD": py_cmd(f"open({str(marker)!r}, 'w').write('x')"),
    }
    resolve_config(env=env, credentials_path=no_file)
    assert not marker.exists()


def test_credential_cmd_failure_never_quotes_output(no_file: Path) -> None:
    code = f"import sys; print({KEY!r}); print({KEY!r}, file=sys.stderr); sys.exit(3)"
    with pytest.raises(InvalidInputError, match="status 3") as info:
        resolve_config(env={"TINKER_CREDENTIAL_CMD": py_cmd(code)}, credentials_path=no_file)
    assert KEY not in str(info.value)


def test_credential_cmd_empty_output(no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="empty credential"):
        resolve_config(
            env={"TINKER_CREDENTIAL_CMD": py_cmd("print('   ')")}, credentials_path=no_file
        )


def test_stored_default_key(tmp_path: Path) -> None:
    path = write_credentials(
        tmp_path / "credentials.json",
        {
            "version": 1,
            "default": "k2",
            "keys": {
                "k1": {"type": "manual", "key": "tml-one", "name": "one"},
                "k2": {"type": "generated", "key": "tml-two", "name": "two", "details": {}},
            },
        },
    )
    config = resolve_config(env={}, credentials_path=path)
    assert config.api_key.reveal() == "tml-two"
    assert str(path) in config.api_key_source


def test_stored_key_not_consulted_when_cmd_set(tmp_path: Path) -> None:
    path = write_credentials(
        tmp_path / "c.json",
        {
            "version": 1,
            "default": "k",
            "keys": {"k": {"type": "manual", "key": "tml-file", "name": "n"}},
        },
    )
    env = {"TINKER_CREDENTIAL_CMD": py_cmd("print('tml-cmd')")}
    assert resolve_config(env=env, credentials_path=path).api_key.reveal() == "tml-cmd"


@pytest.mark.parametrize(
    "data",
    [
        {"version": 1, "keys": {"k": {"key": "tml-x", "name": "n"}}},  # no default
        {"version": 1, "default": None, "keys": {}},
        {"version": 1, "default": "gone", "keys": {}},  # default points at a deleted key
    ],
)
def test_no_key_anywhere(tmp_path: Path, data: object) -> None:
    path = write_credentials(tmp_path / "c.json", data)
    with pytest.raises(InvalidInputError, match=r"No Tinker API key found.*TINKER_API_KEY"):
        resolve_config(env={}, credentials_path=path)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"default": "k", "keys": []}', "wrong type"),
        ('{"default": "k", "keys": {"k": {"name": "n"}}}', "no string 'key'"),
    ],
)
def test_malformed_credentials_file(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=reason) as info:
        resolve_config(env={}, credentials_path=path)
    assert str(path) in str(info.value)
    assert "tinker auth login" in str(info.value)


def test_credentials_file_is_only_read(tmp_path: Path) -> None:
    path = write_credentials(
        tmp_path / "c.json",
        {
            "version": 1,
            "default": "k",
            "keys": {"k": {"type": "manual", "key": "tml-f", "name": "n"}},
        },
    )
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    resolve_config(env={}, credentials_path=path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# -- credential validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "env", "source"),
    [
        ({"api_key": "sk-WRONG-SECRET"}, {}, "the api_key argument"),
        ({}, {"TINKER_API_KEY": "sk-WRONG-SECRET"}, "TINKER_API_KEY"),
    ],
)
def test_prefix_check_names_source_not_key(
    kwargs: dict[str, str], env: dict[str, str], source: str, no_file: Path
) -> None:
    with pytest.raises(InvalidInputError) as info:
        resolve_config(env=env, credentials_path=no_file, **kwargs)
    message = str(info.value)
    assert source in message
    assert "'tml-'" in message
    assert "tinker-actors auth login" in message
    assert "WRONG-SECRET" not in message
    assert isinstance(info.value, ValueError)


def test_prefix_check_for_cmd_and_file(tmp_path: Path, no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="TINKER_CREDENTIAL_CMD") as info:
        resolve_config(
            env={"TINKER_CREDENTIAL_CMD": py_cmd("print('bad-SECRET')")}, credentials_path=no_file
        )
    assert "bad-SECRET" not in str(info.value)
    path = write_credentials(
        tmp_path / "c.json",
        {
            "version": 1,
            "default": "k",
            "keys": {"k": {"type": "manual", "key": "bad-SECRET", "name": "n"}},
        },
    )
    with pytest.raises(InvalidInputError, match="credentials file") as info:
        resolve_config(env={}, credentials_path=path)
    assert "bad-SECRET" not in str(info.value)


def test_unexpired_jwt_accepted(no_file: Path) -> None:
    token = make_jwt({"exp": NOW + 60, "iat": NOW - 60, "sub": "u"})
    config = resolve_config(api_key=token, env={}, credentials_path=no_file, now=NOW)
    assert config.api_key.reveal() == token


def test_expired_jwt_refused(no_file: Path) -> None:
    token = make_jwt({"exp": NOW - 1, "iat": NOW - 3600})
    with pytest.raises(InvalidInputError, match="expired") as info:
        resolve_config(env={"TINKER_API_KEY": token}, credentials_path=no_file, now=NOW)
    assert "TINKER_API_KEY" in str(info.value)
    assert token not in str(info.value)


def test_unreadable_jwt_refused(no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="looks like a JWT") as info:
        resolve_config(api_key="eyJnot-a-jwt", env={}, credentials_path=no_file)
    assert "eyJnot-a-jwt" not in str(info.value)


def test_jwt_claims_decoding() -> None:
    assert jwt_claims(make_jwt({"exp": 5, "sub": "x"})) == {"exp": 5, "sub": "x"}
    with pytest.raises(InvalidInputError, match="3 dot-separated parts"):
        jwt_claims("eyJabc")
    with pytest.raises(InvalidInputError, match="not base64url-encoded JSON"):
        jwt_claims("eyJa.!!!!.c")
    array = base64.urlsafe_b64encode(b"[1]").decode().rstrip("=")
    with pytest.raises(InvalidInputError, match="not a JSON object"):
        jwt_claims(f"eyJa.{array}.c")


# -- settings from the environment and overrides ------------------------------------------


def test_environment_settings(no_file: Path) -> None:
    env = {
        "TINKER_PROJECT_ID": "proj-1",
        "TINKER_TAGS": "a, b,,a,c",
        "TINKER_TELEMETRY": "off",
        "CLOUDFLARE_ACCESS_CLIENT_ID": "cf-id",
        "CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-SECRET-value",
    }
    config = resolve_config(api_key=KEY, env=env, credentials_path=no_file)
    assert config.project_id == "proj-1"
    assert config.tags == ("a", "b", "c")
    assert config.telemetry is False
    assert config.cf_access_client_id == "cf-id"
    assert config.cf_access_client_secret is not None
    assert config.cf_access_client_secret.reveal() == "cf-SECRET-value"
    assert "cf-SECRET-value" not in repr(config)


def test_cf_secret_given_as_a_str_is_kept_secret(no_file: Path) -> None:
    config = resolve_config(
        api_key=KEY, env={}, credentials_path=no_file, cf_access_client_secret="cf-PASSED"
    )
    assert config.cf_access_client_secret is not None
    assert config.cf_access_client_secret.reveal() == "cf-PASSED"
    assert "cf-PASSED" not in repr(config)
    with pytest.raises(InvalidInputError, match="cf_access_client_secret must be a str"):
        resolve_config(api_key=KEY, env={}, credentials_path=no_file, cf_access_client_secret=7)


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("", False)]
)
def test_telemetry_words(value: str, expected: bool, no_file: Path) -> None:
    config = resolve_config(api_key=KEY, env={"TINKER_TELEMETRY": value}, credentials_path=no_file)
    assert config.telemetry is expected


def test_overrides_win_over_env(no_file: Path) -> None:
    config = resolve_config(
        api_key=KEY,
        env={"TINKER_PROJECT_ID": "env"},
        credentials_path=no_file,
        project_id="override",
        timeout=45,
        max_retries=0,
        default_headers={"X-Custom": "1"},
        http2=True,
    )
    assert (config.project_id, config.timeout, config.max_retries, config.http2) == (
        "override",
        45,
        0,
        True,
    )
    assert dict(config.default_headers) == {"X-Custom": "1"}
    with pytest.raises(TypeError):
        config.default_headers["X-Other"] = "2"  # type: ignore[index]


def test_unknown_or_reserved_override(no_file: Path) -> None:
    with pytest.raises(TypeError, match="timeuot"):
        resolve_config(api_key=KEY, env={}, credentials_path=no_file, timeuot=3)
    with pytest.raises(TypeError, match="api_key_source"):
        resolve_config(api_key=KEY, env={}, credentials_path=no_file, api_key_source="x")


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"timeout": 0}, "timeout must be > 0"),
        ({"connect_timeout": -1.0}, "connect_timeout"),
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"max_retries": 1.5}, "max_retries must be an int"),
        ({"max_connections": 0}, "max_connections"),
        ({"jwt_credential_source": "credential_cmd"}, "TINKER_CREDENTIAL_CMD"),
        ({"default_headers": {"X": 1}}, "default_headers"),
    ],
)
def test_bad_settings_rejected(override: dict[str, object], match: str, no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match=match):
        resolve_config(api_key=KEY, env={}, credentials_path=no_file, **override)


def test_config_is_frozen_and_needs_secret(no_file: Path) -> None:
    config = resolve_config(api_key=KEY, env={}, credentials_path=no_file)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_retries = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="Secret"):
        Config(api_key=KEY)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="'tml-'"):
        Config(api_key=Secret("nope"))


def test_uses_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch, no_file: Path
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", "tml-from-os-environ")
    monkeypatch.setenv("TINKER_BASE_URL", "http://127.0.0.1:9/")
    config = resolve_config(credentials_path=no_file)
    assert config.api_key.reveal() == "tml-from-os-environ"
    assert config.base_url == "http://127.0.0.1:9"


def test_default_now_is_wall_clock(no_file: Path) -> None:
    fresh = make_jwt({"exp": time.time() + 600, "iat": time.time()})
    assert resolve_config(api_key=fresh, env={}, credentials_path=no_file).api_key.reveal() == fresh


# -- secrecy ---------------------------------------------------------------------------------


def test_secret_never_shows_itself(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert KEY not in f"{secret} {secret!r} {secret:>40}"
    assert KEY not in "%s %r" % (secret, secret)  # noqa: UP031
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").debug("key is %s / %r", secret, secret)
    assert KEY not in caplog.text
    assert secret.reveal() == KEY
    assert bool(secret)
    assert not Secret("")
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]


def test_secret_equality_and_hash() -> None:
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret(KEY + "x")
    assert Secret(KEY) != KEY  # never equal to the bare string
    assert hash(Secret(KEY)) == hash(Secret(KEY))
    assert len({Secret(KEY), Secret(KEY), Secret("tml-b")}) == 2


def test_config_repr_and_str_hide_key(no_file: Path) -> None:
    config = resolve_config(api_key=KEY, env={}, credentials_path=no_file)
    for text in (repr(config), str(config), f"{config}"):
        assert KEY not in text
    assert "Secret('<redacted>')" in repr(config)


def test_key_fingerprint() -> None:
    expected = hashlib.sha256(KEY.encode()).hexdigest()
    assert key_fingerprint(KEY) == expected
    assert key_fingerprint(Secret(KEY)) == expected == Secret(KEY).fingerprint()
    assert key_fingerprint("tml-other") != expected
    assert KEY not in expected
    assert len(expected) == 64
