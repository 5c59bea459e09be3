"""Acceptance: the SDK against the local server's fault plans, one fault family at a time.

Each case runs the same workload (a pipelined training loop, a save, samples) under one plan
and reads the outcome off the server's counters: every training seq_id applied exactly once and
in order (``applied_seq_ids`` contiguous from 0, nothing failed, no duplicates applied), every
sample applied once. Where a fault outlasts its budget, the documented typed error must come
out instead. Everything is guarded by ``trio.fail_after``; status faults run in-process on the
virtual clock, connection resets over a real loopback socket through the FaultProxy.

Also here: leaving ``open()`` finishes the session with the status that matches how the block
ended, and the API key appears in no log record, repr, exception or request body (telemetry
included).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from sdk_support import KEY, lm_datum, open_runtime, totals

import tinker_actors as ta
from tinker_actors.errors import APIStatusError, BillingError
from tinker_actors.local import FaultPlan, LocalServer, open_local_server
from tinker_actors.types import (
    AdamParams,
    ClientConfigResponse,
    Datum,
    ModelInput,
    SamplingParams,
)

STEPS = 4
SAMPLES = 6


def datum(offset: int) -> Datum:
    return lm_datum([(offset + 3 * i) % 2000 + 4 for i in range(9)])


class Bodies:
    """ASGI wrapper keeping every request body and path (to search them for the key)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def tap() -> Any:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.seen.append((scope["path"], b"".join(chunks)))
            return message

        await self.app(scope, tap, send)


@asynccontextmanager
async def in_process(
    plan: FaultPlan | None = None, **server_options: Any
) -> AsyncIterator[tuple[ta.Runtime, LocalServer, Bodies]]:
    config = server_options.pop("config", {})
    async with open_local_server(**server_options) as server:
        bodies = Bodies(server.app)
        async with open_runtime(bodies, **config) as rt:
            if plan is not None:
                server.set_faults(plan)
            yield rt, server, bodies


async def workload(rt: ta.Runtime) -> tuple[str, list[str]]:
    """Train STEPS pipelined steps, save, sample SAMPLES times; return model id and op kinds."""
    tc = await rt.create_lora_training_client("local/tiny", rank=4, seed=2)
    kinds = ["CreateModel"]
    futures = []
    for step in range(STEPS):
        futures.append(await tc.forward_backward([datum(step), datum(step + 9)], "cross_entropy"))
        futures.append(await tc.optim_step(AdamParams(learning_rate=1e-3)))
        kinds += ["ForwardBackward", "OptimStep"]
    for future in futures:
        await future.result()
    saved = await (await tc.save_state("fault-step")).result()
    assert saved.path.endswith("/weights/fault-step")
    kinds.append("SaveWeights")
    sc = await tc.save_weights_and_get_sampling_client()
    kinds.append("SaveWeightsForSampler")
    pending = [
        await sc.sample(ModelInput.from_ints([4, 5, 6]), 1, SamplingParams(max_tokens=2))
        for _ in range(SAMPLES)
    ]
    for future in pending:
        assert len((await future.result()).sequences) == 1
    return tc.model_id, kinds


def assert_exactly_once(server: LocalServer, model_id: str, kinds: list[str]) -> None:
    counters = server.counters()
    model = counters["models"][model_id]  # type: ignore[index]
    assert model["applied_seq_ids"] == list(range(len(kinds)))
    assert model["applied_kinds"] == kinds
    assert model["applied"] == len(kinds)
    assert model["failed"] == 0
    assert totals(server)["applied:Sample"] == SAMPLES


