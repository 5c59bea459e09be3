"""``tinker-actors auth``: store a key, forget it, and check the credential the SDK will use.

``login`` asks for an API key (hidden; or ``--api-key``), has the service confirm it and say
whose it is, and stores it as the default credential in ``~/.tinker/credentials.json``, the
file the official CLI writes and both SDKs read. ``logout`` removes the default key from that
file (and deletes it on the service only when it was a key minted for the CLI, as the official
CLI does). ``status`` resolves the credential from the SDK's sources (never printing it: only
where it came from and a short fingerprint), then makes one request to the service. It exits 0
only when both succeed, so ``tinker-actors auth status && python train.py`` checks the setup
first. ``whoami`` shows who the credential belongs to (it needs JWT auth, as in the official
client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._group import BadInput, CommandError, one_line
from tinker_actors.cli._options import api_options, api_settings
from tinker_actors.cli._output import View, format_bool, show

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tinker_actors.cli._api import Api
    from tinker_actors.types import WhoamiResponse

__all__ = ["command"]

T = TypeVar("T")


@click.group()
def command() -> None:
    """Credentials: login, logout, status, whoami."""


def _credentials_file() -> Path:
    from tinker_actors._credentials import default_credentials_path

    return default_credentials_path()


def _local(call: Callable[[], T]) -> T:
    """Run a read or write of the credentials file; its errors are the machine's (status 1)."""
    from tinker_actors.errors import InvalidInputError

    try:
        return call()
    except InvalidInputError as exc:
        raise CommandError(one_line(str(exc))) from None
    except OSError as exc:
        raise CommandError(
            f"cannot write the credentials file ({type(exc).__name__}: {one_line(str(exc))})"
        ) from None


def _ask_key() -> str:
    import sys

    if not sys.stdin.isatty():  # piped in (`pass show tinker | tinker-actors auth login`)
        return sys.stdin.readline()
    return str(click.prompt("API key", hide_input=True))


@command.command("login")
@api_options
def login() -> None:
    """Store an API key as the default credential, once the service accepts it.

    The key is asked for without echo (or read from stdin when it is not a terminal);
    --api-key gives it on the command line instead, where shell history keeps it.
    """
    import os

    from tinker_actors._credentials import remember_default, stored_default
    from tinker_actors.cli._login import read_key
    from tinker_actors.config import check_api_key, resolve_base_url
    from tinker_actors.errors import InvalidInputError

    settings = api_settings()
    path = _credentials_file()
    if _local(lambda: stored_default(path)) is not None:
        raise CommandError(
            f"already logged in: {path} holds a default key; run `tinker-actors auth logout` "
            "before logging in again"
        )
    try:
        base_url = resolve_base_url(settings.base_url)
    except InvalidInputError as exc:
        raise BadInput(one_line(str(exc))) from None
    given = settings.api_key
    key = (given if given is not None else _ask_key()).strip()
    try:
        check_api_key(key, "--api-key" if given is not None else "the key entered")
    except InvalidInputError as exc:
        raise BadInput(one_line(str(exc))) from None
    record = read_key(base_url, key)
    stored: dict[str, Any] = {"type": "manual", "key": key, "name": record.name}
    if record.note is not None:
        stored["note"] = record.note
    stored["details"] = record.details
    _local(lambda: remember_default(path, record.key_id, stored))
    data = {
        "base_url": base_url,
        "key_id": record.key_id,
        "name": record.name,
        "email": record.email,
        "organization": record.organization,
        "credentials_file": str(path),
    }
    notes = [
        f"Logged in as {record.email} ({record.organization}); '{record.name}' is the "
        "default credential now."
    ]
    if os.environ.get("TINKER_API_KEY") or os.environ.get("TINKER_CREDENTIAL_CMD"):
        notes.append("TINKER_API_KEY or TINKER_CREDENTIAL_CMD is set and wins over the stored key.")
    rows = [[label, str(data[field])] for field, label in _LOGIN_LABELS.items()]
    show(View(data=data, columns=["Property", "Value"], rows=rows, title="Logged in", notes=notes))


