"""Sampler handles: a SamplingClient's identity, without its credential (protocol.md §9.9).

A handle is the URL-safe base64 of compact JSON::

    {"session_id": ..., "sampling_session_id": ..., "base_model": ...,
     "base_url": ..., "headers": {...}, "api_key": null}

It is what a SamplingClient pickles to, and what ``get_sampler_handle()`` returns. The API key
is never in it: the receiving process resolves its own credential (its ``open()``), and
samples on the same sampling session as a *clone* with its own seq id range
(``clone_id * 1_000_000_000``, protocol §8.5): the clone id comes from
``POST /api/v1/join_sampling_session`` when the server's flag ``sample_join_sampling_session``
is on, else it is drawn at random from ``[1, 1e9]``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Final

import msgspec

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import JoinSamplingSessionRequest, JoinSamplingSessionResponse

if TYPE_CHECKING:
    import random

    from tinker_actors.actors import SessionHandle
    from tinker_actors.transport import Transport

__all__ = ["CLONE_STRIDE", "SamplerState", "clone_id_for", "decode_handle", "encode_handle"]

#: A clone's seq ids start at ``clone_id * CLONE_STRIDE``.
CLONE_STRIDE: Final = 1_000_000_000


class SamplerState(msgspec.Struct, frozen=True, kw_only=True):
    """What identifies a SamplingClient across processes (never its credential)."""

    session_id: str
    sampling_session_id: str
    base_model: str
    base_url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    api_key: None = None


def encode_handle(state: SamplerState) -> str:
    """Return ``state`` as URL-safe base64 of compact JSON."""
    return base64.urlsafe_b64encode(msgspec.json.encode(state)).decode("ascii")


def decode_handle(handle: object) -> SamplerState:
    """Parse a handle from :func:`encode_handle`.

    Raises:
        InvalidInputError: ``handle`` is not a sampler handle.
    """
    if not isinstance(handle, str) or not handle:
        raise InvalidInputError(f"a sampler handle must be a non-empty str, got {handle!r}")
    try:
        raw = base64.urlsafe_b64decode(handle.encode("ascii"))
        return msgspec.json.decode(raw, type=SamplerState)
    except (binascii.Error, UnicodeEncodeError, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInputError(
            "not a sampler handle (expected the string from SamplingClient.get_sampler_handle())"
        ) from exc


async def clone_id_for(
    transport: Transport,
    handle: SessionHandle,
    sampling_session_id: str,
    *,
    rng: random.Random,
    sdk_method: str,
) -> int:
    """Return a clone id: the server's ``client_counter`` when joining is on, else random."""
    if not handle.client_config.sample_join_sampling_session:
        return rng.randint(1, CLONE_STRIDE)
    response = await transport.request(
        "POST",
        "/api/v1/join_sampling_session",
        json=JoinSamplingSessionRequest(sampling_session_id=sampling_session_id),
        sdk_method=sdk_method,
    )
    return response.decode(JoinSamplingSessionResponse).client_counter
