"""Batched completion polling (protocol.md §6.4) against the in-process local server."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
from sdk_support import BufferedTap, open_runtime, totals

import tinker_actors as ta
from tinker_actors.clients import SamplingClient
from tinker_actors.errors import RequestFailedError
from tinker_actors.local import (
    LatencyModel,
    LocalServer,
    NullBackend,
    ServerSettings,
    open_local_server,
)
from tinker_actors.local._backend import BackendInputError
from tinker_actors.types import ClientConfigResponse, ModelInput, SampleResponse, SamplingParams

if TYPE_CHECKING:
    from pathlib import Path

    from tinker_actors.local._backend import SampleJob
    from tinker_actors.local._catalogue import BaseModelSpec

PROMPT = ModelInput.from_ints([11, 12, 13, 14])
PARAMS = SamplingParams(max_tokens=3, seed=1)
RETRIEVE_FUTURES = "/api/v1/retrieve_futures"
POISON = 4000  # a prompt starting with this token fails server-side, after submission


class PoisonBackend(NullBackend):
    """The null backend, except that poisoned prompts fail while sampling (a user error)."""

    async def sample(
        self, spec: BaseModelSpec, weights: Path | None, job: SampleJob
    ) -> SampleResponse:
        if job.prompt.to_ints()[:1] == [POISON]:
            raise BackendInputError("poisoned prompt")
        return await super().sample(spec, weights, job)


class Recorder(BufferedTap):
    """ASGI middleware: records (path, JSON body); can hold ack-only completion polls."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.requests: list[tuple[str, Any]] = []
        self.hold_acks = False

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.requests if p == path]

    async def inspect(self, path: str, raw: bytes) -> int | None:
        body: Any = json.loads(raw) if raw else {}
        self.requests.append((path, body))
        if self.hold_acks and path == RETRIEVE_FUTURES and body.get("timeout") == 0:
            await trio.sleep_forever()  # until the runtime's shutdown cancels the poll
        return None


def batched_settings(**flags: Any) -> ServerSettings:
    return ServerSettings(
        client_config=ClientConfigResponse(sample_use_retrieve_futures=True, **flags)
    )


@asynccontextmanager
async def sampler(
    settings: ServerSettings, latency: LatencyModel | None = None
) -> AsyncIterator[tuple[SamplingClient, LocalServer, Recorder, ta.Runtime]]:
    backend = PoisonBackend(latency={"sample": latency or LatencyModel(kind="fixed", a=2.0)})
    async with open_local_server(backend=backend, settings=settings) as server:
        recorder = Recorder(server.app)
        async with open_runtime(recorder) as rt:
            client = await rt.create_sampling_client(base_model="local/tiny")
            with trio.fail_after(600):
                yield client, server, recorder, rt


def http_counts(server: LocalServer) -> dict[str, int]:
    return {k: v for k, v in totals(server).items() if k.startswith("http:")}


async def burst(client: SamplingClient, n: int) -> list[Any]:
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        future = await client.sample(PROMPT, 1, PARAMS)
        results[i] = await future.result()

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return results


async def server_log(server: LocalServer, client: SamplingClient) -> list[Any]:
    """The server's unacknowledged completion events of the client (a read, trims nothing new)."""
    events, _ = await server.engine.core.futures.completions(
        (client.sampling_session_id, 0), prev_cursor=0, hold=0, retrieved=[]
    )
    return events


async def test_burst_batches_polls_and_acks_trim_the_log(autojump_clock: trio.abc.Clock) -> None:
    n = 200
    async with sampler(batched_settings()) as (client, server, recorder, _rt):
        before = http_counts(server)
        results = await burst(client, n)
        assert all(len(r.sequences) == 1 for r in results)
        # let the loop send its acknowledgements (it goes idle once all are acknowledged)
        await trio.sleep(10)
        after = http_counts(server)
        spent = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        assert spent.get("http:/api/v1/asample") == n
        assert spent.get("http:/api/v1/retrieve_future") == n  # exactly one fetch per sample
        batched = spent.get("http:/api/v1/retrieve_futures", 0)
        polls_per_sample = (spent["http:/api/v1/retrieve_future"] + batched) / n
        print(f"retrieve_futures polls: {batched}; polls per sample: {polls_per_sample:.3f}")
        assert 1 <= batched < n // 4
        assert polls_per_sample < 1.25  # per-future polling needs at least 2 per sample
        assert await server_log(server, client) == []
        bodies = recorder.bodies(RETRIEVE_FUTURES)
        reported = [i for b in bodies for i in b["retrieved_request_ids"]]
        assert len(reported) == len(set(reported)) == n  # every fetched id reported, once
        assert bodies[-1]["timeout"] == 0  # the last one was an ack-only poll
        assert "timeout" not in bodies[0]  # samples were waiting: a long poll
        for earlier, body in itertools.pairwise(bodies):
            if body.get("timeout") == 0:  # an ack-only poll acknowledges something new
                assert body["retrieved_request_ids"] or body["prev_cursor"] > earlier["prev_cursor"]
        cursors = [b["prev_cursor"] for b in bodies]
        assert cursors == sorted(cursors)
        # fetches skip the metadata-only round trip: the completion gave the size
        fetches = recorder.bodies("/api/v1/retrieve_future")
        assert all(b["allow_metadata_only"] is False for b in fetches)
        # idle: nothing more is sent while nothing waits
        sent = len(recorder.requests)
        await trio.sleep(120)
        assert [p for p, _ in recorder.requests[sent:] if p == RETRIEVE_FUTURES] == []


