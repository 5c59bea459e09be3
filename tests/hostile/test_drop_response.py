"""The fault that tests idempotency: the response is lost after the server applied the request.

The audit's own proxy dropped 1,199 responses and the server's dedupe held; the project's
FaultProxy could not make that fault at all. ``drop_response`` forwards the request, lets the
server answer, and resets the client's connection when the answer starts to arrive.
"""

from __future__ import annotations

import httpx
import pytest
import trio

import tinker_actors as ta
from tinker_actors.local import ConnectionFaults, FaultPlan, FaultPlanError, FaultProxy
from tinker_actors.types import AdamParams, Datum, ModelInput, SamplingParams, TensorData

KEY = "tml-hostile-drop"


def lm_datum(offset: int) -> Datum:
    tokens = [(offset + 3 * i) % 2000 + 4 for i in range(9)]
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": TensorData(data=tokens[1:], dtype="int64")},
    )


def test_the_plan_and_the_flags_carry_drop_response() -> None:
    plan = FaultPlan.from_flags(["connection:drop_response=0.25,reset=0.05", "seed=3"])
    faults = plan.connection_faults()
    assert faults == ConnectionFaults(drop_response=0.25, reset=0.05, seed=3)
    assert FaultPlan.from_dict(plan.to_dict()) == plan
    toml = FaultPlan.from_toml("[connection]\ndrop_response = 0.1\n")
    assert toml.connection_faults() == ConnectionFaults(drop_response=0.1)
    with pytest.raises(FaultPlanError, match="drop_response must be at most 1"):
        FaultPlan.from_dict({"connection": {"drop_response": 0.6, "reset": 0.6}})
    with pytest.raises(FaultPlanError, match="drop_response must be in"):
        FaultPlan.from_dict({"connection": {"drop_response": 1.5}})


async def test_the_server_applies_the_request_and_the_client_never_hears() -> None:
    from tinker_actors.local import open_local_server

    async with open_local_server() as server, trio.open_nursery() as nursery:
        urls = await nursery.start(server.serve)
        upstream = int(urls.rsplit(":", 1)[1])
        proxy = FaultProxy(upstream_port=upstream, faults=ConnectionFaults(drop_response=1.0))
        proxy_url = await nursery.start(proxy.serve)
        with trio.fail_after(30):
            async with httpx.AsyncClient(base_url=proxy_url, headers={"X-API-Key": KEY}) as c:
                with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                    await c.post("/api/v1/create_session", json={"sdk_version": "x"})
        assert server.engine.core.counters["applied:CreateSession"] == 1
        assert len(server.engine.core.store.sessions) == 1
        stats = proxy.statistics()
        assert stats.dropped == 1
        assert stats.forwarded == 1
        assert stats.injected == 1
        nursery.cancel_scope.cancel()


# A reset mid-upload leaves httpx's request-body async generator unexhausted; trio reports it
# when it is collected. It is httpx/httpcore's iterator, not a task or socket of ours.
@pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._content.ByteStream.__aiter__':ResourceWarning"
)
async def test_lost_responses_never_apply_an_operation_twice() -> None:
    """15 % of responses lost after the fact; every operation still applied exactly once."""
    from tinker_actors.local import open_local_server

    plan = FaultPlan.from_dict({"seed": 5, "connection": {"drop_response": 0.15}})
    steps, samples = 4, 6
    async with open_local_server(faults=plan) as server, trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        with trio.fail_after(240):
            async with ta.open(base_url=url, api_key=KEY) as rt:
                tc = await rt.create_lora_training_client("local/tiny", rank=4, seed=2)
                futures = []
                for step in range(steps):
                    futures.append(await tc.forward_backward([lm_datum(step)], "cross_entropy"))
                    futures.append(await tc.optim_step(AdamParams(learning_rate=1e-3)))
                for future in futures:
                    await future.result()
                sc = await tc.save_weights_and_get_sampling_client()
                pending = [
                    await sc.sample(
                        ModelInput.from_ints([4, 5, 6]), 1, SamplingParams(max_tokens=2)
                    )
                    for _ in range(samples)
                ]
                for future in pending:
                    assert len((await future.result()).sequences) == 1
                model_id = tc.model_id
        counters = server.counters()
        model = counters["models"][model_id]  # type: ignore[index]
        kinds = (
            ["CreateModel"] + ["ForwardBackward", "OptimStep"] * steps + ["SaveWeightsForSampler"]
        )
        assert model["applied_kinds"] == kinds
        assert model["applied_seq_ids"] == list(range(len(kinds)))
        assert model["failed"] == 0
        assert counters["totals"]["applied:Sample"] == samples  # type: ignore[index]
        assert counters["totals"]["applied:CreateSession"] == 1  # type: ignore[index]
        assert counters["connection_faults"]["dropped"] > 0  # type: ignore[index]
        nursery.cancel_scope.cancel()
