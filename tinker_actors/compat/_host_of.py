"""The runtime block a compat client runs in, for the helpers that are not part of 0.38."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from tinker_actors.compat._rest import AdminClient, RestClient
from tinker_actors.compat._sampling import SamplingClient
from tinker_actors.compat._service import ServiceClient
from tinker_actors.compat._training import TrainingClient
from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from tinker_actors.compat._host import Host

__all__ = ["AnyClient", "host_of"]

AnyClient: TypeAlias = ServiceClient | TrainingClient | SamplingClient | RestClient | AdminClient


def host_of(client: object, what: str) -> Host:
    """Return the host (one ``open()`` block) ``client`` runs in.

    Raises:
        InvalidInputError: not a compat client, or a sampling client that has not attached to
            a runtime yet (an unpickled one before its first call).
        RuntimeClosedError: its ``ServiceClient`` is closed.
    """
    host: Host | None
    if isinstance(client, ServiceClient):
        host = client._get_host()
    elif isinstance(client, TrainingClient | SamplingClient | RestClient | AdminClient):
        host = getattr(client, "_host", None)
    else:
        raise InvalidInputError(
            f"{what} takes a tinker ServiceClient, TrainingClient, SamplingClient, RestClient "
            f"or AdminClient, got {type(client).__name__}"
        )
    if host is None:
        raise InvalidInputError(
            f"this {type(client).__name__} has not attached to a runtime yet (an unpickled "
            "sampling client attaches on its first call); call it once first"
        )
    return host
