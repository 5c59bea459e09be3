"""SamplingClient against the local server, in-process: results, backpressure, retries, cancels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
from sdk_support import BufferedTap, json_or_none, served_runtime, totals

import tinker_actors as ta
from tinker_actors.actors import rate_limiter_for
from tinker_actors.clients import OperationCancelledError, SamplingClient
from tinker_actors.clients._sample_prepare import build_sample_request, sample_transform
from tinker_actors.errors import APIResponseValidationError
from tinker_actors.local import LatencyModel, LocalServer, NullBackend
from tinker_actors.types import (
    ClientDynamicConfigResponse,
    ModelInput,
    SampleResponse,
    SamplingParams,
    TensorData,
)

PROMPT = ModelInput.from_ints([11, 12, 13, 14, 15, 16])


class Tap(BufferedTap):
    """ASGI middleware: records (path, JSON body) and can answer chosen paths itself."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.requests: list[tuple[str, Any]] = []
        self.rules: dict[str, Callable[[], int | None]] = {}

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.requests if p == path]

    async def inspect(self, path: str, raw: bytes) -> int | None:
        self.requests.append((path, json_or_none(raw)))
        return self.rules[path]() if path in self.rules else None


@asynccontextmanager
async def sampler(
    **server_options: Any,
) -> AsyncIterator[tuple[SamplingClient, LocalServer, Tap, ta.Runtime]]:
    async with served_runtime(Tap, **server_options) as (rt, server, tap):
        client = await rt.create_sampling_client(base_model="local/tiny")
        with trio.fail_after(600):
            yield client, server, tap, rt


async def test_num_samples_and_seeded_results(autojump_clock: trio.abc.Clock) -> None:
    async with sampler() as (sc, _server, tap, rt):
        params = SamplingParams(max_tokens=6, seed=3)
        first = await (await sc.sample(PROMPT, num_samples=4, sampling_params=params)).result()
        again = await (await sc.sample(PROMPT, num_samples=4, sampling_params=params)).result()
        assert len(first.sequences) == 4
        assert all(len(s.tokens) == 6 for s in first.sequences)
        assert [s.tokens for s in first.sequences] == [s.tokens for s in again.sequences]
        ids = [s.sequence_id for s in first.sequences + again.sequences]
        assert len(set(ids)) == 8
        assert all(i is not None for i in ids)
        assert sc.get_base_model() == "local/tiny"
        assert [b["seq_id"] for b in tap.bodies("/api/v1/asample")] == [0, 1]
        # creating another client costs one create_sampling_session and nothing else
        before = len(tap.requests)
        other = await rt.create_sampling_client(base_model="local/tiny")
        assert [p for p, _ in tap.requests[before:]] == ["/api/v1/create_sampling_session"]
        assert other.sampling_session_id != sc.sampling_session_id


async def test_prompt_logprobs_and_compute_logprobs_agree(autojump_clock: trio.abc.Clock) -> None:
    async with sampler() as (sc, _server, tap, _rt):
        result = await (
            await sc.sample(
                PROMPT, 1, SamplingParams(max_tokens=2, seed=1), include_prompt_logprobs=True
            )
        ).result()
        logprobs = await (await sc.compute_logprobs(PROMPT)).result()
        assert result.prompt_logprobs is not None
        assert logprobs[0] is None
        assert len(logprobs) == PROMPT.length
        assert logprobs == pytest.approx(result.prompt_logprobs)
        last = await (await sc.compute_logprobs(PROMPT, prompt_logprobs_last_n=2)).result()
        assert last[:-2] == [None] * (PROMPT.length - 2)
        assert last[-2:] == pytest.approx(logprobs[-2:])
        body = tap.bodies("/api/v1/asample")[1]
        assert body["num_samples"] == 1
        assert body["prompt_logprobs"] is True
        assert body["sampling_params"]["max_tokens"] == 1


