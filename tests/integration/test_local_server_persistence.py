"""The local server keeps sessions, runs, samplers and checkpoints in ``data_dir`` across restarts.

A first server trains a model a step, saves every kind of checkpoint and samples; it is closed
and a second server opened on the same directory. The REST views must be identical, and the
saved state must still work: a new session creates a model from the checkpoint (create-via-load)
whose forward pass matches the one before the restart, and samples from the saved sampler
weights with the same seed give the same tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio
import trio.testing

from tinker_actors.local import open_local_server
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    decode_sample_response,
    encode_forward_backward_request,
)
from tinker_actors.types import (
    AdamParams,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    Datum,
    FinishSessionRequest,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    LoadWeightsRequest,
    LoraConfig,
    ModelInput,
    OptimStepRequest,
    SampleRequest,
    SamplingParams,
    SaveWeightsExternalRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    SessionHeartbeatRequest,
    TensorData,
)
from tinker_actors.types._session import ClientSessionFinishSuccess

KEY = "tml-persistence-test"
PROTO = "application/x-protobuf"


class Client:
    """Raw HTTP to one server."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, path: str, body: object, **headers: str) -> httpx.Response:
        return await self.http.post(
            f"/api/v1/{path}", content=msgspec.json.encode(body), headers=headers
        )

    async def ok(self, path: str, body: object) -> Any:
        response = await self.post(path, body)
        assert response.status_code == 200, response.text
        return response.json()

    async def get(self, path: str) -> Any:
        response = await self.http.get(f"/api/v1/{path}")
        assert response.status_code == 200, response.text
        return response.json()

    async def result(self, request_id: str, *, proto: bool = False) -> httpx.Response:
        headers = {"Accept": PROTO} if proto else {}
        while True:
            response = await self.post(
                "retrieve_future",
                {"request_id": request_id, "allow_metadata_only": False},
                **headers,
            )
            assert response.status_code == 200, response.text
            if response.headers["content-type"].startswith(PROTO):
                return response
            answer = response.json()
            assert "error" not in answer, answer
            if answer.get("type") != "try_again":
                return response

    async def run(self, path: str, body: object) -> Any:
        return (await self.result((await self.ok(path, body))["request_id"])).json()

    async def session(self) -> str:
        session_id: str = (await self.ok("create_session", CreateSessionRequest(sdk_version="x")))[
            "session_id"
        ]
        return session_id

    async def forward_loss(self, model_id: str, seq_id: int, *, forward_only: bool = True) -> float:
        tokens = [5 + 3 * i for i in range(9)]
        request = ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(
                data=[
                    Datum(
                        model_input=ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={
                            "target_tokens": TensorData(data=tokens[1:], dtype="int64")
                        },
                    )
                ],
                loss_fn="cross_entropy",
            ),
            model_id=model_id,
            seq_id=seq_id,
            forward_only=forward_only,
        )
        submitted = await self.http.post(
            "/api/v1/forward_backward",
            content=encode_forward_backward_request(request, compress=False),
            headers={"Content-Type": PROTO},
        )
        assert submitted.status_code == 200, submitted.text
        payload = await self.result(submitted.json()["request_id"], proto=True)
        return decode_forward_backward_output(payload.content).metrics["loss:sum"]

    async def sample_tokens(self, sampler_id: str, seq_id: int) -> list[list[int]]:
        request = SampleRequest(
            prompt=ModelInput.from_ints([20, 21, 22]),
            sampling_params=SamplingParams(max_tokens=8, seed=1234),
            num_samples=2,
            sampling_session_id=sampler_id,
            seq_id=seq_id,
        )
        future = await self.ok("asample", request)
        payload = await self.result(future["request_id"], proto=True)
        decoded = decode_sample_response(
            payload.content, sequence_ids=future["sample_sequence_ids"]
        )
        return [s.tokens for s in decoded.sequences]


@asynccontextmanager
async def serving(data_dir: Path, **settings: Any) -> AsyncIterator[Client]:
    async with open_local_server(data_dir=data_dir, **settings) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://local", headers={"X-API-Key": KEY}
        ) as http:
            yield Client(http)