async def test_without_the_flag_samples_poll_one_by_one(autojump_clock: trio.abc.Clock) -> None:
    n = 50
    async with sampler(ServerSettings()) as (client, server, _recorder, _rt):
        before = http_counts(server)
        await burst(client, n)
        after = http_counts(server)
        assert after.get("http:/api/v1/retrieve_futures", 0) == 0
        polls = after["http:/api/v1/retrieve_future"] - before.get(
            "http:/api/v1/retrieve_future", 0
        )
        assert polls >= n


async def test_failed_sample_is_a_typed_error(autojump_clock: trio.abc.Clock) -> None:
    async with sampler(batched_settings()) as (client, server, recorder, _rt):
        bad = ModelInput.from_ints([POISON, 1, 2])
        future = await client.sample(bad, 1, PARAMS)
        with pytest.raises(RequestFailedError) as caught:
            await future.result()
        assert caught.value.request_id is not None
        # the loop keeps serving later samples, and the failure is reported as retrieved
        good = await (await client.sample(PROMPT, 1, PARAMS)).result()
        assert len(good.sequences) == 1
        await trio.sleep(10)
        reported = {
            i for b in recorder.bodies(RETRIEVE_FUTURES) for i in b["retrieved_request_ids"]
        }
        assert caught.value.request_id in reported
        assert await server_log(server, client) == []


async def test_cancelled_waiters_leave_no_task(autojump_clock: trio.abc.Clock) -> None:
    async with sampler(batched_settings(), latency=LatencyModel(kind="fixed", a=100.0)) as (
        client,
        _server,
        recorder,
        rt,
    ):
        futures = [await client.sample(PROMPT, 1, PARAMS) for _ in range(20)]
        await trio.sleep(5)
        assert len(recorder.bodies(RETRIEVE_FUTURES)) >= 1  # the loop is long-polling
        for future in futures:
            future.cancel()
        await trio.sleep(200)  # the samples finish server-side; the loop acks and idles
        for future in futures:
            with pytest.raises(ta.OperationCancelledError):
                await future.result()
        names = [info.name for info in rt.dump().actors]
        sent = len(recorder.requests)
        await trio.sleep(300)
        assert [
            p for p, _ in recorder.requests[sent:] if p == RETRIEVE_FUTURES
        ] == []  # idle: no waiters, everything acknowledged
        assert [info.name for info in rt.dump().actors] == names
        # only the loop itself is left in the poller's nursery
        tasks = _poller_tasks()
        assert [t for t in tasks if t.startswith("poll Sample")] == []
        assert tasks.count("poll RetrieveFutures") == 1


def _poller_tasks() -> list[str]:
    root = trio.lowlevel.current_root_task()
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    assert root is not None
    walk(root)
    return names


async def test_final_ack_is_sent_when_leaving_open(autojump_clock: trio.abc.Clock) -> None:
    backend = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=1.0)})
    async with open_local_server(backend=backend, settings=batched_settings()) as server:
        recorder = Recorder(server.app)
        with trio.fail_after(600):
            async with open_runtime(recorder) as rt:
                client = await rt.create_sampling_client(base_model="local/tiny")
                recorder.hold_acks = True  # ack-only polls hang until shutdown cancels them
                await burst(client, 10)
                await trio.sleep(5)
                assert await server_log(server, client) != []  # not acknowledged yet
                cursor = max(b["prev_cursor"] for b in recorder.bodies(RETRIEVE_FUTURES))
                held = len(recorder.bodies(RETRIEVE_FUTURES))
                recorder.hold_acks = False
        # Leaving open() cancelled the held ack poll; the loop then sent one final ack-only poll
        # with everything still unacknowledged. It follows the session's finish, as in the
        # official client, and the server still takes it: the delivered completions are gone.
        assert await server_log(server, client) == []
        bodies = recorder.bodies(RETRIEVE_FUTURES)
        assert len(bodies) == held + 1
        final = bodies[-1]
        assert final["timeout"] == 0
        assert final["prev_cursor"] >= cursor > 0
        assert len(final["retrieved_request_ids"]) == 10
        assert rt.root.alive is False


async def test_fatal_poll_error_fails_waiters(autojump_clock: trio.abc.Clock) -> None:
    async with sampler(batched_settings(), latency=LatencyModel(kind="fixed", a=50.0)) as (
        client,
        server,
        recorder,
        _rt,
    ):
        original = recorder.app

        async def refuse(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("path") == RETRIEVE_FUTURES:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"detail": "no"}'})
                return
            await original(scope, receive, send)

        recorder.app = refuse
        future = await client.sample(PROMPT, 1, PARAMS)
        with pytest.raises(ta.TinkerError, match=r"batched completion polling .* failed"):
            await future.result()
        # later samples fail the same way, at once, without a new loop
        polls = len(recorder.bodies(RETRIEVE_FUTURES))
        later = await client.sample(PROMPT, 1, PARAMS)
        with pytest.raises(ta.TinkerError, match="batched completion polling"):
            await later.result()
        assert len(recorder.bodies(RETRIEVE_FUTURES)) == polls
        del server