STATUS_PLANS: dict[str, dict[str, Any]] = {
    # a storm of 429s, each with Retry-After: 2 s (the client must wait, then resubmit)
    "429-storm-retry-after": {
        "seed": 11,
        "rules": [{"endpoint": "*", "status": 429, "probability": 0.35, "retry_after": 2}],
    },
    # bursts: the first N requests of an endpoint fail in a row, then it recovers
    "5xx-bursts": {
        "seed": 12,
        "rules": [
            {"endpoint": "forward_backward", "status": 500, "count": 4},
            {"endpoint": "optim_step", "status": 502, "count": 3},
            {"endpoint": "retrieve_future", "status": 503, "count": 5},
            {"endpoint": "asample", "status": 503, "count": 3},
            {"endpoint": "create_sampling_session", "status": 500, "count": 2},
        ],
    },
    "408s": {"seed": 13, "rules": [{"endpoint": "*", "status": 408, "probability": 0.3}]},
    # the save is refused with 500 and its retry with 409 before it is accepted
    "409-on-retried-save": {
        "seed": 14,
        "rules": [
            {"endpoint": "save_weights", "sequence": [500, 409, 409]},
            {"endpoint": "save_weights_for_sampler", "sequence": [409]},
        ],
    },
    # slow futures: every result needs three try_again polls first
    "slow-futures": {"seed": 15, "rules": [{"endpoint": "retrieve_future", "try_again_polls": 3}]},
}


@pytest.mark.parametrize("name", list(STATUS_PLANS))
async def test_status_faults_complete_every_operation_exactly_once(
    autojump_clock: trio.abc.Clock, name: str
) -> None:
    plan = FaultPlan.from_dict(STATUS_PLANS[name])
    async with in_process(plan) as (rt, server, _):
        with trio.fail_after(50_000):
            model_id, kinds = await workload(rt)
        injected = server.counters()["faults"]
        assert_exactly_once(server, model_id, kinds)
    assert injected["injected"] > 0, injected  # type: ignore[index]
    if name == "slow-futures":  # three try_again answers per future, then the result
        assert injected["injected"] >= 3 * (len(kinds) + SAMPLES), injected  # type: ignore[index]


# A reset mid-upload leaves httpx's request-body async generator unexhausted; trio reports it
# when it is collected. It is httpx/httpcore's iterator, not a task or socket of ours.
@pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._content.ByteStream.__aiter__':ResourceWarning"
)
async def test_connection_resets_complete_every_operation_exactly_once() -> None:
    """10 % of connections reset by the FaultProxy in front of a real loopback socket."""
    plan = FaultPlan.from_dict({"seed": 16, "connection": {"reset": 0.1, "seed": 16}})
    async with open_local_server(faults=plan) as server, trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        with trio.fail_after(240):
            async with ta.open(base_url=url, api_key=KEY) as rt:
                model_id, kinds = await workload(rt)
        assert_exactly_once(server, model_id, kinds)
        assert server.counters()["connection_faults"]["reset"] > 0  # type: ignore[index]
        nursery.cancel_scope.cancel()