_LOGIN_LABELS = {
    "base_url": "Service",
    "name": "Key name",
    "key_id": "Key id",
    "email": "User",
    "organization": "Organization",
    "credentials_file": "Stored in",
}


@command.command("logout")
@api_options
def logout() -> None:
    """Remove the default key from the credentials file.

    A key the official CLI once minted for this machine is also deleted on the service, since
    nobody else has it; a key you pasted stays valid (delete it in the console).
    """
    from tinker_actors._credentials import forget_default, stored_default
    from tinker_actors.cli._login import delete_key
    from tinker_actors.config import resolve_base_url
    from tinker_actors.errors import InvalidInputError

    path = _credentials_file()
    found = _local(lambda: stored_default(path))
    if found is None:
        raise CommandError(
            f"no default credential is stored in {path}; nothing to log out from "
            "(`tinker-actors auth login` stores one)"
        )
    key_id, record = found
    failure: CommandError | None = None
    deleted = False
    if record.get("type") == "generated":
        try:
            delete_key(resolve_base_url(api_settings().base_url), str(record["key"]))
            deleted = True
        except InvalidInputError as exc:
            failure = CommandError(one_line(str(exc)))
        except CommandError as exc:
            failure = exc
    # the local copy goes either way: logging out must not depend on the service
    _local(lambda: forget_default(path))
    name = str(record.get("name", key_id))
    if failure is not None:
        raise CommandError(
            f"removed the credential '{name}' from {path}, but {failure.format_message()}; "
            f"delete key {key_id} in the Tinker console"
        )
    data = {
        "key_id": key_id,
        "name": name,
        "deleted_on_service": deleted,
        "credentials_file": str(path),
    }
    if deleted:
        note = f"Removed '{name}' and deleted its key on the service."
    else:
        note = f"Removed '{name}'. The key itself is still valid; delete it in the console."
    rows = [
        ["Key name", name],
        ["Key id", key_id],
        ["Deleted on the service", format_bool(deleted)],
        ["Removed from", str(path)],
    ]
    show(
        View(data=data, columns=["Property", "Value"], rows=rows, title="Logged out", notes=[note])
    )


def _view(data: dict[str, Any]) -> View:
    labels = {
        "base_url": "Service",
        "credentials": "Credential available",
        "credential_source": "Credential from",
        "credential_fingerprint": "Credential fingerprint",
        "accessible": "Service accepts it",
        "models": "Models offered",
        "error": "Error",
    }
    rows = []
    for key, label in labels.items():
        if key in data:
            value = data[key]
            rows.append([label, format_bool(value) if isinstance(value, bool) else str(value)])
    return View(data=data, columns=["Check", "Result"], rows=rows, title="Authentication")


@command.command("status")
@api_options
def status() -> None:
    """Check that a credential is available and that the service accepts it."""
    from tinker_actors.config import resolve_config
    from tinker_actors.errors import InvalidInputError

    settings = api_settings()
    data: dict[str, Any] = {}
    try:
        config = resolve_config(base_url=settings.base_url, api_key=settings.api_key)
    except InvalidInputError as exc:
        data.update(credentials=False, error=one_line(str(exc)))
        show(_view(data))
        raise CommandError(f"no usable credential: {one_line(str(exc))}") from None
    data.update(
        base_url=config.base_url,
        credentials=True,
        credential_source=config.api_key_source,
        credential_fingerprint=config.api_key.fingerprint()[:16],
    )

    async def work(api: Api) -> int:
        return len((await api.rest.get_server_capabilities()).supported_models)

    try:
        data.update(accessible=True, models=call_api(work, action="check the credential"))
    except click.ClickException as exc:
        data.update(accessible=False, error=one_line(exc.format_message()))
        show(_view(data))
        raise
    show(_view(data))


@command.command("whoami")
@api_options
def whoami() -> None:
    """Show the user and organization the credential belongs to."""

    async def work(api: Api) -> WhoamiResponse:
        return await api.rest.whoami()

    identity = call_api(work, action="identify the credential")
    rows = [
        ["User", identity.user_urn],
        ["Organization", identity.org_urn],
        ["Email", identity.email or "-"],
    ]
    show(View(data=identity, columns=["Property", "Value"], rows=rows, title="Credential owner"))
