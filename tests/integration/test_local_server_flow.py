"""The local server's whole protocol, driven in-process over raw HTTP (httpx + ASGI under trio).

Every endpoint family of protocol.md §3 is exercised with hand-built bodies (JSON from the
request Structs, protobuf from our codec) and the answers are checked for shape *and* content:
the null backend's outputs follow simple rules (loss falls with optimizer steps, samples are
seeded), so a result that merely has the right shape but comes from the wrong state fails.
Timing behaviour (long polls, expiry, latency, backpressure) runs on trio's virtual clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing

from tinker_actors.local import LocalServer, NullBackend, open_local_server
from tinker_actors.local._backend import BackendInputError, LatencyModel
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
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    FuturesRetrieveRequest,
    LoadWeightsRequest,
    LoraConfig,
    ModelInput,
    OptimStepRequest,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    SamplingSessionFuturesTarget,
    SaveWeightsExternalRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    SessionHeartbeatRequest,
    TensorData,
)
from tinker_actors.types._session import ClientSessionFinishSuccess
from tinker_actors.types._tensor import json_enc_hook

KEY = "tml-flow-test"
BASE = "http://local"
PROTO = "application/x-protobuf"


# -- helpers ----------------------------------------------------------------------------------


class WallClock:
    """A settable POSIX clock for REST timestamps and checkpoint expiry."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def datum(offset: int = 0, n: int = 8) -> Datum:
    """One cross-entropy example of ``n`` positions."""
    tokens = [(offset + 7 * i) % 4000 + 4 for i in range(n + 1)]
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": TensorData(data=tokens[1:], dtype="int64"),
            "weights": TensorData(data=[1.0] * n, dtype="float32"),
        },
    )


def fb_body(
    model_id: str,
    seq_id: int,
    data: list[Datum] | None = None,
    *,
    forward_only: bool = False,
    loss_fn: str = "cross_entropy",
    config: dict[str, float | str] | None = None,
) -> bytes:
    """A protobuf forward_backward body."""
    request = ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data if data is not None else [datum(0), datum(1)],
            loss_fn=loss_fn,  # type: ignore[arg-type]
            loss_fn_config=config,
        ),
        model_id=model_id,
        seq_id=seq_id,
        forward_only=forward_only,
    )
    return encode_forward_backward_request(request, compress=False)


