"""Credentials and header values are checked when the config is built (issue 14).

Before the fix, ``api_key="tml-SECRET\\nX-Evil: 1"`` passed every check, then each request
failed in h11 with ``Illegal header value b'tml-SECRET\\nX-Evil: 1'`` (the key, quoted in str,
repr and traceback) after 302 s of retries; an empty ``base_url`` silently meant the production
service, and one with a space failed only after the same retries. Now each fails at once with
an InvalidInputError that never shows the value, and the redaction helper covers the escaped
forms a library may quote a secret in.
"""

from __future__ import annotations

import traceback
import urllib.parse
from pathlib import Path

import httpx
import pytest
import trio

import tinker_actors as ta
import tinker_actors.compat as tinker
from tinker_actors.actors._telemetry import scrub_text
from tinker_actors.config import display_url, resolve_config, secret_forms
from tinker_actors.errors import InvalidInputError
from tinker_actors.transport._errors import scrub

SECRET = "SECRET-4711"
BAD_KEYS = [
    f"tml-{SECRET}\nX-Evil: 1",
    f"tml-{SECRET}\r\nX-Evil: 1",
    f"tml-{SECRET} trailing",
    f"tml-{SECRET}\t",
    f"tml-{SECRET}\x00",
    f"tml-{SECRET}\x7f",
    f"tml-{SECRET}é",
    f"eyJ{SECRET}\n.x.y",
]


@pytest.fixture
def no_file(tmp_path: Path) -> Path:
    return tmp_path / "none.json"


def shown(exc: BaseException) -> str:
    """Everything a user could see of ``exc``: str, repr and the formatted traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def assert_not_shown(exc: BaseException) -> None:
    text = shown(exc)
    assert SECRET not in text
    assert urllib.parse.quote(SECRET) not in text


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_key_headers_cannot_carry_is_refused_without_echo(key: str, no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot be sent in an HTTP header") as info:
        resolve_config(base_url="http://h", api_key=key, env={}, credentials_path=no_file)
    assert_not_shown(info.value)
    with pytest.raises(InvalidInputError) as info:
        resolve_config(env={"TINKER_API_KEY": key}, credentials_path=no_file)
    assert "TINKER_API_KEY" in str(info.value)
    assert_not_shown(info.value)


def test_credential_cmd_output_is_checked(no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="TINKER_CREDENTIAL_CMD") as info:
        resolve_config(
            env={"TINKER_CREDENTIAL_CMD": f"printf 'tml-{SECRET}\\001x'"}, credentials_path=no_file
        )
    assert_not_shown(info.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SECRET}\nX-Evil: 1"},
        {"X-Trace": f"{SECRET}\r"},
        {"X-Trace": f" {SECRET}"},
        {"X-Trace": f"{SECRET}\x00"},
        {"X-Trace": f"{SECRET}ü"},
        {"X-Trace": ""},
        {"Bad Name": "ok"},
        {"Bad:Name": "ok"},
        {"": "ok"},
    ],
)
def test_default_headers_are_checked_without_echo(headers: dict[str, str], no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"default.header") as info:
        resolve_config(
            base_url="http://h", api_key="tml-ok", default_headers=headers, credentials_path=no_file
        )
    assert_not_shown(info.value)


def test_inner_spaces_in_header_values_are_fine(no_file: Path) -> None:
    config = resolve_config(
        base_url="http://h",
        api_key="tml-ok",
        default_headers={"Authorization": "Bearer abc", "X-Note": "a b\tc"},
        credentials_path=no_file,
    )
    assert dict(config.default_headers)["X-Note"] == "a b\tc"


def test_cloudflare_secret_is_checked_without_echo(no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="cf_access_client_secret") as info:
        resolve_config(
            base_url="http://h",
            api_key="tml-ok",
            env={"CLOUDFLARE_ACCESS_CLIENT_SECRET": f"{SECRET}\n"},
            credentials_path=no_file,
        )
    assert_not_shown(info.value)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "base_url is empty"),
        ("   ", "base_url is empty"),
        ("http://host name:8000", "whitespace"),
        ("http://host:8000/ path", "whitespace"),
        ("http://host\n", "whitespace"),
        ("http://", "no host"),
        ("https:///path", "no host"),
    ],
)
def test_bad_base_urls_fail_at_once(url: str, match: str, no_file: Path) -> None:
    env = {"TINKER_BASE_URL": "http://from-env"}  # an empty argument no longer falls back
    with pytest.raises(InvalidInputError, match=match):
        resolve_config(base_url=url, api_key="tml-ok", env=env, credentials_path=no_file)


async def test_open_fails_before_sending_anything(autojump_clock: trio.abc.Clock) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    started = trio.current_time()
    for kwargs in (
        {"base_url": "http://h", "api_key": BAD_KEYS[0]},
        {"base_url": "", "api_key": "tml-ok"},
        {"base_url": "http://h h", "api_key": "tml-ok"},
        {"base_url": "http://h", "api_key": "tml-ok", "default_headers": {"A": "b\n"}},
    ):
        with pytest.raises(InvalidInputError) as info:
            async with ta.open(http_transport=httpx.MockTransport(handler), **kwargs) as rt:
                await rt.create_sampling_client(base_model="local/tiny")
        assert_not_shown(info.value)
    assert sent == []
    assert trio.current_time() == started  # refused at once, not after ~300 s of retries


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "http://h", "api_key": BAD_KEYS[0]},
        {"base_url": "", "api_key": "tml-ok"},
        {"base_url": "http://h h", "api_key": "tml-ok"},
        {"base_url": "http://h", "api_key": "tml-ok", "default_headers_overrides": {"A": "\n"}},
    ],
)
def test_compat_service_client_fails_at_once(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError) as info:
        tinker.ServiceClient(**kwargs)  # type: ignore[arg-type]
    assert_not_shown(info.value)


def test_redaction_covers_escaped_forms() -> None:
    key = f"tml-{SECRET}\nX-Evil: 1"
    quoted = [
        f"Illegal header value {key.encode()!r}",  # h11 / httpx: bytes repr
        f"value {key!r}",  # str repr
        f"url ?k={urllib.parse.quote(key, safe='')}",  # url-encoded
        f"url ?k={urllib.parse.quote_plus(key, safe='')}",
        '{"key": "tml-' + SECRET + '\\nX-Evil: 1"}',  # JSON
        key,
    ]
    for text in quoted:
        assert SECRET not in scrub(text, [key]), text
        assert SECRET not in scrub_text(text, [key]), text
    assert secret_forms("") == ()


def test_credentials_in_the_base_url_never_reach_reprs_or_errors() -> None:
    config = resolve_config(base_url="http://user:hunter2@127.0.0.1:8000/api", api_key="tml-fine")
    assert "hunter2" not in repr(config)
    assert "http://***@127.0.0.1:8000/api" in repr(config)
    assert config.base_url == "http://user:hunter2@127.0.0.1:8000/api"  # still used as given
    with pytest.raises(InvalidInputError) as caught:
        resolve_config(base_url="ftp://user:hunter2@host", api_key="tml-fine")
    assert "hunter2" not in str(caught.value)
    # an '@' after the host (path, query) is not userinfo
    assert display_url("http://h/p?u=a@b") == "http://h/p?u=a@b"