async def test_bad_input_is_refused_before_sending(autojump_clock: trio.abc.Clock) -> None:
    async with sampler() as (sc, _server, tap, rt):
        sent = len(tap.requests)
        with pytest.raises(ta.InvalidInputError, match="num_samples"):
            await sc.sample(PROMPT, 0, SamplingParams())
        with pytest.raises(TypeError, match="ModelInput"):
            await sc.sample([1, 2, 3], 1, SamplingParams())  # type: ignore[arg-type]
        with pytest.raises(ta.InvalidInputError, match="prompt_logprobs"):
            await sc.sample(PROMPT, 1, SamplingParams(), prompt_logprobs_last_n=2)
        with pytest.raises(ta.InvalidInputError, match="model_path or base_model"):
            await rt.create_sampling_client()
        # target_prompt_logprobs: int64 ids, [len(prompt) - 1, K], -1 for none
        floats = TensorData.from_numpy(np.zeros((5, 2), dtype=np.float32))
        with pytest.raises(ta.InvalidInputError, match="int64 token ids, got float32"):
            await sc.sample(PROMPT, 1, SamplingParams(), target_prompt_logprobs=floats)
        six_rows = TensorData.from_numpy(np.zeros((6, 2), dtype=np.int64))
        with pytest.raises(ta.InvalidInputError, match=r"= \[5, K\] .* got shape \[6, 2\]"):
            await sc.sample(PROMPT, 1, SamplingParams(), target_prompt_logprobs=six_rows)
        minus_two = TensorData.from_numpy(np.full((5, 1), -2, dtype=np.int64))
        with pytest.raises(ta.InvalidInputError, match="or -1 for no request; got -2"):
            await sc.sample(PROMPT, 1, SamplingParams(), target_prompt_logprobs=minus_two)
        assert len(tap.requests) == sent


async def test_target_prompt_logprobs_and_alt_tokens_round_trip(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with sampler() as (sc, _server, tap, _rt):
        rows = np.full((PROMPT.length - 1, 3), -1, dtype=np.int64)
        rows[2] = [7, 8, 9]
        target = TensorData.from_numpy(rows, sparse=True, pad_value=-1)
        assert target.is_sparse
        params = SamplingParams(max_tokens=2, seed=1)
        future = await sc.sample(
            PROMPT, 1, params, target_prompt_logprobs=target, prompt_alt_tokens_k=2
        )
        result = await future.result()
        answer = result.target_prompt_logprobs
        assert answer is not None
        assert answer.is_sparse  # the request's layout comes back
        assert answer.sparse_col_indices == target.sparse_col_indices
        dense = answer.to_numpy()
        assert (dense[2] < 0).all()
        assert (np.delete(dense, 2, axis=0) == 0.0).all()
        alt = result.prompt_alt_tokens
        assert alt is not None
        assert alt.tokens.dims == alt.logprobs.dims == (PROMPT.length - 1, 2)
        body = tap.bodies("/api/v1/asample")[0]
        assert body["prompt_alt_tokens_k"] == 2
        assert body["target_prompt_logprobs"]["sparse_crow_indices"] == [0, 0, 0, 3, 3, 3]


def test_a_response_without_the_extras_asked_for_is_refused() -> None:
    # a server that predates these fields ignores them and answers without: say so, rather
    # than hand back a response missing what was asked (as the official client does)
    request = build_sample_request(
        "s", False, PROMPT, 1, SamplingParams(max_tokens=1),
        prompt_logprobs=True, prompt_logprobs_last_n=2, prompt_alt_tokens_k=3,
        target_prompt_logprobs=TensorData.from_numpy(np.ones((5, 1), dtype=np.int64)),
    )  # fmt: skip
    scored_everywhere = np.array([np.nan, -1, -1, -1, -1, -1], dtype=np.float32)
    bare = SampleResponse(sequences=[], prompt_logprobs_np=scored_everywhere)
    with pytest.raises(APIResponseValidationError) as caught:
        sample_transform(request)(bare)
    message = str(caught.value)
    assert "target_prompt_logprobs" in message
    assert "prompt_alt_tokens (prompt_alt_tokens_k=3)" in message
    assert "prompt_logprobs_last_n=2" in message
    assert sample_transform(build_sample_request(
        "s", False, PROMPT, 1, SamplingParams(), prompt_logprobs=False,
        prompt_logprobs_last_n=None,
    ))(bare) is bare  # fmt: skip


async def test_backpressure_429_resubmits_the_same_seq_id_once_applied(
    autojump_clock: trio.abc.Clock,
) -> None:
    slow = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=5)})
    async with sampler(backend=slow, sample_capacity=1) as (sc, server, tap, _rt):
        params = SamplingParams(max_tokens=3, seed=7)
        futures = [await sc.sample(PROMPT, 1, params) for _ in range(3)]
        results = [await f.result() for f in futures]
        assert all(len(r.sequences) == 1 for r in results)
        counts = totals(server)
        assert counts["backpressure:Sample"] >= 2
        assert counts["applied:Sample"] == 3
        seq_ids = [b["seq_id"] for b in tap.bodies("/api/v1/asample")]
        assert len(seq_ids) == 3 + counts["backpressure:Sample"]
        assert sorted(set(seq_ids)) == [0, 1, 2]  # resubmissions reused their seq_id
        limiter = await rate_limiter_for(_rt.registry, _rt.limiter_key)
        assert limiter.statistics().backpressure_reports == counts["backpressure:Sample"]