class Api:
    """Raw HTTP calls against the server, with the few conveniences every test needs."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"X-API-Key": KEY, **(extra or {})}

    async def post(
        self,
        path: str,
        body: object = None,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        if content is None:
            content = msgspec.json.encode(body, enc_hook=json_enc_hook)
            headers = {"Content-Type": "application/json", **(headers or {})}
        return await self.client.post(
            f"/api/v1/{path}", content=content, headers=self.headers(headers)
        )

    async def get(self, path: str, **params: object) -> httpx.Response:
        return await self.client.get(
            f"/api/v1/{path}",
            params={k: str(v) for k, v in params.items()},
            headers=self.headers(),
        )

    async def delete(self, path: str) -> httpx.Response:
        return await self.client.delete(f"/api/v1/{path}", headers=self.headers())

    async def put(self, path: str, body: object) -> httpx.Response:
        return await self.client.put(
            f"/api/v1/{path}",
            content=msgspec.json.encode(body),
            headers=self.headers({"Content-Type": "application/json"}),
        )

    async def ok(self, path: str, body: object = None, **kwargs: Any) -> Any:
        response = await self.post(path, body, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    async def session(self) -> str:
        answer = await self.ok("create_session", CreateSessionRequest(sdk_version="0.38.0"))
        session_id: str = answer["session_id"]
        return session_id

    async def poll(
        self, request_id: str, *, proto: bool = False, allow_metadata_only: bool = False
    ) -> httpx.Response:
        headers = {"Accept": PROTO} if proto else {}
        body = {"request_id": request_id, "allow_metadata_only": allow_metadata_only}
        return await self.post("retrieve_future", body, headers=headers)

    async def result(self, request_id: str, *, proto: bool = False) -> httpx.Response:
        """Poll until the answer is not try_again (the server long-polls)."""
        for _ in range(1000):
            response = await self.poll(request_id, proto=proto)
            if response.headers["content-type"].startswith(PROTO):
                return response
            if response.status_code != 200 or response.json().get("type") != "try_again":
                return response
        raise AssertionError(f"{request_id} never settled")

    async def result_json(self, future: Mapping[str, Any]) -> Any:
        response = await self.result(future["request_id"])
        assert response.status_code == 200, response.text
        return response.json()

    async def create_model(
        self, session_id: str, model_seq_id: int = 0, base_model: str = "local/tiny"
    ) -> str:
        request = CreateModelRequest(
            session_id=session_id,
            model_seq_id=model_seq_id,
            base_model=base_model,
            lora_config=LoraConfig(rank=8),
        )
        answer = await self.result_json(await self.ok("create_model", request))
        assert answer == {"model_id": f"{session_id}:train:{model_seq_id}", "type": "create_model"}
        model_id: str = answer["model_id"]
        return model_id

    async def fwdbwd(self, body: bytes, headers: Mapping[str, str] | None = None) -> httpx.Response:
        return await self.post(
            "forward_backward", content=body, headers={"Content-Type": PROTO, **(headers or {})}
        )

    async def fwdbwd_output(self, body: bytes) -> ForwardBackwardOutput:
        submitted = await self.fwdbwd(body)
        assert submitted.status_code == 200, submitted.text
        response = await self.result(submitted.json()["request_id"], proto=True)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(PROTO), response.text
        return decode_forward_backward_output(response.content)

    async def optim(self, model_id: str, seq_id: int, lr: float = 1e-3) -> Any:
        request = OptimStepRequest(
            model_id=model_id, seq_id=seq_id, adam_params=AdamParams(learning_rate=lr)
        )
        return await self.ok("optim_step", request)

    async def sampler(self, session_id: str, seq: int = 0, **where: str) -> str:
        request = CreateSamplingSessionRequest(
            session_id=session_id,
            sampling_session_seq_id=seq,
            base_model=where.get("base_model", "local/tiny" if "model_path" not in where else None),
            model_path=where.get("model_path"),
        )
        answer = await self.ok("create_sampling_session", request)
        assert answer["type"] == "create_sampling_session"
        sampler_id: str = answer["sampling_session_id"]
        return sampler_id

    def sample_request(
        self, sampler_id: str, seq_id: int, prompt: list[int] | None = None, **kwargs: Any
    ) -> SampleRequest:
        params = kwargs.pop(
            "sampling_params", SamplingParams(max_tokens=6, seed=kwargs.pop("seed", None))
        )
        return SampleRequest(
            prompt=ModelInput.from_ints(prompt if prompt is not None else [11, 12, 13, 14, 15]),
            sampling_params=params,
            sampling_session_id=sampler_id,
            seq_id=seq_id,
            **kwargs,
        )

    async def sample(
        self, request: SampleRequest, headers: Mapping[str, str] | None = None
    ) -> tuple[dict[str, Any], SampleResponse]:
        future = await self.ok("asample", request, headers=headers)
        response = await self.result(future["request_id"], proto=True)
        assert response.headers["content-type"].startswith(PROTO), response.text
        return future, decode_sample_response(
            response.content, sequence_ids=future["sample_sequence_ids"]
        )


@asynccontextmanager
async def open_api(**settings: Any) -> AsyncIterator[tuple[LocalServer, Api]]:
    """A server with ``settings`` and a raw HTTP client on its ASGI app."""
    async with open_local_server(**settings) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            # a guard against hangs, in virtual time under autojump_clock (no test needs more)
            with trio.fail_after(600):
                yield server, Api(client)


def totals(server: LocalServer) -> dict[str, int]:
    counters = server.counters()["totals"]
    assert isinstance(counters, dict)
    return counters


def model_counters(server: LocalServer, model_id: str) -> dict[str, Any]:
    models = server.counters()["models"]
    assert isinstance(models, dict)
    found: dict[str, Any] = models[model_id]
    return found


class FailingBackend(NullBackend):
    """A null backend that refuses any batch of three datums (a user error)."""

    async def forward_backward(
        self, model_id: str, data: Any, loss_fn: str, loss_fn_config: Any, *, forward_only: bool
    ) -> ForwardBackwardOutput:
        # loss_fn_config keys are checked before a backend sees them, so the trigger is the size
        if len(data) == 3:
            raise BackendInputError("datum 0: this backend refuses the batch (test double)")
        return await super().forward_backward(
            model_id, data, loss_fn, loss_fn_config, forward_only=forward_only
        )


# -- bootstrap --------------------------------------------------------------------------------


async def test_bootstrap_config_session_and_heartbeat() -> None:
    async with open_api() as (server, api):
        flags = await api.ok("client/config", {"sdk_version": "0.38.0"})
        assert flags["pjwt_auth_enabled"] is False
        assert flags["fwdbwd_max_chunk_len"] == 1024
        dynamic = await api.ok("client/dynamic_config", {"sdk_version": "0.38.0"})
        assert dynamic["refresh_interval_sec"] == 300
        health = await api.client.get("/api/v1/healthz")
        assert health.json() == {"status": "ok"}
        caps = (await api.get("get_server_capabilities")).json()
        assert {m["model_name"] for m in caps["supported_models"]} >= {"local/tiny"}
        created = await api.ok(
            "create_session", CreateSessionRequest(sdk_version="0.38.0", tags=["a"])
        )
        assert created["type"] == "create_session"
        session_id = created["session_id"]
        beat = await api.ok("session_heartbeat", SessionHeartbeatRequest(session_id=session_id))
        assert beat == {"type": "session_heartbeat"}
        assert totals(server)["heartbeats"] == 1
        # a create_session re-POSTed with the same idempotency key is the same session
        key = {"X-Idempotency-Key": "stainless-python-retry-1"}
        first = await api.ok("create_session", CreateSessionRequest(sdk_version="x"), headers=key)
        again = await api.ok("create_session", CreateSessionRequest(sdk_version="x"), headers=key)
        assert first["session_id"] == again["session_id"] != session_id


async def test_create_model_and_get_info_tokenizer() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    async with open_api() as (_, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        with trio.fail_after(120):  # the tokenizer is built once, in a thread
            info = await api.ok("get_info", {"model_id": model_id, "type": "get_info"})
        assert info["model_id"] == model_id
        assert info["is_lora"] is True
        assert info["lora_rank"] == 8
        assert info["model_data"]["model_name"] == "local/tiny"
        directory = Path(info["model_data"]["tokenizer_id"])
        tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        assert tokenizer.get_vocab_size() == 4096
        ids = tokenizer.encode("hello world").ids
        assert ids
        assert all(0 <= i < 4096 for i in ids)


# -- training ---------------------------------------------------------------------------------


async def test_training_ops_save_and_load_both_ways() -> None:
    async with open_api() as (server, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        batch = [datum(0), datum(1)]
        before = await api.fwdbwd_output(fb_body(model_id, 1, batch))
        assert len(before.loss_fn_outputs) == 2
        assert before.loss_fn_outputs[0]["logprobs"].shape == [8]
        assert before.loss_fn_outputs[0]["logprobs"].dtype == "float32"
        loss0 = before.metrics["loss:sum"]
        assert loss0 > 0
        step = await api.result_json(await api.optim(model_id, 2, lr=0.5))
        assert step["metrics"] == {"learning_rate:mean": 0.5}
        after = await api.fwdbwd_output(fb_body(model_id, 3, batch, forward_only=True))
        loss1 = after.metrics["loss:sum"]
        assert 0 < loss1 < loss0  # one optimizer step taken

        saved = await api.result_json(
            await api.ok("save_weights", SaveWeightsRequest(model_id=model_id, path="s1", seq_id=4))
        )
        assert saved["path"] == f"tinker://{model_id}/weights/s1"
        named = await api.result_json(
            await api.ok(
                "save_weights_for_sampler",
                SaveWeightsForSamplerRequest(model_id=model_id, path="p1", seq_id=5),
            )
        )
        assert named["path"] == f"tinker://{model_id}/sampler_weights/p1"
        ephemeral = await api.result_json(
            await api.ok(
                "save_weights_for_sampler",
                SaveWeightsForSamplerRequest(
                    model_id=model_id, sampling_session_seq_id=0, seq_id=6
                ),
            )
        )
        assert ephemeral["sampling_session_id"] == f"{session_id}:sample:0"
        assert ephemeral.get("path") is None
        external = await api.result_json(
            await api.ok(
                "save_weights_external",
                SaveWeightsExternalRequest(model_id=model_id, path="x1", seq_id=7),
            )
        )
        assert external["path"] == f"tinker://{model_id}/external_weights/x1"
        assert external["size_bytes"] > 0

        # train one more step, then load the checkpoint back (legacy addressing): loss returns
        await api.fwdbwd_output(fb_body(model_id, 8, batch))
        await api.result_json(await api.optim(model_id, 9))
        two_steps = await api.fwdbwd_output(fb_body(model_id, 10, batch, forward_only=True))
        assert two_steps.metrics["loss:sum"] < loss1
        for seq_id, optimizer in ((11, True), (12, False)):
            loaded = await api.result_json(
                await api.ok(
                    "load_weights",
                    LoadWeightsRequest(
                        model_id=model_id, seq_id=seq_id, path=saved["path"], optimizer=optimizer
                    ),
                )
            )
            assert loaded["path"] == saved["path"]
            assert loaded["model_id"] == model_id
        restored = await api.fwdbwd_output(fb_body(model_id, 13, batch, forward_only=True))
        assert restored.metrics["loss:sum"] == pytest.approx(loss1)

        # create-via-load: a new model in the session from the checkpoint, with and without Adam
        for model_seq_id, optimizer in ((1, True), (2, False)):
            created = await api.result_json(
                await api.ok(
                    "load_weights",
                    LoadWeightsRequest(
                        session_id=session_id,
                        model_seq_id=model_seq_id,
                        path=saved["path"],
                        optimizer=optimizer,
                    ),
                )
            )
            new_id = f"{session_id}:train:{model_seq_id}"
            assert created["model_id"] == new_id
            out = await api.fwdbwd_output(fb_body(new_id, 1, batch, forward_only=True))
            assert out.metrics["loss:sum"] == pytest.approx(loss1)

        counters = model_counters(server, model_id)
        assert counters["applied_seq_ids"] == list(range(14))
        assert counters["failed"] == 0
        assert totals(server)["applied:LoadWeights"] == 4


async def test_backend_user_error_is_a_request_failed_answer() -> None:
    async with open_api(backend=FailingBackend()) as (server, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        submitted = await api.fwdbwd(fb_body(model_id, 1, data=[datum(0), datum(1), datum(2)]))
        assert submitted.status_code == 200
        answer = await api.result(submitted.json()["request_id"], proto=True)
        assert answer.status_code == 200
        assert answer.json() == {
            "error": "datum 0: this backend refuses the batch (test double)",
            "category": "user",
        }
        # the model goes on: the next seq_id runs normally
        out = await api.fwdbwd_output(fb_body(model_id, 2))
        assert out.metrics["loss:sum"] > 0
        # a checkpoint name that exists fails that save only (in order, as a user error)
        for seq_id in (3, 4):
            failed_or_not = await api.result_json(
                await api.ok(
                    "save_weights", SaveWeightsRequest(model_id=model_id, path="dup", seq_id=seq_id)
                )
            )
        assert failed_or_not["category"] == "user"
        assert "exists" in failed_or_not["error"]
        assert "overwrite" in failed_or_not["error"]
        overwritten = await api.result_json(
            await api.ok(
                "save_weights",
                SaveWeightsRequest(model_id=model_id, path="dup", seq_id=5, overwrite=True),
            )
        )
        assert overwritten["path"].endswith("/weights/dup")
        assert model_counters(server, model_id)["applied_seq_ids"] == [0, 1, 2, 3, 4, 5]


# -- sampling ---------------------------------------------------------------------------------


async def test_sampling_base_model_and_saved_weights() -> None:
    async with open_api() as (server, api):
        session_id = await api.session()
        sampler_id = await api.sampler(session_id, 0)
        described = (await api.get(f"samplers/{sampler_id}")).json()
        assert described == {
            "sampler_id": sampler_id,
            "base_model": "local/tiny",
            "model_path": None,
        }

        future, result = await api.sample(
            api.sample_request(
                sampler_id,
                0,
                num_samples=3,
                seed=7,
                prompt_logprobs=True,
                topk_prompt_logprobs=2,
                topk_sample_logprobs=2,
            )
        )
        assert len(future["sample_sequence_ids"]) == 3
        assert [s.sequence_id for s in result.sequences] == future["sample_sequence_ids"]
        for sequence in result.sequences:
            assert len(sequence.tokens) == 6
            assert sequence.stop_reason == "length"
            assert sequence.logprobs is not None
            assert len(sequence.logprobs) == 6
            assert sequence.topk_logprobs is not None
            assert len(sequence.topk_logprobs) == 6
            row = sequence.topk_logprobs[0]
            assert row is not None
            assert len(row) == 2
            assert row[0][0] == sequence.tokens[0]  # the sampled token first
        prompt_lps = result.prompt_logprobs
        assert prompt_lps is not None
        assert len(prompt_lps) == 5
        assert prompt_lps[0] is None
        assert all(lp is not None and lp < 0 for lp in prompt_lps[1:])
        topk_prompt = result.topk_prompt_logprobs
        assert topk_prompt is not None
        assert topk_prompt[0] is None
        assert topk_prompt[1] is not None

        # same seed, same tokens; another seed, other tokens
        _, same = await api.sample(api.sample_request(sampler_id, 1, num_samples=3, seed=7))
        _, other = await api.sample(api.sample_request(sampler_id, 2, num_samples=3, seed=8))
        assert [s.tokens for s in same.sequences] == [s.tokens for s in result.sequences]
        assert [s.tokens for s in other.sequences] != [s.tokens for s in result.sequences]

        _, last_n = await api.sample(
            api.sample_request(sampler_id, 3, prompt_logprobs=True, prompt_logprobs_last_n=2)
        )
        scored = last_n.prompt_logprobs
        assert scored is not None
        assert scored[:3] == [None, None, None]
        assert all(lp is not None for lp in scored[3:])
        assert scored[3:] == pytest.approx(prompt_lps[3:])

        # sampler weights saved after a training step answer differently for the same seed
        model_id = await api.create_model(session_id)
        await api.fwdbwd_output(fb_body(model_id, 1))
        await api.result_json(await api.optim(model_id, 2))
        saved = await api.result_json(
            await api.ok(
                "save_weights_for_sampler",
                SaveWeightsForSamplerRequest(model_id=model_id, path="trained", seq_id=3),
            )
        )
        trained_id = await api.sampler(session_id, 1, model_path=saved["path"])
        assert trained_id != sampler_id
        described = (await api.get(f"samplers/{trained_id}")).json()
        assert described["model_path"] == saved["path"]
        assert described["base_model"] == "local/tiny"
        _, trained = await api.sample(api.sample_request(trained_id, 0, num_samples=3, seed=7))
        assert [s.tokens for s in trained.sequences] != [s.tokens for s in result.sequences]
        # the same weights again give the same answer
        _, again = await api.sample(api.sample_request(trained_id, 1, num_samples=3, seed=7))
        assert [s.tokens for s in again.sequences] == [s.tokens for s in trained.sequences]
        assert totals(server)["applied:Sample"] == 6


async def test_sample_resubmitted_with_same_seq_id_is_applied_once() -> None:
    async with open_api() as (server, api):
        sampler_id = await api.sampler(await api.session())
        request = api.sample_request(sampler_id, 5, num_samples=2)
        first = await api.ok("asample", request)
        second = await api.ok("asample", request)
        assert first == second
        await api.result(first["request_id"], proto=True)
        third = await api.ok("asample", request)  # after completion: still the same future
        assert third["request_id"] == first["request_id"]
        # an idempotency key ties a request to its first answer as well
        key = {"X-Idempotency-Key": "k-1"}
        a = await api.ok("asample", api.sample_request(sampler_id, 6), headers=key)
        b = await api.ok("asample", api.sample_request(sampler_id, 6), headers=key)
        assert a["request_id"] == b["request_id"] != first["request_id"]
        await api.result(a["request_id"], proto=True)
        counts = totals(server)
        assert counts["applied:Sample"] == 2
        assert counts["deduplicated:Sample"] == 3
        assert counts["received:Sample"] == 5


# -- the futures protocol ---------------------------------------------------------------------


async def test_long_poll_answers_try_again_then_the_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = NullBackend(latency={"optim_step": LatencyModel(kind="fixed", a=60)})
    async with open_api(backend=backend, long_poll_seconds=25) as (_, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        future = await api.optim(model_id, 1)
        start = trio.current_time()
        pending = await api.poll(future["request_id"])
        assert pending.json() == {
            "type": "try_again",
            "request_id": future["request_id"],
            "queue_state": "active",
            "queue_state_reason": None,
        }
        assert trio.current_time() - start == pytest.approx(25)
        pending = await api.poll(future["request_id"])
        assert pending.json()["type"] == "try_again"
        assert trio.current_time() - start == pytest.approx(50)
        done = await api.poll(future["request_id"])
        assert done.json()["metrics"] == {"learning_rate:mean": 0.001}
        assert trio.current_time() - start == pytest.approx(60)  # answered when it settled


async def test_complete_metadata_then_payload_and_406_without_accept() -> None:
    async with open_api(metadata_threshold=16) as (_, api):
        model_id = await api.create_model(await api.session())
        submitted = await api.fwdbwd(fb_body(model_id, 1))
        request_id = submitted.json()["request_id"]
        meta = await api.poll(request_id, proto=True, allow_metadata_only=True)
        size = meta.json()["response_payload_size"]
        assert meta.json() == {"status": "complete_metadata", "response_payload_size": size}
        assert size > 16
        refused = await api.poll(request_id)  # no Accept: protobuf
        assert refused.status_code == 406
        assert "Accept: application/x-protobuf" in refused.json()["detail"]
        payload = await api.poll(request_id, proto=True)
        assert payload.headers["content-type"].startswith(PROTO)
        assert len(payload.content) == size
        assert len(decode_forward_backward_output(payload.content).loss_fn_outputs) == 2
        # JSON results follow the same rule: the size first, then the body of that size
        step = await api.optim(model_id, 2)
        answer = await api.result(step["request_id"])  # allow_metadata_only false: the body
        assert "metrics" in answer.json()
        meta = await api.poll(step["request_id"], allow_metadata_only=True)
        assert meta.json()["response_payload_size"] == len(answer.content)


async def test_result_expires_after_result_ttl(autojump_clock: trio.testing.MockClock) -> None:
    async with open_api(result_ttl=10) as (_, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        future = await api.optim(model_id, 1)
        assert (await api.result(future["request_id"])).status_code == 200
        await trio.sleep(9)
        assert (await api.poll(future["request_id"])).status_code == 200  # still within ttl
        await trio.sleep(2)
        gone = await api.poll(future["request_id"])
        assert gone.status_code == 410
        assert "expired" in gone.json()["detail"]
        assert future["request_id"] in gone.json()["detail"]


async def test_retrieve_futures_cursor_acks_and_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=5)})
    async with open_api(backend=backend, long_poll_seconds=20) as (_, api):
        sampler_id = await api.sampler(await api.session())
        target = SamplingSessionFuturesTarget(sampling_session_id=sampler_id)
        a = await api.ok("asample", api.sample_request(sampler_id, 0))
        b = await api.ok("asample", api.sample_request(sampler_id, 1))
        # timeout 0 answers at once, with nothing yet
        start = trio.current_time()
        empty = await api.ok("retrieve_futures", FuturesRetrieveRequest(target=target, timeout=0))
        assert empty == {"completions": [], "cursor": 0}
        assert trio.current_time() == start
        # the default long poll wakes when the samples finish
        first = await api.ok("retrieve_futures", FuturesRetrieveRequest(target=target))
        assert trio.current_time() - start == pytest.approx(5)
        got = {c["request_id"]: c for c in first["completions"]}
        assert set(got) == {a["request_id"], b["request_id"]}
        assert all(c["state"] == "finished" for c in got.values())
        assert all(c["response_payload_uncompressed_size"] > 0 for c in got.values())
        cursor = first["cursor"]
        assert cursor > 0
        # a poll from that cursor has nothing new; with no timeout it holds the long poll
        start = trio.current_time()
        held = await api.ok(
            "retrieve_futures", FuturesRetrieveRequest(target=target, prev_cursor=cursor)
        )
        assert held == {"completions": [], "cursor": cursor}
        assert trio.current_time() - start == pytest.approx(20)
        # a sample fetched and acknowledged as retrieved is dropped server-side
        fetched = await api.result(a["request_id"], proto=True)
        assert fetched.headers["content-type"].startswith(PROTO)
        await api.ok(
            "retrieve_futures",
            FuturesRetrieveRequest(
                target=target,
                prev_cursor=cursor,
                timeout=0,
                retrieved_request_ids=[a["request_id"]],
            ),
        )
        assert (await api.poll(a["request_id"], proto=True)).status_code == 410
        assert (await api.poll(b["request_id"], proto=True)).headers["content-type"] == PROTO
        # from cursor 0 again: only what was not acknowledged is left
        again = await api.ok("retrieve_futures", FuturesRetrieveRequest(target=target, timeout=0))
        assert again["completions"] == []


async def test_cancel_pending_sample(autojump_clock: trio.testing.MockClock) -> None:
    backend = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=100)})
    async with open_api(backend=backend) as (server, api):
        sampler_id = await api.sampler(await api.session())
        future = await api.ok("asample", api.sample_request(sampler_id, 0))
        await trio.sleep(10)
        assert await api.ok("cancel_future", {"request_id": future["request_id"]}) == {}
        answer = await api.poll(future["request_id"], proto=True)
        assert answer.json() == {"error": "cancelled by the client", "category": "user"}
        target = SamplingSessionFuturesTarget(sampling_session_id=sampler_id)
        polled = await api.ok("retrieve_futures", FuturesRetrieveRequest(target=target, timeout=0))
        assert polled["completions"] == [{"state": "failed", "request_id": future["request_id"]}]
        await trio.sleep(200)  # the sample would have finished by now: it must not have run
        assert totals(server).get("applied:Sample", 0) == 0
        assert totals(server)["cancelled"] == 1
        # cancelling again (or a finished future) is a no-op
        assert await api.ok("cancel_future", {"request_id": future["request_id"]}) == {}
        assert totals(server)["cancelled"] == 1
        # the slot was released: a new sample runs
        _, fresh = await api.sample(api.sample_request(sampler_id, 1))
        assert len(fresh.sequences) == 1


async def test_backpressure_429_with_header_queue_without(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=100)})
    async with open_api(backend=backend, sample_capacity=1, long_poll_seconds=25) as (server, api):
        sampler_id = await api.sampler(await api.session())
        bp = {"X-Tinker-Sampling-Backpressure": "1"}
        start = trio.current_time()
        first = await api.ok("asample", api.sample_request(sampler_id, 0), headers=bp)
        await trio.sleep(1)
        refused = await api.post("asample", api.sample_request(sampler_id, 1), headers=bp)
        assert refused.status_code == 429
        assert "capacity of 1" in refused.json()["detail"]
        queued = await api.ok("asample", api.sample_request(sampler_id, 2))
        waiting = await api.poll(queued["request_id"], proto=True)
        assert waiting.json()["type"] == "try_again"
        assert waiting.json()["queue_state"] == "paused_capacity"
        done_first = await api.result(first["request_id"], proto=True)
        assert done_first.headers["content-type"] == PROTO
        assert trio.current_time() - start == pytest.approx(100)
        done_queued = await api.result(queued["request_id"], proto=True)
        assert done_queued.headers["content-type"] == PROTO
        assert trio.current_time() - start == pytest.approx(200)  # ran after the first
        # the refused request, resubmitted with the same seq_id once there is room, is accepted
        retried = await api.ok("asample", api.sample_request(sampler_id, 1), headers=bp)
        assert retried["request_id"] not in (first["request_id"], queued["request_id"])
        counts = totals(server)
        assert counts["backpressure:Sample"] == 1


async def test_backpressure_counts_requests_accepted_in_the_same_instant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=100)})
    async with open_api(backend=backend, sample_capacity=1) as (server, api):
        sampler_id = await api.sampler(await api.session())
        bp = {"X-Tinker-Sampling-Backpressure": "1"}
        statuses: list[int] = []

        async def submit(seq_id: int) -> None:
            response = await api.post("asample", api.sample_request(sampler_id, seq_id), headers=bp)
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for seq_id in range(5):
                nursery.start_soon(submit, seq_id)
        assert sorted(statuses) == [200, 429, 429, 429, 429]
        assert totals(server)["backpressure:Sample"] == 4


# -- ordering and deduplication ---------------------------------------------------------------


async def test_training_ops_out_of_order_run_in_seq_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_api(long_poll_seconds=25) as (server, api):
        model_id = await api.create_model(await api.session())
        third = await api.optim(model_id, 3)
        # seq 3 waits for 1 and 2
        assert (await api.poll(third["request_id"])).json()["type"] == "try_again"
        second = (await api.fwdbwd(fb_body(model_id, 2, forward_only=True))).json()
        assert (await api.poll(third["request_id"])).json()["type"] == "try_again"
        first = (await api.fwdbwd(fb_body(model_id, 1))).json()
        for future in (third, second, first):
            assert (await api.result(future["request_id"], proto=True)).status_code == 200
        counters = model_counters(server, model_id)
        assert counters["applied_seq_ids"] == [0, 1, 2, 3]
        assert counters["applied_kinds"] == [
            "CreateModel",
            "ForwardBackward",
            "Forward",
            "OptimStep",
        ]
        # the forward saw the state before the optimizer step (it ran second)
        out = decode_forward_backward_output(
            (await api.result(second["request_id"], proto=True)).content
        )
        fresh = await api.fwdbwd_output(fb_body(model_id, 4, forward_only=True))
        assert fresh.metrics["loss:sum"] < out.metrics["loss:sum"]


async def test_duplicate_posts_are_applied_once() -> None:
    async with open_api() as (server, api):
        model_id = await api.create_model(await api.session())
        body = fb_body(model_id, 1)
        key = {"X-Idempotency-Key": "stainless-python-retry-abc"}
        a = (await api.fwdbwd(body, key)).json()
        b = (await api.fwdbwd(body, key)).json()  # HTTP-layer retry
        c = (await api.fwdbwd(body, {"X-Idempotency-Key": "other"})).json()  # holder retry
        d = (await api.fwdbwd(body)).json()  # no key at all
        assert a["request_id"] == b["request_id"] == c["request_id"] == d["request_id"]
        await api.result(a["request_id"], proto=True)
        e = (await api.fwdbwd(body)).json()  # late duplicate, after it ran
        assert e["request_id"] == a["request_id"]

        step = OptimStepRequest(model_id=model_id, seq_id=2, adam_params=AdamParams())
        s1 = await api.ok("optim_step", step, headers={"X-Idempotency-Key": "s"})
        s2 = await api.ok("optim_step", step, headers={"X-Idempotency-Key": "s"})
        s3 = await api.ok("optim_step", step)
        assert s1["request_id"] == s2["request_id"] == s3["request_id"]
        await api.result(s1["request_id"])

        # different content under a used seq_id
        clash = await api.fwdbwd(fb_body(model_id, 1, [datum(5)]))
        assert clash.status_code == 409
        assert "seq_id 1 was already used" in clash.json()["detail"]
        clash = await api.post(
            "optim_step",
            OptimStepRequest(model_id=model_id, seq_id=2, adam_params=AdamParams(learning_rate=1)),
        )
        assert clash.status_code == 409
        assert "seq_id 2" in clash.json()["detail"]

        counters = model_counters(server, model_id)
        assert counters["applied_seq_ids"] == [0, 1, 2]
        assert counters["deduplicated"] == 6
        counts = totals(server)
        assert counts["applied:ForwardBackward"] == 1
        assert counts["applied:OptimStep"] == 1
        assert counts["deduplicated:ForwardBackward"] == 4
        assert counts["deduplicated:OptimStep"] == 2


# -- session lifecycle ------------------------------------------------------------------------


async def test_finished_session_refuses_later_operations() -> None:
    async with open_api() as (server, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        sampler_id = await api.sampler(session_id)
        finish = FinishSessionRequest(reason=ClientSessionFinishSuccess(), detail=None)
        assert await api.ok(f"sessions/{session_id}/finish", finish) == {}
        checks = [
            await api.fwdbwd(fb_body(model_id, 1)),
            await api.post("session_heartbeat", SessionHeartbeatRequest(session_id=session_id)),
            await api.post(
                "optim_step",
                OptimStepRequest(model_id=model_id, seq_id=1, adam_params=AdamParams()),
            ),
            await api.post(
                "create_model",
                CreateModelRequest(session_id=session_id, model_seq_id=1, base_model="local/tiny"),
            ),
            await api.post("asample", api.sample_request(sampler_id, 0)),
            await api.post(
                "create_sampling_session",
                CreateSamplingSessionRequest(
                    session_id=session_id, sampling_session_seq_id=5, base_model="local/tiny"
                ),
            ),
        ]
        for response in checks:
            assert response.status_code == 410, response.text
            assert "finished" in response.json()["detail"]
            assert "create a new session" in response.json()["detail"]
        # finishing twice is harmless; the first reason stays
        assert await api.ok(f"sessions/{session_id}/finish", finish) == {}
        assert totals(server)["sessions:success"] == 1
        assert model_counters(server, model_id)["live"] is False
        # REST still describes it
        described = (await api.get(f"sessions/{session_id}")).json()
        assert described["training_run_ids"] == [model_id]
        assert described["sampler_ids"] == [sampler_id]


async def test_session_expires_without_heartbeats(autojump_clock: trio.testing.MockClock) -> None:
    async with open_api(session_timeout=30) as (server, api):
        idle = await api.session()
        idle_model = await api.create_model(idle)
        alive = await api.session()
        alive_model = await api.create_model(alive)

        async def heartbeat_forever() -> None:
            while True:
                await trio.sleep(10)
                await api.ok("session_heartbeat", SessionHeartbeatRequest(session_id=alive))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(heartbeat_forever)
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
        gone = await api.post("session_heartbeat", SessionHeartbeatRequest(session_id=idle))
        assert gone.status_code == 410
        assert "expired" in gone.json()["detail"]
        refused = await api.fwdbwd(fb_body(idle_model, 1))
        assert refused.status_code == 410
        assert model_counters(server, idle_model)["live"] is False
        assert totals(server)["sessions:expired"] == 1
        # the heartbeating session kept its model
        out = await api.fwdbwd_output(fb_body(alive_model, 1))
        assert out.metrics["loss:sum"] > 0
        assert model_counters(server, alive_model)["live"] is True


# -- REST -------------------------------------------------------------------------------------


async def test_rest_runs_checkpoints_sessions_and_samplers() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (server, api):
        first_session = await api.session()
        clock.now += 1
        second_session = await api.session()
        run_ids = []
        for session_id, model_seq_id in (
            (first_session, 0),
            (first_session, 1),
            (second_session, 0),
        ):
            clock.now += 1
            run_ids.append(await api.create_model(session_id, model_seq_id))
        run_a = run_ids[0]

        # training runs: newest first, offset pagination with the total
        page = (await api.get("training_runs", limit=2, offset=0)).json()
        assert [r["training_run_id"] for r in page["training_runs"]] == run_ids[::-1][:2]
        assert page["cursor"] == {"offset": 0, "limit": 2, "total_count": 3}
        rest = (await api.get("training_runs", limit=2, offset=2)).json()
        assert [r["training_run_id"] for r in rest["training_runs"]] == [run_a]
        assert rest["cursor"]["total_count"] == 3

        # checkpoints of every kind, one wall-clock second apart
        seq = 1
        paths = {}
        for name, kind in (
            ("w1", "weights"),
            ("s1", "sampler"),
            ("x1", "external"),
            ("w2", "weights"),
        ):
            clock.now += 1
            request: Any
            if kind == "weights":
                request = SaveWeightsRequest(model_id=run_a, path=name, seq_id=seq)
                endpoint = "save_weights"
            elif kind == "sampler":
                request = SaveWeightsForSamplerRequest(model_id=run_a, path=name, seq_id=seq)
                endpoint = "save_weights_for_sampler"
            else:
                request = SaveWeightsExternalRequest(model_id=run_a, path=name, seq_id=seq)
                endpoint = "save_weights_external"
            paths[name] = (await api.result_json(await api.ok(endpoint, request)))["path"]
            seq += 1
        clock.now += 1
        other = (
            await api.result_json(
                await api.ok(
                    "save_weights", SaveWeightsRequest(model_id=run_ids[2], path="o", seq_id=1)
                )
            )
        )["path"]

        run = (await api.get(f"training_runs/{run_a}")).json()
        assert run["training_run_id"] == run_a
        assert run["base_model"] == "local/tiny"
        assert run["is_lora"] is True
        assert run["lora_rank"] == 8
        assert run["last_checkpoint"]["checkpoint_id"] == "weights/w2"
        assert run["last_sampler_checkpoint"]["checkpoint_id"] == "sampler_weights/s1"

        listed = (await api.get(f"training_runs/{run_a}/checkpoints")).json()["checkpoints"]
        assert [c["checkpoint_id"] for c in listed] == [
            "weights/w1",
            "sampler_weights/s1",
            "external_weights/x1",
            "weights/w2",
        ]
        assert [c["checkpoint_type"] for c in listed] == [
            "training",
            "sampler",
            "external",
            "training",
        ]
        assert listed[0]["tinker_path"] == paths["w1"]
        assert all(c["public"] is False and c["size_bytes"] > 0 for c in listed)

        mine = (await api.get("checkpoints")).json()
        assert [c["tinker_path"] for c in mine["checkpoints"]] == [
            other,
            paths["w2"],
            paths["x1"],
            paths["s1"],
            paths["w1"],
        ]
        assert mine["cursor"]["total_count"] == 5
        page = (await api.get("checkpoints", limit=2, offset=1)).json()
        assert [c["tinker_path"] for c in page["checkpoints"]] == [paths["w2"], paths["x1"]]

        # publish / unpublish, each refused when already so
        ckpt = f"training_runs/{run_a}/checkpoints/weights/w1"
        assert (await api.post(f"{ckpt.removeprefix('')}/publish")).status_code == 200
        listed = (await api.get(f"training_runs/{run_a}/checkpoints")).json()["checkpoints"]
        assert listed[0]["public"] is True
        again = await api.post(f"{ckpt}/publish")
        assert again.status_code == 409
        assert "already public" in again.json()["detail"]
        assert (await api.delete(f"{ckpt}/publish")).status_code == 200
        again = await api.delete(f"{ckpt}/publish")
        assert again.status_code == 409
        assert "already private" in again.json()["detail"]

        # ttl: set, then the checkpoint vanishes once the wall clock passes it
        assert (await api.put(f"{ckpt}/ttl", {"ttl_seconds": 3600})).status_code == 200
        listed = (await api.get(f"training_runs/{run_a}/checkpoints")).json()["checkpoints"]
        assert listed[0]["expires_at"] is not None
        assert (
            await api.put(
                f"training_runs/{run_a}/checkpoints/weights/w2/ttl", {"ttl_seconds": 3600}
            )
        ).status_code == 200
        assert (
            await api.put(
                f"training_runs/{run_a}/checkpoints/weights/w2/ttl", {"ttl_seconds": None}
            )
        ).status_code == 200
        clock.now += 3601
        listed = (await api.get(f"training_runs/{run_a}/checkpoints")).json()["checkpoints"]
        assert [c["checkpoint_id"] for c in listed] == [
            "sampler_weights/s1",
            "external_weights/x1",
            "weights/w2",
        ]
        assert listed[2]["expires_at"] is None
        assert (await api.get("checkpoints")).json()["cursor"]["total_count"] == 4
        assert (await api.post(f"{ckpt}/publish")).status_code == 404
        expired_load = await api.post("weights_info", {"tinker_path": paths["w1"]})
        assert expired_load.status_code == 404

        # external weights urls point at real files; other kinds are refused
        urls = (
            await api.get(
                f"training_runs/{run_a}/checkpoints/external_weights/x1/external_weights_urls"
            )
        ).json()
        assert urls["urls"]
        assert urls["expires"]
        for url in urls["urls"].values():
            assert url.startswith("http://")
            fetched = await api.client.get(url)
            assert fetched.status_code == 200, fetched.text
            assert fetched.content
        refused = await api.get(
            f"training_runs/{run_a}/checkpoints/weights/w2/external_weights_urls"
        )
        assert refused.status_code == 400
        assert "not an external_weights checkpoint" in refused.json()["detail"]

        info = await api.ok("weights_info", {"tinker_path": paths["w2"]})
        assert info["base_model"] == "local/tiny"
        assert info["is_lora"] is True
        assert info["lora_rank"] == 8
        assert info["train_mlp"] is True

        # delete: gone from every list, a second delete is 404
        assert (
            await api.delete(f"training_runs/{run_a}/checkpoints/weights/w2")
        ).status_code == 200
        listed = (await api.get(f"training_runs/{run_a}/checkpoints")).json()["checkpoints"]
        assert "weights/w2" not in [c["checkpoint_id"] for c in listed]
        second = await api.delete(f"training_runs/{run_a}/checkpoints/weights/w2")
        assert second.status_code == 404
        assert "weights/w2" in second.json()["detail"]
        assert (await api.get(f"training_runs/{run_a}")).json()["last_checkpoint"] is None

        # sessions, newest first; one session's runs and samplers
        sampler_id = await api.sampler(first_session, 0)
        sessions = (await api.get("sessions")).json()["sessions"]
        assert sessions == [second_session, first_session]
        assert (await api.get("sessions", limit=1, offset=1)).json()["sessions"] == [first_session]
        described = (await api.get(f"sessions/{first_session}")).json()
        assert described["training_run_ids"] == run_ids[:2]
        assert described["sampler_ids"] == [sampler_id]
        assert (await api.get(f"samplers/{sampler_id}")).json()["base_model"] == "local/tiny"

        # the debug counters, over HTTP
        counters = (await api.client.get("/_local/counters", headers=api.headers())).json()
        assert counters["totals"]["applied:CreateModel"] == 3
        assert counters["models"][run_a]["applied_kinds"][0] == "CreateModel"
        # the same numbers as server.counters(), except this very request, counted after
        now = msgspec.json.decode(msgspec.json.encode(server.counters()))
        assert counters["models"] == now["models"]
        assert now["totals"].pop("http:/_local/counters") == 1
        assert counters["totals"] == now["totals"]


async def test_cancel_of_a_training_future_does_not_lie(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # cancel_future is for samples; a training op in a model's order cannot be withdrawn, so
    # its future must go on to report what really happened
    backend = NullBackend(latency={"optim_step": LatencyModel(kind="fixed", a=50)})
    async with open_api(backend=backend) as (server, api):
        model_id = await api.create_model(await api.session())
        future = await api.optim(model_id, 1)
        assert await api.ok("cancel_future", {"request_id": future["request_id"]}) == {}
        answer = await api.result_json(future)
        assert answer["metrics"] == {"learning_rate:mean": 0.001}
        assert totals(server).get("cancelled", 0) == 0
        assert model_counters(server, model_id)["applied_kinds"] == ["CreateModel", "OptimStep"]


async def test_gap_timeout_fails_what_waits_and_the_model_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_api(gap_timeout=30, long_poll_seconds=25) as (server, api):
        model_id = await api.create_model(await api.session())
        # keep the session alive while the gap times out
        await api.ok(
            "session_heartbeat", SessionHeartbeatRequest(session_id=model_id.split(":")[0])
        )
        stuck = await api.optim(model_id, 3)
        also = await api.optim(model_id, 2)
        start = trio.current_time()
        failed = await api.result_json(stuck)
        assert trio.current_time() - start == pytest.approx(30)
        assert failed["category"] == "user"
        assert "seq_id 1 never arrived within 30 s" in failed["error"]
        assert "seq_ids 2..3" in failed["error"]
        assert "seq_id 1 never arrived" in (await api.result_json(also))["error"]
        late = await api.post(
            "optim_step", OptimStepRequest(model_id=model_id, seq_id=1, adam_params=AdamParams())
        )
        assert late.status_code == 409
        assert "below the model's next expected seq_id 4" in late.json()["detail"]
        done = await api.result_json(await api.optim(model_id, 4))
        assert "metrics" in done
        counters = model_counters(server, model_id)
        assert counters["applied_seq_ids"] == [0, 4]
        assert counters["failed"] == 2


async def test_zstd_compressed_forward_backward() -> None:
    async with open_api() as (_, api):
        model_id = await api.create_model(await api.session())
        request = ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(
                data=[datum(0), datum(1)], loss_fn="cross_entropy"
            ),
            model_id=model_id,
            seq_id=1,
            forward_only=True,
        )
        packed = encode_forward_backward_request(request, compress=True)
        submitted = await api.fwdbwd(packed, {"Content-Encoding": "zstd"})
        assert submitted.status_code == 200, submitted.text
        response = await api.result(submitted.json()["request_id"], proto=True)
        compressed = decode_forward_backward_output(response.content)
        uncompressed = await api.fwdbwd_output(fb_body(model_id, 2, forward_only=True))
        assert compressed.metrics == uncompressed.metrics
        assert compressed.loss_fn_outputs == uncompressed.loss_fn_outputs


async def test_cloned_sampling_clients_get_their_own_completion_streams() -> None:
    async with open_api() as (_, api):
        sampler_id = await api.sampler(await api.session())
        joined = [
            await api.ok("join_sampling_session", {"sampling_session_id": sampler_id})
            for _ in range(2)
        ]
        assert [j["client_counter"] for j in joined] == [1, 2]
        original = await api.ok("asample", api.sample_request(sampler_id, 0))
        clone = await api.ok("asample", api.sample_request(sampler_id, 2_000_000_000))
        for future in (original, clone):
            await api.result(future["request_id"], proto=True)

        async def stream(clone_id: int) -> list[str]:
            target = SamplingSessionFuturesTarget(
                sampling_session_id=sampler_id, cloned_sampler_id=clone_id
            )
            answer = await api.ok(
                "retrieve_futures", FuturesRetrieveRequest(target=target, timeout=0)
            )
            return [c["request_id"] for c in answer["completions"]]

        assert await stream(0) == [original["request_id"]]
        assert await stream(2) == [clone["request_id"]]
        assert await stream(1) == []


async def test_expired_checkpoints_cannot_be_loaded_or_sampled() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (_, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        weights = await api.result_json(
            await api.ok(
                "save_weights",
                SaveWeightsRequest(model_id=model_id, path="w", seq_id=1, ttl_seconds=3600),
            )
        )
        sampler = await api.result_json(
            await api.ok(
                "save_weights_for_sampler",
                SaveWeightsForSamplerRequest(
                    model_id=model_id, path="s", seq_id=2, ttl_seconds=3600
                ),
            )
        )
        clock.now += 3599  # still alive: both work
        await api.sampler(session_id, 0, model_path=sampler["path"])
        load = LoadWeightsRequest(
            session_id=session_id, model_seq_id=1, path=weights["path"], optimizer=False
        )
        await api.result_json(await api.ok("load_weights", load))
        clock.now += 2
        expired = await api.post(
            "load_weights",
            LoadWeightsRequest(model_id=model_id, seq_id=3, path=weights["path"], optimizer=False),
        )
        assert expired.status_code == 404
        assert "expired" in expired.json()["detail"]
        refused = await api.post(
            "create_sampling_session",
            CreateSamplingSessionRequest(
                session_id=session_id, sampling_session_seq_id=1, model_path=sampler["path"]
            ),
        )
        assert refused.status_code == 404
        assert "expired" in refused.json()["detail"]


async def test_sampling_session_seq_id_reused_for_other_weights_is_refused() -> None:
    async with open_api() as (_, api):
        session_id = await api.session()
        model_id = await api.create_model(session_id)
        base = await api.sampler(session_id, 0)
        assert await api.sampler(session_id, 0) == base  # an identical repeat: the same session
        saved = await api.result_json(
            await api.ok(
                "save_weights_for_sampler",
                SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=1),
            )
        )
        clash = await api.post(
            "create_sampling_session",
            CreateSamplingSessionRequest(
                session_id=session_id, sampling_session_seq_id=0, model_path=saved["path"]
            ),
        )
        assert clash.status_code == 409
        assert "sampling_session_seq_id 0 is already used" in clash.json()["detail"]
        # an ephemeral save under a used sampling_session_seq_id fails instead of handing back
        # a sampler over other weights
        failed = await api.result_json(
            await api.ok(
                "save_weights_for_sampler",
                SaveWeightsForSamplerRequest(
                    model_id=model_id, sampling_session_seq_id=0, seq_id=2
                ),
            )
        )
        assert failed["category"] == "user"
        assert "sampling_session_seq_id 0 is already used" in failed["error"]
        described = (await api.get(f"samplers/{base}")).json()
        assert described["model_path"] is None
