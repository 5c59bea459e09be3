"""The local server on a real loopback socket (its own HTTP/1.1 server), spoken to by our own transport.

This is the path a user takes (``tinker-actors serve`` + the SDK): HTTP/1.1 over TCP, the
transport's headers, retries and error mapping, and JWT mode with the transport's lazy
exchange. Concurrent submissions over several connections must still apply in seq_id order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tinker_actors.config import resolve_config
from tinker_actors.errors import ConflictError, NotFoundError, UnprocessableEntityError
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.transport import RequestOptions, Transport, open_transport
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    decode_sample_response,
    encode_forward_backward_request,
)
from tinker_actors.types import (
    AdamParams,
    ClientConfigResponse,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    CreateSessionResponse,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    LoraConfig,
    ModelInput,
    OptimStepRequest,
    SampleRequest,
    SamplingParams,
    SessionHeartbeatRequest,
    TensorData,
    TrainingRunsResponse,
    UntypedAPIFuture,
)

PROTO = "application/x-protobuf"
NO_RETRY = RequestOptions(max_retries=0)


@asynccontextmanager
async def served(**settings: Any) -> AsyncIterator[tuple[LocalServer, Transport]]:
    """The server on 127.0.0.1 and a transport connected to its URL."""
    async with open_local_server(**settings) as server, trio.open_nursery() as nursery:
        url: str = await nursery.start(server.serve)
        assert url.startswith("http://127.0.0.1:")
        config = resolve_config(base_url=url, api_key="tml-x", env={}, max_retries=0)
        async with open_transport(config) as transport:
            yield server, transport
        nursery.cancel_scope.cancel()


async def result(transport: Transport, request_id: str, *, proto: bool = False) -> bytes:
    options = RequestOptions(accept=PROTO) if proto else None
    while True:
        response = await transport.request(
            "POST",
            "/api/v1/retrieve_future",
            json={"request_id": request_id, "allow_metadata_only": False},
            options=options,
        )
        if response.headers["content-type"].startswith(PROTO):
            return response.content
        answer = response.json()
        assert "error" not in answer, answer
        if answer.get("type") != "try_again":
            return response.content


def fb_body(model_id: str, seq_id: int, *, forward_only: bool = False) -> bytes:
    tokens = list(range(30, 40))
    datum = Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": TensorData(data=tokens[1:], dtype="int64")},
    )
    request = ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(data=[datum], loss_fn="cross_entropy"),
        model_id=model_id,
        seq_id=seq_id,
        forward_only=forward_only,
    )
    return encode_forward_backward_request(request, compress=False)


async def bootstrap(transport: Transport) -> tuple[str, str]:
    """client/config, a session and a trained-ready model; return (session_id, model_id)."""
    flags = (
        await transport.request(
            "POST",
            "/api/v1/client/config",
            json={"sdk_version": "0.1.0"},
            options=RequestOptions(raw_credential=True),
        )
    ).decode(ClientConfigResponse)
    transport.configure(jwt_auth=flags.pjwt_auth_enabled)
    session = (
        await transport.request(
            "POST", "/api/v1/create_session", json=CreateSessionRequest(sdk_version="0.1.0")
        )
    ).decode(CreateSessionResponse)
    future = (
        await transport.request(
            "POST",
            "/api/v1/create_model",
            json=CreateModelRequest(
                session_id=session.session_id,
                model_seq_id=0,
                base_model="local/tiny",
                lora_config=LoraConfig(rank=4),
            ),
        )
    ).decode(UntypedAPIFuture)
    await result(transport, future.request_id)
    assert future.model_id is not None
    return session.session_id, future.model_id


async def test_simple_flow_over_loopback() -> None:
    with trio.fail_after(60):
        async with served() as (server, transport):
            session_id, model_id = await bootstrap(transport)
            assert model_id == f"{session_id}:train:0"

            # pipelined, concurrent and out of order over several connections: applied in order
            futures: dict[int, UntypedAPIFuture] = {}

            async def submit(seq_id: int) -> None:
                await trio.sleep(0.01 * (6 - seq_id))  # the highest seq_id leaves first
                if seq_id % 2:
                    response = await transport.request(
                        "POST",
                        "/api/v1/forward_backward",
                        content=fb_body(model_id, seq_id),
                        content_type=PROTO,
                    )
                else:
                    response = await transport.request(
                        "POST",
                        "/api/v1/optim_step",
                        json=OptimStepRequest(
                            model_id=model_id, seq_id=seq_id, adam_params=AdamParams()
                        ),
                    )
                futures[seq_id] = response.decode(UntypedAPIFuture)

            async with trio.open_nursery() as nursery:
                for seq_id in range(1, 7):
                    nursery.start_soon(submit, seq_id)
            losses = []
            for seq_id in (1, 3, 5):
                body = await result(transport, futures[seq_id].request_id, proto=True)
                losses.append(decode_forward_backward_output(body).metrics["loss:sum"])
            assert losses[0] > losses[1] > losses[2]  # an optimizer step between each
            models = server.counters()["models"]
            assert isinstance(models, dict)
            assert models[model_id]["applied_seq_ids"] == list(range(7))

            # sampling
            sampler = (
                await transport.request(
                    "POST",
                    "/api/v1/create_sampling_session",
                    json=CreateSamplingSessionRequest(
                        session_id=session_id, sampling_session_seq_id=0, base_model="local/tiny"
                    ),
                )
            ).json()["sampling_session_id"]
            sample = (
                await transport.request(
                    "POST",
                    "/api/v1/asample",
                    json=SampleRequest(
                        prompt=ModelInput.from_ints([1, 2, 3]),
                        sampling_params=SamplingParams(max_tokens=4, seed=3),
                        num_samples=2,
                        sampling_session_id=sampler,
                        seq_id=0,
                    ),
                    options=RequestOptions(
                        extra_headers={"X-Tinker-Sampling-Backpressure": "1"}, max_retries=0
                    ),
                )
            ).decode(UntypedAPIFuture)
            body = await result(transport, sample.request_id, proto=True)
            decoded = decode_sample_response(body, sequence_ids=sample.sample_sequence_ids)
            assert [len(s.tokens) for s in decoded.sequences] == [4, 4]

            # REST with query parameters
            runs = (
                await transport.request(
                    "GET", "/api/v1/training_runs", params={"limit": 5, "offset": 0}
                )
            ).decode(TrainingRunsResponse)
            assert [r.training_run_id for r in runs.training_runs] == [model_id]
            assert runs.cursor.total_count == 1

            # errors arrive typed, with the server's detail
            with pytest.raises(NotFoundError, match="unknown session 'nope'"):
                await transport.request(
                    "POST",
                    "/api/v1/session_heartbeat",
                    json=SessionHeartbeatRequest(session_id="nope"),
                    options=NO_RETRY,
                )
            with pytest.raises(ConflictError, match="seq_id 1 was already used"):
                await transport.request(
                    "POST",
                    "/api/v1/forward_backward",
                    content=fb_body(model_id, 1, forward_only=True),
                    content_type=PROTO,
                    options=NO_RETRY,
                )
            with pytest.raises(UnprocessableEntityError, match="unknown field"):
                await transport.request(
                    "POST", "/api/v1/create_session", json={"sdk_version": "x", "nope": 1}
                )
            health = await transport.request("GET", "/api/v1/healthz")
            assert health.json() == {"status": "ok"}
            assert health.http_version == "HTTP/1.1"


async def test_jwt_mode_over_loopback_exchanges_once() -> None:
    with trio.fail_after(60):
        async with served(jwt_auth=True) as (server, transport):
            session_id, model_id = await bootstrap(transport)
            for seq_id in (1, 2):
                response = await transport.request(
                    "POST",
                    "/api/v1/optim_step",
                    json=OptimStepRequest(
                        model_id=model_id, seq_id=seq_id, adam_params=AdamParams()
                    ),
                )
                await result(transport, response.decode(UntypedAPIFuture).request_id)
            beat = await transport.request(
                "POST",
                "/api/v1/session_heartbeat",
                json=SessionHeartbeatRequest(session_id=session_id),
            )
            assert beat.json() == {"type": "session_heartbeat"}
            assert server.auth.issued == 1  # one lazy exchange served every later request
