"""Shared helpers of the hostile-input tests: a server, a client per API key, live ids.

Everything runs in-process over ``httpx.ASGITransport`` unless a test needs real sockets
(then :func:`serving` binds 127.0.0.1). ``World`` holds a session, a trained model, a sampler
and saved checkpoints, so each test can check that the server still serves a well-formed
request after whatever it was sent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import h11
import httpx
import msgspec
import trio

from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.transport.proto import encode_forward_backward_request
from tinker_actors.types import (
    AdamParams,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    LoraConfig,
    ModelInput,
    OptimStepRequest,
    SampleRequest,
    SamplingParams,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    TensorData,
)

KEY = "tml-hostile-alice"
OTHER = "tml-hostile-bob"
BASE = "http://local"
PROTO = "application/x-protobuf"
JSON = "application/json"


def j(obj: object) -> bytes:
    return msgspec.json.encode(obj)


@dataclass
class World:
    """Live ids on the server under test, created with one key."""

    session_id: str
    model_id: str
    sampler_id: str
    weights_path: str
    sampler_path: str
    next_seq: int = 3
    sample_seq: int = 0


class Api:
    """One client (one API key) of the server."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.key = key

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        content_type: str | None = JSON,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"X-API-Key": self.key, **(headers or {})}
        if content_type is not None:
            sent.setdefault("Content-Type", content_type)
        content = body if isinstance(body, bytes) or body is None else j(body)
        url = path if path.startswith("/") else f"/api/v1/{path}"
        return await self.client.request(method, url, content=content, headers=sent)

    async def post(self, path: str, body: object, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, body, **kwargs)

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path, content_type=None)

    async def ok(self, path: str, body: object, **kwargs: Any) -> Any:
        response = await self.post(path, body, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    async def settle(self, request_id: str) -> httpx.Response:
        """Poll a future until it is no longer pending; return the final answer."""
        while True:
            response = await self.post(
                "retrieve_future", {"request_id": request_id}, headers={"Accept": PROTO}
            )
            if response.headers["content-type"].startswith(PROTO):
                return response
            if response.status_code != 200 or response.json().get("type") != "try_again":
                return response

    async def forward_backward(self, model_id: str, seq_id: int, **kwargs: Any) -> httpx.Response:
        body = fb_body(model_id, seq_id, **kwargs)
        return await self.post("forward_backward", body, content_type=PROTO)

    async def build_world(self) -> World:
        """A session with a model (two checkpoints saved) and a sampler on the base model."""
        session = await self.ok("create_session", CreateSessionRequest(sdk_version="x"))
        session_id = session["session_id"]
        created = await self.ok(
            "create_model",
            CreateModelRequest(
                session_id=session_id,
                model_seq_id=0,
                base_model="local/tiny",
                lora_config=LoraConfig(rank=4),
            ),
        )
        await self.settle(created["request_id"])
        model_id = created["model_id"]
        saved = await self.ok(
            "save_weights", SaveWeightsRequest(model_id=model_id, path="w", seq_id=1)
        )
        weights_path = (await self.settle(saved["request_id"])).json()["path"]
        saved = await self.ok(
            "save_weights_for_sampler",
            SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=2),
        )
        sampler_path = (await self.settle(saved["request_id"])).json()["path"]
        sampler = await self.ok(
            "create_sampling_session",
            CreateSamplingSessionRequest(
                session_id=session_id, sampling_session_seq_id=0, base_model="local/tiny"
            ),
        )
        return World(
            session_id=session_id,
            model_id=model_id,
            sampler_id=sampler["sampling_session_id"],
            weights_path=weights_path,
            sampler_path=sampler_path,
        )

    async def still_serving(self, world: World) -> None:
        """healthz answers, and the model's next operation and a sample both succeed."""
        health = await self.get("healthz")
        assert health.json() == {"status": "ok"}, health.text
        step = await self.ok(
            "optim_step",
            OptimStepRequest(
                model_id=world.model_id, seq_id=world.next_seq, adam_params=AdamParams()
            ),
        )
        settled = await self.settle(step["request_id"])
        assert "metrics" in settled.json(), settled.text
        world.next_seq += 1
        sample = SampleRequest(
            prompt=ModelInput.from_ints([5, 6, 7]),
            sampling_params=SamplingParams(max_tokens=3),
            sampling_session_id=world.sampler_id,
            seq_id=world.sample_seq,
        )
        world.sample_seq += 1
        future = await self.ok("asample", sample)
        answer = await self.settle(future["request_id"])
        assert answer.headers["content-type"].startswith(PROTO), answer.text


