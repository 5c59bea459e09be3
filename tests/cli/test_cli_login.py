"""``tinker-actors auth login`` and ``logout``: the credentials file both SDKs read.

Login has the service confirm a key (``GET /api/v1/auth/apikey/me``) before it stores it as the
default credential in ``$HOME/.tinker/credentials.json``; logout removes it (and deletes it on
the service only when it was a key minted for the CLI). Every test points ``HOME`` at its own
folder and clears the SDK's credential variables, so nothing here reads or writes the real
file.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx
from cli_support import KEY, fake_service, invoke, json_of, one_line_error

from tinker_actors.testing import server_in_thread

ME = "/api/v1/auth/apikey/me"
RECORD = {
    "key_id": 42,
    "name": "laptop",
    "note": "for the cookbook runs",
    "details": {"org_details": {"name": "Acme"}, "user_details": {"email": "ada@acme.test"}},
}


def _env(home: Path, url: str | None = None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "HOME": str(home),
        "TINKER_API_KEY": None,
        "TINKER_CREDENTIAL_CMD": None,
        "TINKER_BASE_URL": url,
    }
    return env


def _file(home: Path) -> Path:
    return home / ".tinker" / "credentials.json"


def _stored(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_file(home).read_text())
    return data


def test_login_stores_the_key_the_service_confirmed_and_the_sdk_uses_it(
    local_url: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, local_url)
    data = json_of(invoke(["auth", "login", "-f", "json"], env=env, stdin=f"{KEY}\n"))
    assert data["base_url"] == local_url
    assert data["email"] == "local@localhost"
    assert data["credentials_file"] == str(_file(tmp_path))
    assert KEY not in json.dumps(data)  # the key is never printed
    stored = _stored(tmp_path)
    assert stored["default"] == data["key_id"]
    record = stored["keys"][data["key_id"]]
    assert record["type"] == "manual"
    assert record["key"] == KEY
    assert record["name"] == data["name"]
    assert record["details"]["org_details"] == {"name": "local"}
    # owner-only, as the official CLI writes it: the file holds a live key
    assert stat.S_IMODE(_file(tmp_path).stat().st_mode) == 0o600
    assert stat.S_IMODE(_file(tmp_path).parent.stat().st_mode) == 0o700
    status = json_of(invoke(["auth", "status", "-f", "json"], env=env))
    assert status["credential_source"] == f"the credentials file {_file(tmp_path)}"
    assert status["accessible"] is True

    left = json_of(invoke(["auth", "logout", "-f", "json"], env=env))
    assert left == {
        "key_id": data["key_id"],
        "name": data["name"],
        "deleted_on_service": False,  # a pasted key stays valid
        "credentials_file": str(_file(tmp_path)),
    }
    assert _stored(tmp_path) == {"version": 1, "keys": {}}
    line = one_line_error(invoke(["auth", "status", "-f", "json"], env=env), 1)
    assert "No Tinker API key found" in line
    # the key still works: logout only forgot it
    served = httpx.get(f"{local_url}/api/v1/get_server_capabilities", headers={"X-API-Key": KEY})
    assert served.status_code == 200


def test_login_keeps_what_it_does_not_know_in_the_file(local_url: str, tmp_path: Path) -> None:
    other = {"type": "manual", "key": "tml-other", "name": "other", "future": [1, 2]}
    _file(tmp_path).parent.mkdir()
    _file(tmp_path).write_text(json.dumps({"version": 1, "extra": True, "keys": {"7": other}}))
    env = _env(tmp_path, local_url)
    data = json_of(invoke(["auth", "login", "-f", "json"], env=env, stdin=KEY))
    stored = _stored(tmp_path)
    assert stored["extra"] is True
    assert stored["keys"]["7"] == other
    assert stored["default"] == data["key_id"]
    json_of(invoke(["auth", "logout", "-f", "json"], env=env))
    assert _stored(tmp_path) == {"version": 1, "extra": True, "keys": {"7": other}}


def test_login_refuses_while_a_default_key_is_stored(local_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, local_url)
    json_of(invoke(["auth", "login", "-f", "json"], env=env, stdin=KEY))
    before = _file(tmp_path).read_bytes()
    line = one_line_error(invoke(["auth", "login"], env=env, stdin="tml-second"), 1)
    assert "already logged in" in line
    assert "tinker-actors auth logout" in line
    assert _file(tmp_path).read_bytes() == before


def test_a_malformed_key_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with fake_service() as service:
        env = _env(tmp_path, service.url)
        for args, stdin, said in (
            (["auth", "login"], "sk-not-a-tinker-key\n", "'tml-' prefix"),
            (["auth", "login"], "", "is empty"),
            (["auth", "login", "--api-key", "tml-has space"], None, "HTTP header"),
        ):
            line = one_line_error(invoke(args, env=env, stdin=stdin), 2)
            assert said in line, line
            assert "sk-not-a-tinker-key" not in line
        assert service.requests == []
    assert not _file(tmp_path).exists()


def test_a_key_the_service_refuses_is_not_stored(tmp_path: Path) -> None:
    with server_in_thread(api_keys=frozenset({"tml-the-right-one"})) as (url, _):
        result = invoke(["auth", "login"], env=_env(tmp_path, url), stdin="tml-wrong\n")
    line = one_line_error(result, 1)
    assert "cannot check the API key" in line
    assert "401" in line
    assert "not accepted by the local server" in line
    assert not _file(tmp_path).exists()


def test_an_unreachable_or_odd_service_stores_nothing(tmp_path: Path) -> None:
    with fake_service() as service:
        url = service.url
        service.answer("GET", ME, 200, {"key_id": 1, "name": "x", "details": {}})
        line = one_line_error(invoke(["auth", "login"], env=_env(tmp_path, url), stdin=KEY), 1)
        assert "without the key's 'user_details'" in line
        service.answer("GET", ME, 200, RECORD)
        stored = json_of(
            invoke(["auth", "login", "-f", "json"], env=_env(tmp_path, url), stdin=KEY)
        )
        assert stored["organization"] == "Acme"
        assert _stored(tmp_path)["keys"]["42"]["note"] == "for the cookbook runs"
    # the service is gone now: a login elsewhere fails in one line and changes nothing
    other = tmp_path / "other"
    line = one_line_error(invoke(["auth", "login"], env=_env(other, url), stdin=KEY), 1)
    assert "did not answer" in line
    assert not _file(other).exists()


def test_logout_with_nothing_stored_fails_in_one_line(tmp_path: Path) -> None:
    line = one_line_error(invoke(["auth", "logout"], env=_env(tmp_path)), 1)
    assert "no default credential is stored" in line


def _generated(home: Path, key: str) -> None:
    record = {
        "type": "generated",
        "key": key,
        "name": "tinker-cli-box",
        "details": RECORD["details"],
    }
    _file(home).parent.mkdir(parents=True)
    _file(home).write_text(json.dumps({"version": 1, "default": "9", "keys": {"9": record}}))


def test_logout_deletes_a_key_minted_for_the_cli_on_the_service(tmp_path: Path) -> None:
    with server_in_thread() as (url, _):
        _generated(tmp_path, "tml-minted")
        data = json_of(invoke(["auth", "logout", "-f", "json"], env=_env(tmp_path, url)))
        assert data["deleted_on_service"] is True
        assert _stored(tmp_path)["keys"] == {}
        refused = httpx.get(f"{url}/api/v1/healthz")
        assert refused.status_code == 200
        refused = httpx.get(
            f"{url}/api/v1/get_server_capabilities", headers={"X-API-Key": "tml-minted"}
        )
        assert refused.status_code == 401
        assert "deleted" in refused.json()["detail"]


def test_logout_forgets_the_key_even_when_the_service_cannot_delete_it(tmp_path: Path) -> None:
    with fake_service() as service:
        service.answer("DELETE", ME, 503, {"detail": "try later"})
        _generated(tmp_path, "tml-minted")
        line = one_line_error(invoke(["auth", "logout"], env=_env(tmp_path, service.url)), 1)
        assert service.requests == [("DELETE", ME)]
    assert "removed the credential 'tinker-cli-box'" in line
    assert "503: try later" in line
    assert "delete key 9 in the Tinker console" in line
    assert _stored(tmp_path)["keys"] == {}


def test_a_broken_credentials_file_is_named_with_its_fix(local_url: str, tmp_path: Path) -> None:
    _file(tmp_path).parent.mkdir()
    _file(tmp_path).write_text("{not json")
    env = _env(tmp_path, local_url)
    for command in ("login", "logout"):
        line = one_line_error(invoke(["auth", command], env=env, stdin=KEY), 1)
        assert f"the credentials file {_file(tmp_path)} is not valid (not JSON)" in line
    assert _file(tmp_path).read_text() == "{not json"
