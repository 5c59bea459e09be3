"""Every count, length and size a request carries is bounded: a 4xx naming the limit and its value.

The audit's reproductions (``num_samples`` 10^6, a 60 MB JSON body, ...) are refused at the
default limits before any work is done, and the server goes on serving. (Configuring limits:
test_limit_settings.py; the limits enforced by the HTTP server itself: test_http_limits.py.)
"""

from __future__ import annotations

import pytest
import trio
from hostile_support import datum, in_process, refused, sample_body

from tinker_actors.local._catalogue import lookup_model
from tinker_actors.types import AdamParams, OptimStepRequest


async def test_num_samples_of_the_audit_is_refused_before_any_work() -> None:
    async with in_process() as (server, (api,)):
        world = await api.build_world()
        with trio.fail_after(30):
            response = await api.post("asample", sample_body(world, num_samples=100_000))
        detail = refused(response, 400, "max_num_samples", 128)
        assert "num_samples 100000" in detail
        assert server.engine.sampling.in_flight == 0  # nothing was accepted
        await api.still_serving(world)


async def test_tokens_to_generate_are_bounded_counting_top_k_entries() -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        body = sample_body(
            world,
            num_samples=128,
            topk_sample_logprobs=1,
            sampling_params={"max_tokens": 600},
        )
        detail = refused(await api.post("asample", body), 400, "max_sample_tokens", 131072)
        assert "128 x 600 tokens x 2 (1 + topk_sample_logprobs) = 153600" in detail
        # max_tokens unset counts as the rest of the context (2045 tokens on local/small)
        small = await api.ok(
            "create_sampling_session",
            {
                "session_id": world.session_id,
                "sampling_session_seq_id": 1,
                "base_model": "local/small",
            },
        )
        body = sample_body(
            world,
            num_samples=128,
            sampling_params={},
            sampling_session_id=small["sampling_session_id"],
        )
        detail = refused(await api.post("asample", body), 400, "max_sample_tokens", 131072)
        assert "max_tokens unset" in detail
        await api.still_serving(world)


@pytest.mark.parametrize("field", ["topk_prompt_logprobs", "topk_sample_logprobs"])
async def test_top_k_widths_are_bounded(field: str) -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        body = sample_body(world, **{field: 100_000}, prompt_logprobs=True)
        detail = refused(await api.post("asample", body), 400, "max_logprobs_k", 64)
        assert f"{field} 100000" in detail
        await api.still_serving(world)


async def test_stop_sequences_are_bounded() -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        stops = [f"s{i}" for i in range(10_000)]
        body = sample_body(world, sampling_params={"max_tokens": 4, "stop": stops})
        refused(await api.post("asample", body), 400, "max_stop_sequences", 64)
        await api.still_serving(world)


async def test_prompt_plus_max_tokens_past_the_context_is_refused() -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        context = lookup_model("local/tiny").context_length
        # the prompt is 3 tokens: one token too many
        body = sample_body(world, sampling_params={"max_tokens": context - 2})
        response = await api.post("asample", body)
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert f"exceeds the context of local/tiny ({context} tokens)" in detail


async def test_datums_per_forward_backward_are_bounded() -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        data = [datum([10, 11])] * 1025
        response = await api.forward_backward(world.model_id, world.next_seq, data=data)
        refused(response, 400, "max_datums", 1024)
        world.next_seq += 1  # a refused request consumes its seq_id (issue 14)
        await api.still_serving(world)


async def test_tokens_per_forward_backward_are_bounded() -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        data = [datum(list(range(10, 530)))] * 1024
        response = await api.forward_backward(world.model_id, world.next_seq, data=data)
        detail = refused(response, 400, "max_batch_tokens", 524288)
        assert "532480 model-input tokens" in detail
        world.next_seq += 1  # a refused request consumes its seq_id (issue 14)
        await api.still_serving(world)


async def test_a_large_json_body_is_413_and_never_stored() -> None:
    # the audit's 60 MB session field, scaled to just over the 4 MiB default
    async with in_process() as (server, (api,)):
        world = await api.build_world()
        body = {"sdk_version": "x", "user_metadata": {"blob": "x" * (5 << 20)}}
        response = await api.post("create_session", body)
        refused(response, 413, "max_json_body_bytes", 4 << 20)
        assert len(server.engine.core.store.sessions) == 1  # only the world's
        await api.still_serving(world)


async def test_stored_metadata_is_bounded() -> None:
    async with in_process() as (server, (api,)):
        world = await api.build_world()
        body = {"sdk_version": "x", "user_metadata": {"blob": "x" * 100_000}}
        refused(await api.post("create_session", body), 400, "max_metadata_bytes", 65536)
        model = {
            "session_id": world.session_id,
            "model_seq_id": 1,
            "base_model": "local/tiny",
            "user_metadata": {"k": "v" * 100_000},
        }
        refused(await api.post("create_model", model), 400, "max_metadata_bytes", 65536)
        assert len(server.engine.core.store.sessions) == 1
        await api.still_serving(world)


async def test_a_training_seq_id_far_ahead_is_refused_not_queued() -> None:
    async with in_process() as (server, (api,)):
        world = await api.build_world()
        far = OptimStepRequest(model_id=world.model_id, seq_id=10**30, adam_params=AdamParams())
        detail = refused(await api.post("optim_step", far), 400, "max_seq_id_lead", 65536)
        assert "past the model's next expected seq_id 3" in detail
        # nothing queued behind a gap that would never close
        assert server.engine.core.models[world.model_id].sequencer.stats.received == 3
        await api.still_serving(world)
