"""``tinker-actors auth``: is there a credential, and does the service accept it?

``status`` resolves the credential from the SDK's sources (never printing it: only where it
came from and a short fingerprint), then makes one request to the service. It exits 0 only
when both succeed, so ``tinker-actors auth status && python train.py`` checks the setup first.
``whoami`` shows who the credential belongs to (it needs JWT auth, as in the official client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._group import CommandError, one_line
from tinker_actors.cli._options import api_options, api_settings
from tinker_actors.cli._output import View, format_bool, show

if TYPE_CHECKING:
    from tinker_actors.cli._api import Api
    from tinker_actors.types import WhoamiResponse

__all__ = ["command"]


@click.group()
def command() -> None:
    """Credentials: status, whoami."""


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