def datum(tokens: list[int], targets: list[int] | None = None) -> Datum:
    target = targets if targets is not None else [t + 1 for t in tokens]
    return Datum(
        model_input=ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": TensorData(data=target, dtype="int64")},
    )


def fb_body(
    model_id: str,
    seq_id: int,
    data: list[Datum] | None = None,
    *,
    compress: bool = False,
) -> bytes:
    request = ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data if data is not None else [datum([10, 11, 12, 13])],
            loss_fn="cross_entropy",
        ),
        model_id=model_id,
        seq_id=seq_id,
    )
    return encode_forward_backward_request(request, compress=compress)


def sample_body(world: World, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [5, 6, 7]}]},
        "sampling_params": {"max_tokens": 4},
        "sampling_session_id": world.sampler_id,
        "seq_id": 10_000 + world.sample_seq,
        "type": "sample",
    }
    world.sample_seq += 1
    body.update(fields)
    return body


@asynccontextmanager
async def in_process(
    *keys: str, **server_options: Any
) -> AsyncIterator[tuple[LocalServer, list[Api]]]:
    """A server and one in-process client per key (``KEY`` when none are given)."""
    async with open_local_server(**server_options) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield server, [Api(client, key) for key in keys or (KEY,)]


@asynccontextmanager
async def serving(**server_options: Any) -> AsyncIterator[tuple[LocalServer, str]]:
    """A server on a 127.0.0.1 socket: yields it and its URL."""
    async with open_local_server(**server_options) as server, trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        try:
            yield server, url
        finally:
            nursery.cancel_scope.cancel()


def refused(response: httpx.Response, status: int, limit: str, value: int | str) -> str:
    """Assert a refusal naming ``limit = value``; return its detail."""
    assert response.status_code == status, response.text[:300]
    detail = response.json()["detail"]
    assert f"{limit} = {value}" in detail, detail
    assert f"--limit {limit}=" in detail, detail
    return str(detail)


def tracebacks(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """The log records that carry a traceback (or are errors)."""
    return [r for r in records if r.exc_info is not None or r.levelno >= logging.ERROR]


class Raw:
    """A raw client socket: send any bytes, read one response (or the close)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, url: str) -> Raw:
        port = int(url.rsplit(":", 1)[1])
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send_head(
        self, method: str, path: str, headers: list[tuple[str, str]], key: str = KEY
    ) -> None:
        """Send a request head (the body, if any, is the caller's to send)."""
        all_headers = [("host", "local"), ("x-api-key", key), *headers]
        await self.stream.send_all(
            self.conn.send(h11.Request(method=method, target=path, headers=all_headers))
        )

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """Read the next response: status, headers, body."""
        head: h11.Response | None = None
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode(): v.decode() for k, v in head.headers}
                return head.status_code, headers, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def closed(self) -> bool:
        """Whether the server closed the connection (reads until EOF or a reset)."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (guard the caller with ``trio.fail_after``).

    For state a socket peer's kernel changes (a close the server has yet to read): no trio
    event exists to wait on, so this polls.
    """
    while not condition():  # noqa: ASYNC110 (no event to wait on: see the docstring)
        await trio.sleep(0.005)


def limits(**values: Any) -> Any:
    """``ServerLimits(**values)``, imported when called (so this module loads on any version)."""
    from tinker_actors.local import ServerLimits

    return ServerLimits(**values)
