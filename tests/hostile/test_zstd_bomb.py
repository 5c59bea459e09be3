"""A zstd body that expands enormously is refused before its output is held in memory.

The audit: 32 KB of zstd that decompresses to 1 GiB took the server from 54 to 1,087 MB. The
decoder now reads the output in pieces and stops past its limit (``max_body_bytes`` on the
server), whatever size the frame header claims.
"""

from __future__ import annotations

import io
import tracemalloc

import pytest
import zstandard
from hostile_support import PROTO, in_process

from tinker_actors.transport.proto import decode_forward_backward_request

GIB = 1 << 30


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """About 32 KB of zstd whose frame header says, truthfully, 1 GiB of zeros."""
    out = io.BytesIO()
    writer = zstandard.ZstdCompressor(level=1).stream_writer(out, size=GIB, closefd=False)
    piece = bytes(1 << 20)
    for _ in range(GIB >> 20):
        writer.write(piece)
    writer.flush(zstandard.FLUSH_FRAME)
    data = out.getvalue()
    assert len(data) < 64 << 10
    return data


async def test_the_server_refuses_the_bomb_with_413_naming_the_limit(bomb: bytes) -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        tracemalloc.start()
        try:
            response = await api.post(
                "forward_backward",
                bomb,
                content_type=PROTO,
                headers={"Content-Encoding": "zstd"},
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 413, response.text
        detail = response.json()["detail"]
        assert f"max_body_bytes = {64 << 20}" in detail
        assert "decompresses" in detail
        # bounded by the limit (64 MiB), nowhere near the 1 GiB the body expands to
        assert peak < 200 << 20, peak
        await api.still_serving(world)


def test_the_decoder_stops_at_its_limit(bomb: bytes) -> None:
    from tinker_actors.transport.proto import DecompressionLimitError

    tracemalloc.start()
    try:
        with pytest.raises(DecompressionLimitError, match="more than 1048576 bytes") as caught:
            decode_forward_backward_request(
                bomb, content_encoding="zstd", max_decompressed_bytes=1 << 20
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.limit == 1 << 20
    assert peak < 8 << 20, peak


def test_a_body_within_the_limit_still_decodes() -> None:
    from hostile_support import fb_body

    body = fb_body("m:train:0", 1, compress=True)
    decoded = decode_forward_backward_request(
        body, content_encoding="zstd", max_decompressed_bytes=len(fb_body("m:train:0", 1))
    )
    assert decoded.model_id == "m:train:0"
    with pytest.raises(ValueError, match="not a valid zstd frame"):
        decode_forward_backward_request(b"garbage", content_encoding="zstd")
