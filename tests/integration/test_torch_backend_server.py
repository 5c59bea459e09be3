"""The local server on the torch backend answers heartbeats and polls during a training step.

The backend runs torch work in worker threads, so the event loop stays free. To prove it
without timing, a test backend blocks its forward_backward *inside the worker thread* on a
``threading.Event``: while it is blocked, a heartbeat and a retrieve_future poll must both be
answered (the poll with try_again); after the release the step's result arrives intact.
Latency under a real long step is measured in bench/backend.py, not here.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import msgspec
import pytest
import trio

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

from tinker_actors.local import open_local_server
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    encode_forward_backward_request,
)
from tinker_actors.types import (
    CreateModelRequest,
    CreateSessionRequest,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    LoraConfig,
    ModelInput,
    SessionHeartbeatRequest,
    TensorData,
)
from tinker_actors.types._tensor import json_enc_hook

HEADERS = {"X-API-Key": "tml-torch-test"}
PROTO = "application/x-protobuf"


class BlockingTorchBackend(TorchBackend):
    """Blocks each forward_backward in its worker thread until released."""

    def __init__(self) -> None:
        super().__init__(device="cpu")
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def _forward_backward_sync(self, *args: Any) -> ForwardBackwardOutput:
        self.entered.set()
        if not self.release.wait(timeout=60):
            raise RuntimeError("the test never released the step")
        try:
            return super()._forward_backward_sync(*args)
        finally:
            self.finished.set()


async def post(client: httpx.AsyncClient, path: str, body: object, **headers: str) -> Any:
    response = await client.post(
        f"/api/v1/{path}",
        content=msgspec.json.encode(body, enc_hook=json_enc_hook),
        headers={**HEADERS, "Content-Type": "application/json", **headers},
    )
    assert response.status_code == 200, response.text
    return response


async def settle(client: httpx.AsyncClient, request_id: str) -> httpx.Response:
    body = {"request_id": request_id, "allow_metadata_only": False}
    for _ in range(200):
        response = await post(client, "retrieve_future", body, Accept=PROTO)
        if response.headers["content-type"].startswith(PROTO):
            return response
        if response.json().get("type") != "try_again":
            return response
    raise AssertionError(f"{request_id} never settled")


async def test_heartbeat_and_poll_answered_while_a_step_runs() -> None:
    backend = BlockingTorchBackend()
    backend.release.set()  # create_model does not block; forward_backward below will
    with trio.fail_after(60):
        async with open_local_server(backend=backend, long_poll_seconds=0.05) as server:
            transport = httpx.ASGITransport(app=server.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                session = await post(
                    client, "create_session", CreateSessionRequest(sdk_version="0.38.0")
                )
                session_id = session.json()["session_id"]
                created = await post(
                    client,
                    "create_model",
                    CreateModelRequest(
                        session_id=session_id,
                        model_seq_id=0,
                        base_model="local/tiny",
                        lora_config=LoraConfig(rank=4),
                    ),
                )
                answer = await settle(client, created.json()["request_id"])
                model_id = answer.json()["model_id"]

                backend.release.clear()
                tokens = list(range(10, 43))
                datum = Datum(
                    model_input=ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={"target_tokens": TensorData(data=tokens[1:], dtype="int64")},
                )
                body = encode_forward_backward_request(
                    ForwardBackwardRequest(
                        forward_backward_input=ForwardBackwardInput(
                            data=[datum], loss_fn="cross_entropy"
                        ),
                        model_id=model_id,
                        seq_id=1,
                    ),
                    compress=False,
                )
                submitted = await client.post(
                    "/api/v1/forward_backward",
                    content=body,
                    headers={**HEADERS, "Content-Type": PROTO},
                )
                assert submitted.status_code == 200, submitted.text
                request_id = submitted.json()["request_id"]
                # the step is now inside its worker thread, blocked
                await trio.to_thread.run_sync(backend.entered.wait)

                beat = await post(
                    client, "session_heartbeat", SessionHeartbeatRequest(session_id=session_id)
                )
                poll = await post(
                    client,
                    "retrieve_future",
                    {"request_id": request_id, "allow_metadata_only": False},
                    Accept=PROTO,
                )
                # both answered while the step had not finished
                assert not backend.finished.is_set()
                assert beat.json() == {"type": "session_heartbeat"}
                assert poll.json()["type"] == "try_again"
                assert server.counters()["totals"]["heartbeats"] == 1  # type: ignore[index]

                backend.release.set()
                result = await settle(client, request_id)
                assert backend.finished.is_set()
                output = decode_forward_backward_output(result.content)
                assert len(output.loss_fn_outputs) == 1
                assert output.metrics["loss:sum"] > 0
