"""Reading a request body under a size limit (the JSON routes' and the OpenAI-compatible ones')."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect

from tinker_actors.local._limits import over_limit

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["read_body"]


async def read_body(request: Request, limit: int, name: str) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise over_limit(f"a body of {declared} bytes", name, limit, status=413)
    # straight from ASGI receive: Request.stream()'s async generator costs more than the read
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise over_limit(f"a body of at least {size} bytes", name, limit, status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