async def test_heartbeat_loss_expires_the_session_and_410_is_typed(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Heartbeats refused for longer than session_timeout: the server expires the session,
    heartbeats stop on 410, and a later training call fails with the 410, never hangs."""
    caplog.set_level(logging.INFO)
    plan = FaultPlan.from_dict({"rules": [{"endpoint": "session_heartbeat", "status": 503}]})
    async with in_process(session_timeout=60.0) as (rt, server, bodies):
        with trio.fail_after(10_000):
            tc = await rt.create_lora_training_client("local/tiny", rank=4)
            await (await tc.forward_backward([datum(1)], "cross_entropy")).result()
            server.set_faults(plan)  # only now: creating the client takes virtual time
            await trio.sleep(200)  # > session_timeout and > the 120 s warning threshold
            assert totals(server)["sessions:expired"] == 1
            server.set_faults(FaultPlan())  # the network heals; the session stays gone
            await trio.sleep(30)
            beats = sum(1 for path, _ in bodies.seen if path.endswith("session_heartbeat"))
            await trio.sleep(100)
            after = sum(1 for path, _ in bodies.seen if path.endswith("session_heartbeat"))
            assert after == beats  # stopped on 410
            with pytest.raises(APIStatusError) as failed:
                await (await tc.forward_backward([datum(2)], "cross_entropy")).result()
            assert failed.value.status_code == 410
    assert any(
        "heartbeat" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    )


async def test_billing_pause_within_the_window_completes(autojump_clock: trio.abc.Clock) -> None:
    plan = FaultPlan.from_dict(
        {"rules": [{"endpoint": "forward_backward", "status": 402, "count": 3}]}
    )
    async with in_process(plan) as (rt, server, _):
        with trio.fail_after(10_000):
            model_id, kinds = await workload(rt)
        assert rt.transport.statistics().billing_pauses == 3
        assert_exactly_once(server, model_id, kinds)


async def test_billing_pause_past_the_window_raises_billing_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The window is the server's flag ``billing_exception_max_pause_duration_sec`` (30 s)."""
    plan = FaultPlan.from_dict({"rules": [{"endpoint": "forward_backward", "status": 402}]})
    flags = ClientConfigResponse(billing_exception_max_pause_duration_sec=30)
    async with in_process(plan, client_config=flags) as (rt, server, _):
        with trio.fail_after(10_000):
            tc = await rt.create_lora_training_client("local/tiny", rank=4)
            started = trio.current_time()
            with pytest.raises(BillingError):
                await (await tc.forward_backward([datum(1)], "cross_entropy")).result()
            assert 30.0 <= trio.current_time() - started < 30.0 + 60.0  # gave up after its budget
        assert totals(server).get("applied:ForwardBackward", 0) == 0


@pytest.mark.parametrize(
    ("ending", "status"),
    [
        ("normal", "success"),
        ("exception", "errored"),
        ("cancelled", "interrupted"),
    ],
)
async def test_leaving_open_finishes_the_session_with_the_right_status(
    autojump_clock: trio.abc.Clock, ending: str, status: str
) -> None:
    async with open_local_server() as server:
        with trio.CancelScope() as scope:
            try:
                async with open_runtime(server.app) as rt:
                    await rt.create_lora_training_client("local/tiny", rank=4)
                    if ending == "exception":
                        raise LookupError("the body failed")
                    if ending == "cancelled":
                        scope.cancel()
                        await trio.sleep_forever()
            except LookupError:
                assert ending == "exception"
        assert scope.cancelled_caught == (ending == "cancelled")
        finished = {k: v for k, v in totals(server).items() if k.startswith("sessions:")}
        assert finished == {f"sessions:{status}": 1}


async def test_api_key_appears_in_no_log_repr_error_or_body(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    plan = FaultPlan.from_dict(
        {
            "seed": 17,
            "rules": [
                {"endpoint": "*", "status": 503, "probability": 0.15},
                {"endpoint": "forward_backward", "status": 402, "count": 1},
            ],
        }
    )
    async with in_process(plan) as (rt, server, bodies):
        with trio.fail_after(50_000):
            model_id, kinds = await workload(rt)
            texts += [repr(rt), repr(rt.config), rt.dump().render(), repr(rt.statistics())]
            tc = await rt.create_lora_training_client("local/tiny", rank=4)
            texts.append(repr(tc))
            server.set_faults(
                FaultPlan.from_dict({"rules": [{"endpoint": "optim_step", "status": 400}]})
            )
            with pytest.raises(APIStatusError) as refused:
                await (await tc.optim_step(AdamParams(learning_rate=1e-3))).result()
            texts += [str(refused.value), repr(refused.value), repr(refused.value.body)]
    assert_exactly_once(server, model_id, kinds)
    texts.append(caplog.text)
    texts += [body.decode("utf-8", "replace") for _, body in bodies.seen]
    assert caplog.records
    assert len(bodies.seen) > 20
    for text in texts:
        assert KEY not in text
        assert KEY[4:] not in text