async def rest_views(client: Client, run_ids: list[str], session_ids: list[str]) -> dict[str, Any]:
    """Everything the REST surface says about these runs and sessions."""
    return {
        "runs": await client.get("training_runs?limit=50"),
        "checkpoints": await client.get("checkpoints"),
        "per_run": {r: await client.get(f"training_runs/{r}/checkpoints") for r in run_ids},
        "run": {r: await client.get(f"training_runs/{r}") for r in run_ids},
        "sessions": await client.get("sessions"),
        "session": {s: await client.get(f"sessions/{s}") for s in session_ids},
    }


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with serving(tmp_path) as first:
            session_id = await first.session()
            finished_id = await first.session()
            create = CreateModelRequest(
                session_id=session_id,
                model_seq_id=0,
                base_model="local/tiny",
                lora_config=LoraConfig(rank=4, train_attn=False),
                user_metadata={"purpose": "restart"},
            )
            model_id = (await first.run("create_model", create))["model_id"]
            await first.forward_loss(model_id, 1, forward_only=False)
            await first.run(
                "optim_step",
                OptimStepRequest(model_id=model_id, seq_id=2, adam_params=AdamParams()),
            )
            trained_loss = await first.forward_loss(model_id, 3)
            weights = (
                await first.run(
                    "save_weights", SaveWeightsRequest(model_id=model_id, path="w", seq_id=4)
                )
            )["path"]
            sampler_weights = (
                await first.run(
                    "save_weights_for_sampler",
                    SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=5),
                )
            )["path"]
            await first.run(
                "save_weights_for_sampler",
                SaveWeightsForSamplerRequest(
                    model_id=model_id, sampling_session_seq_id=7, seq_id=6
                ),
            )
            await first.run(
                "save_weights_external",
                SaveWeightsExternalRequest(model_id=model_id, path="x", seq_id=7),
            )
            publish = await first.http.post(
                f"/api/v1/training_runs/{model_id}/checkpoints/weights/w/publish"
            )
            assert publish.status_code == 200
            sampler_id = (
                await first.ok(
                    "create_sampling_session",
                    CreateSamplingSessionRequest(
                        session_id=session_id, sampling_session_seq_id=0, model_path=sampler_weights
                    ),
                )
            )["sampling_session_id"]
            sampled = await first.sample_tokens(sampler_id, 0)
            finish = FinishSessionRequest(reason=ClientSessionFinishSuccess())
            await first.ok(f"sessions/{finished_id}/finish", finish)
            before = await rest_views(first, [model_id], [session_id, finished_id])
            sampler_before = await first.get(f"samplers/{sampler_id}")

        async with serving(tmp_path) as second:
            after = await rest_views(second, [model_id], [session_id, finished_id])
            assert after == before
            # the ephemeral sampler weights stay unlisted; the named ones and the publish survive
            ids = [c["checkpoint_id"] for c in after["per_run"][model_id]["checkpoints"]]
            assert ids == ["weights/w", "sampler_weights/s", "external_weights/x"]
            assert after["per_run"][model_id]["checkpoints"][0]["public"] is True
            assert after["run"][model_id]["user_metadata"] == {"purpose": "restart"}
            assert await second.get(f"samplers/{sampler_id}") == sampler_before
            info = await second.ok("weights_info", {"tinker_path": weights})
            assert info["lora_rank"] == 4
            assert info["train_attn"] is False

            # a finished session stays finished; the live one is still usable
            gone = await second.post(
                "session_heartbeat", SessionHeartbeatRequest(session_id=finished_id)
            )
            assert gone.status_code == 410
            await second.ok("session_heartbeat", SessionHeartbeatRequest(session_id=session_id))
            # the old model is not loaded any more: 404 with the way out
            stale = await second.post(
                "optim_step",
                OptimStepRequest(model_id=model_id, seq_id=8, adam_params=AdamParams()),
            )
            assert stale.status_code == 404
            assert "load a checkpoint" in stale.json()["detail"]

            # a new session loads the checkpoint and computes exactly what the old model did
            new_session = await second.session()
            loaded = await second.run(
                "load_weights",
                LoadWeightsRequest(
                    session_id=new_session, model_seq_id=0, path=weights, optimizer=True
                ),
            )
            assert loaded["model_id"] == f"{new_session}:train:0"
            assert await second.forward_loss(loaded["model_id"], 1) == trained_loss
            new_info = await second.ok(
                "get_info", {"model_id": loaded["model_id"], "type": "get_info"}
            )
            assert new_info["lora_rank"] == 4

            # the saved sampler weights sample the same tokens for the same seed, from a new
            # sampling session and from the one created before the restart
            new_sampler = (
                await second.ok(
                    "create_sampling_session",
                    CreateSamplingSessionRequest(
                        session_id=new_session,
                        sampling_session_seq_id=0,
                        model_path=sampler_weights,
                    ),
                )
            )["sampling_session_id"]
            assert await second.sample_tokens(new_sampler, 0) == sampled
            assert await second.sample_tokens(sampler_id, 1) == sampled

            # new ids never collide with the old ones
            assert new_sampler != sampler_id
            assert new_session not in (session_id, finished_id)
            assert len((await second.get("training_runs"))["training_runs"]) == 2

        # a third start sees what the second one added
        async with serving(tmp_path) as third:
            runs = await third.get("training_runs")
            assert {r["training_run_id"] for r in runs["training_runs"]} == {
                model_id,
                loaded["model_id"],
            }
            sessions = (await third.get("sessions"))["sessions"]
            assert set(sessions) == {session_id, finished_id, new_session}


async def test_restarted_sessions_expire_without_heartbeats(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(tmp_path) as first:
        session_id = await first.session()
    async with serving(tmp_path, session_timeout=30) as second:
        await second.ok("session_heartbeat", SessionHeartbeatRequest(session_id=session_id))
        await trio.sleep(60)
        expired = await second.post(
            "session_heartbeat", SessionHeartbeatRequest(session_id=session_id)
        )
        assert expired.status_code == 410
        assert "expired" in expired.json()["detail"]
    async with serving(tmp_path) as third:  # and the expiry itself persisted
        again = await third.post(
            "session_heartbeat", SessionHeartbeatRequest(session_id=session_id)
        )
        assert again.status_code == 410
