"""``tinker.auth`` of the official SDK 0.38: is a credential configured, and does it work?"""

from __future__ import annotations

import os

from tinker_actors.config import resolve_config
from tinker_actors.errors import InvalidInputError

__all__ = ["get_tinker_token", "raise_if_tinker_not_accessible", "tinker_has_credentials"]


def get_tinker_token() -> str | None:
    """Return the configured static credential (argument-free lookup), or None.

    Looks at ``TINKER_API_KEY`` and the stored credentials file; never runs
    ``TINKER_CREDENTIAL_CMD``.
    """
    env = {k: v for k, v in os.environ.items() if k != "TINKER_CREDENTIAL_CMD"}
    try:
        config = resolve_config(env=env)
    except (InvalidInputError, OSError):
        return None
    return config.api_key.reveal()


def tinker_has_credentials() -> bool:
    """Return whether a credential can be resolved (a credential command counts, unrun)."""
    if os.environ.get("TINKER_CREDENTIAL_CMD"):
        return True
    return get_tinker_token() is not None


def raise_if_tinker_not_accessible() -> None:
    """Raise a TinkerError subclass unless one request with the configured credential works.

    Raises:
        TinkerError: no credential (InvalidInputError), rejected (AuthenticationError),
            billing not set up (BillingError), or unreachable (APIConnectionError).
    """
    from tinker_actors.compat._rest import RestClient

    RestClient().get_server_capabilities().result()  # type: ignore[attr-defined]