async def test_cancelled_sample_sends_cancel_future_and_frees_the_slot(
    autojump_clock: trio.abc.Clock,
) -> None:
    slow = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=50)})
    flags = ClientDynamicConfigResponse(sample_cancel_enabled=True)
    async with sampler(backend=slow, sample_capacity=1, dynamic_config=flags) as (
        sc,
        server,
        tap,
        _rt,
    ):
        params = SamplingParams(max_tokens=3)
        pending = await sc.sample(PROMPT, 1, params)
        await trio.sleep(1)
        assert pending.request_id is not None
        # a cancelled waiter takes its operation with it
        with trio.move_on_after(1):
            await pending.result()
        assert pending.done()
        with pytest.raises(OperationCancelledError):
            await pending.result()
        await trio.sleep(1)
        assert tap.bodies("/api/v1/cancel_future") == [{"request_id": pending.request_id}]
        assert totals(server)["cancelled"] == 1
        # the server slot is free again: the next sample is admitted without backpressure
        started = trio.current_time()
        done = await (await sc.sample(PROMPT, 1, params)).result()
        assert len(done.sequences) == 1
        assert trio.current_time() - started < 60
        assert "backpressure:Sample" not in totals(server)


async def test_no_cancel_future_without_the_server_flag(autojump_clock: trio.abc.Clock) -> None:
    slow = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=50)})
    async with sampler(backend=slow) as (sc, _server, tap, _rt):
        pending = await sc.sample(PROMPT, 1, SamplingParams(max_tokens=3))
        await trio.sleep(1)
        assert pending.cancel()
        assert not pending.cancel()  # already cancelled
        await trio.sleep(1)
        assert tap.bodies("/api/v1/cancel_future") == []


async def test_410_resubmits_with_a_new_seq_id(autojump_clock: trio.abc.Clock) -> None:
    async with sampler() as (sc, server, tap, _rt):
        gone = iter([410])
        tap.rules["/api/v1/retrieve_future"] = lambda: next(gone, None)
        result = await (await sc.sample(PROMPT, 2, SamplingParams(max_tokens=2, seed=1))).result()
        assert len(result.sequences) == 2
        assert [b["seq_id"] for b in tap.bodies("/api/v1/asample")] == [0, 1]
        assert totals(server)["applied:Sample"] == 2


async def test_sampler_from_saved_weights_learns_its_base_model(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with served_runtime(Tap) as (rt, _server, tap):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            saved = await (await tc.save_weights_for_sampler("w1")).result()
            sc = await rt.create_sampling_client(model_path=saved.path)
            assert sc.get_base_model() == "local/tiny"
            assert tap.requests[-1][0].startswith("/api/v1/samplers/")
            out = await (await sc.sample(PROMPT, 1, SamplingParams(max_tokens=2))).result()
            assert np.asarray(out.sequences[0].tokens).shape == (2,)
            ephemeral = await tc.save_weights_and_get_sampling_client()
            out2 = await (await ephemeral.sample(PROMPT, 1, SamplingParams(max_tokens=2))).result()
            assert len(out2.sequences[0].tokens) == 2


async def test_the_clients_concurrency_cap_queues_samples_in_turn(
    autojump_clock: trio.abc.Clock,
) -> None:
    # RetryConfig.max_connections caps one client's samples in flight; the ones over the cap
    # wait their turn (the free path takes a slot without a checkpoint, the busy one waits)
    slow = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=5)})
    async with served_runtime(Tap, backend=slow) as (rt, server, _tap):
        sc = await rt.create_sampling_client(
            base_model="local/tiny", retry_config=ta.RetryConfig(max_connections=2)
        )
        cap = sc._limiter
        assert cap is not None
        most = 0
        done = trio.Event()

        async def watch() -> None:
            nonlocal most
            while not done.is_set():
                most = max(most, cap.borrowed_tokens)
                await trio.sleep(0.5)

        params = SamplingParams(max_tokens=2, seed=1)
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                futures = [await sc.sample(PROMPT, 1, params) for _ in range(7)]
                started = trio.current_time()
                results = [await f.result() for f in futures]
                elapsed = trio.current_time() - started
                done.set()
        assert all(len(r.sequences) == 1 for r in results)
        assert most == 2
        assert cap.borrowed_tokens == 0
        assert elapsed >= 4 * 5  # 7 samples, 2 at a time, 5 s each: at least 4 rounds
        assert totals(server)["applied:Sample"] == 7
