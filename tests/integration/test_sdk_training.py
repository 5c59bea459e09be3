"""TrainingClient against the local server, in-process: order, the double await, chunks, failures.

The server's counters say what it applied, in which order, and how often; the null backend's
loss falls with optimizer steps, so results that come from the wrong state are caught.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
from sdk_support import lm_datum, open_runtime, send_status, served_runtime

import tinker_actors as ta
from tinker_actors.clients import TrainingClient, TrainingOrderBrokenError
from tinker_actors.clients._training_actor import OUTBOX_SIZE
from tinker_actors.clients._training_ops import fwd_op
from tinker_actors.local import LatencyModel, LocalServer, NullBackend, open_local_server
from tinker_actors.tokenizer import TokenizerUnavailableError
from tinker_actors.types import AdamParams, ClientConfigResponse, Datum, ModelInput


def datum(offset: int = 0, n: int = 8) -> Datum:
    return lm_datum([(offset + 7 * i) % 4000 + 4 for i in range(n + 1)])


class Answering:
    """ASGI middleware that answers chosen paths with a status while ``rule`` says so.

    A path in ``hold`` waits for its event before it is answered.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.rules: dict[str, Callable[[], int | None]] = {}
        self.hold: dict[str, trio.Event] = {}
        self.posts: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            self.posts.append(path)
            if path in self.hold:
                await self.hold[path].wait()
            status = self.rules[path]() if path in self.rules else None
            if status is not None:
                await send_status(send, status)
                return
        await self.app(scope, receive, send)


@asynccontextmanager
async def trainer(
    **server_options: Any,
) -> AsyncIterator[tuple[TrainingClient, LocalServer, Answering, ta.Runtime]]:
    async with served_runtime(Answering, **server_options) as (rt, server, app):
        # get_info makes the server build its tokenizer in a worker thread, and the virtual
        # clock runs on while it does; the hang guard therefore starts after creation.
        client = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        with trio.fail_after(600):
            yield client, server, app, rt


async def _forward_backward_result(tc: TrainingClient, data: list[Datum]) -> object:
    return await (await tc.forward_backward(data, "cross_entropy")).result()


def model_counters(server: LocalServer, model_id: str) -> dict[str, Any]:
    models: dict[str, Any] = server.counters()["models"]  # type: ignore[assignment]
    out: dict[str, Any] = models[model_id]
    return out


async def test_concurrent_callers_get_strictly_increasing_seq_ids(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, _app, _rt):
        futures: list[ta.clients.APIFuture[Any]] = []

        async def caller(k: int) -> None:
            for step in range(5):
                futures.append(await tc.forward_backward([datum(k * 10 + step)], "cross_entropy"))
                futures.append(await tc.optim_step(AdamParams(learning_rate=1e-3)))

        async with trio.open_nursery() as nursery:
            for k in range(4):
                nursery.start_soon(caller, k)
        for future in futures:
            await future.result()
        counters = model_counters(server, tc.model_id)
        assert counters["applied_seq_ids"] == list(range(41))
        assert counters["deduplicated"] == 0
        assert sorted(f.request_id for f in futures) == sorted(
            {f.request_id for f in futures}  # type: ignore[misc]
        )


async def test_double_await_and_back_to_back_pipelining(autojump_clock: trio.abc.Clock) -> None:
    slow = NullBackend(latency={"forward_backward": LatencyModel(kind="fixed", a=5)})
    async with trainer(backend=slow) as (tc, server, _app, _rt):
        before = trio.current_time()
        fb = await tc.forward_backward([datum(1), datum(2)], "cross_entropy")
        opt = await tc.optim_step(AdamParams(learning_rate=1e-2))
        # both were accepted in order without waiting for the 5 s forward_backward
        assert trio.current_time() - before < 1
        assert not fb.done()
        assert not opt.done()
        assert fb.request_type == "ForwardBackward"
        first = await fb.result()
        assert fb.request_id is not None
        assert trio.current_time() - before >= 5
        await opt.result()
        second = await (await tc.forward_backward([datum(1), datum(2)], "cross_entropy")).result()
        assert second.metrics["loss:sum"] < first.metrics["loss:sum"]
        counters = model_counters(server, tc.model_id)
        assert counters["applied_kinds"][1:3] == ["ForwardBackward", "OptimStep"]
        assert counters["applied_seq_ids"] == [0, 1, 2, 3]


async def test_submission_is_not_held_up_by_an_earlier_upload(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The first await means "queued in order": it returns while earlier POSTs are in flight."""
    async with trainer() as (tc, server, app, _rt):
        app.hold["/api/v1/forward_backward"] = release = trio.Event()
        fb = await tc.forward_backward([datum(1)], "cross_entropy")
        opt = await tc.optim_step(AdamParams(learning_rate=1e-2))
        save = await tc.save_state("queued")
        await trio.testing.wait_all_tasks_blocked()
        # the server still holds the forward_backward POST: nothing behind it was sent
        assert app.posts.count("/api/v1/optim_step") == 0
        assert (fb.request_id, opt.request_id, save.request_id) == (None, None, None)
        release.set()
        await opt.result()
        assert (await save.result()).path.endswith("/weights/queued")
        await fb.result()
        assert fb.request_id is not None
        counters = model_counters(server, tc.model_id)
        assert counters["applied_kinds"] == [
            "CreateModel",
            "ForwardBackward",
            "OptimStep",
            "SaveWeights",
        ]


async def test_leaving_open_sends_what_was_queued(autojump_clock: trio.abc.Clock) -> None:
    async with open_local_server() as server:
        app = Answering(server.app)
        app.hold["/api/v1/forward_backward"] = release = trio.Event()
        async with open_runtime(app) as rt, trio.open_nursery() as nursery:
            tc = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
            await tc.forward_backward([datum(1)], "cross_entropy")
            await tc.optim_step(AdamParams(learning_rate=1e-2))

            async def release_later() -> None:
                await trio.sleep(1.0)  # the runtime is stopping by then
                release.set()

            nursery.start_soon(release_later)
        # neither future was awaited, yet both were sent before the session finished
        counters = model_counters(server, tc.model_id)
        assert counters["applied_kinds"] == ["CreateModel", "ForwardBackward", "OptimStep"]


async def test_a_flush_that_cannot_finish_is_cut_at_the_grace(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A server that never answers cannot hold the exit past flush_timeout + shutdown_grace."""
    async with open_local_server() as server:
        app = Answering(server.app)
        # the server builds the model's tokenizer in a thread on first use, while the virtual
        # clock runs on: do that before the hang guard starts
        async with open_runtime(app) as warm:
            await warm.create_lora_training_client("local/tiny", rank=8, seed=0)
        app.hold["/api/v1/forward_backward"] = trio.Event()  # never set
        with trio.fail_after(60):
            async with open_runtime(app, shutdown_grace=3.0, flush_timeout=2.0) as rt:
                tc = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
                fb = await tc.forward_backward([datum(1)], "cross_entropy")
                opt = await tc.optim_step(AdamParams(learning_rate=1e-2))
                started = trio.current_time()
            assert trio.current_time() - started <= 2.0 + 3.0 + 1e-6
        # the queued optim_step was never sent; both futures failed, saying so, rather than hang
        for fut in (fb, opt):
            with pytest.raises(ta.OperationCancelledError, match="flush_timeout=2 s"):
                await fut.result()
        counters = server.counters()
        assert counters["totals"].get("sessions:success") == 2  # type: ignore[union-attr]
        assert app.posts.count("/api/v1/optim_step") == 0


async def test_a_full_outbox_makes_the_first_await_wait(autojump_clock: trio.abc.Clock) -> None:
    async with trainer() as (tc, server, app, _rt):
        app.hold["/api/v1/forward_backward"] = release = trio.Event()
        await tc.forward_backward([datum(1)], "cross_entropy")  # the sender holds this one
        accepted = [await tc.optim_step(AdamParams()) for _ in range(OUTBOX_SIZE)]
        extra: list[object] = []

        async def one_more() -> None:
            extra.append(await tc.optim_step(AdamParams()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one_more)
            await trio.testing.wait_all_tasks_blocked()
            assert extra == []  # no room until the held POST is done
            release.set()
        assert len(extra) == 1
        for fut in [*accepted, *extra]:
            await fut.result()
        applied = model_counters(server, tc.model_id)["applied_seq_ids"]
        assert applied == list(range(OUTBOX_SIZE + 3))


async def test_result_timeout_leaves_the_operation_running(autojump_clock: trio.abc.Clock) -> None:
    slow = NullBackend(latency={"forward_backward": LatencyModel(kind="fixed", a=30)})
    async with trainer(backend=slow) as (tc, _server, _app, _rt):
        fb = await tc.forward_backward([datum(1)], "cross_entropy")
        with pytest.raises(TimeoutError):
            await fb.result(timeout=1)
        assert not fb.done()
        assert (await fb.result()).metrics["loss:sum"] > 0


async def test_chunked_batch_is_one_future_over_consecutive_seq_ids(
    autojump_clock: trio.abc.Clock,
) -> None:
    flags = ClientConfigResponse(fwdbwd_max_chunk_len=2)
    async with trainer(client_config=flags) as (tc, server, app, _rt):
        data = [datum(i) for i in range(5)]
        whole = await (await tc.forward(data, "cross_entropy")).result()
        assert len(whole.loss_fn_outputs) == 5
        assert app.posts.count("/api/v1/forward_backward") == 3
        counters = model_counters(server, tc.model_id)
        assert counters["applied_seq_ids"] == [0, 1, 2, 3]
        # the merged loss equals the sum of per-datum forward losses
        singles = [
            (await (await tc.forward([d], "cross_entropy")).result()).metrics["loss:sum"]
            for d in data
        ]
        assert whole.metrics["loss:sum"] == pytest.approx(sum(singles), rel=1e-5)


async def test_a_failed_submission_fails_everything_queued_behind_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, app, _rt):
        fb0 = await tc.forward_backward([datum(0)], "cross_entropy")
        await fb0.result()
        # 403: refused before the server read it (a 400 would have consumed the id)
        app.rules["/api/v1/optim_step"] = lambda: 403
        app.hold["/api/v1/optim_step"] = release = trio.Event()
        outcomes: dict[int, BaseException] = {}
        futures = [await tc.optim_step(AdamParams())]
        # queued in order behind the optim_step, whose answer the server still holds
        futures += [await tc.forward_backward([datum(k)], "cross_entropy") for k in (1, 2, 3)]
        release.set()
        for k, fut in enumerate(futures):
            with pytest.raises(Exception) as caught:  # noqa: PT011  # checked just below
                await fut.result()
            outcomes[k] = caught.value
        assert isinstance(outcomes[0], ta.PermissionDeniedError)
        for later in (outcomes[k] for k in (1, 2, 3)):
            assert isinstance(later, TrainingOrderBrokenError)
            assert later.seq_id == 2
            assert later.request_type == "OptimStep"
            assert "seq_id 2" in str(later)
        # once the failure is known, later calls are refused at their first await
        with pytest.raises(TrainingOrderBrokenError):
            await tc.optim_step(AdamParams())
        # nothing after the failure reached the server
        assert model_counters(server, tc.model_id)["applied_seq_ids"] == [0, 1]
        assert app.posts.count("/api/v1/forward_backward") == 1


async def test_bad_input_is_refused_before_anything_is_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, app, _rt):
        sent = len(app.posts)
        with pytest.raises(ta.InvalidInputError, match="loss_fn"):
            await tc.forward_backward([datum(0)], "crossentropy")  # type: ignore[arg-type]
        with pytest.raises(ta.InvalidInputError, match="No data"):
            await tc.forward_backward([], "cross_entropy")
        with pytest.raises(ta.InvalidInputError, match="AdamParams"):
            await tc.optim_step({"learning_rate": 1.0})  # type: ignore[arg-type]
        with pytest.raises(ta.InvalidInputError, match="tinker://"):
            await tc.load_state("/tmp/weights")
        assert len(app.posts) == sent
        # the client is still healthy and its next id is 1
        await (await tc.optim_step(AdamParams())).result()
        assert model_counters(server, tc.model_id)["applied_seq_ids"] == [0, 1]
    async with (
        open_local_server() as server2,
        open_runtime(server2.app) as rt,
    ):
        with pytest.raises(ta.InvalidInputError, match="train_"):
            await rt.create_lora_training_client(
                "local/tiny", train_mlp=False, train_attn=False, train_unembed=False
            )
        with pytest.raises(ta.InvalidInputError, match="rank"):
            await rt.create_lora_training_client("local/tiny", rank=0)


async def test_save_state_then_create_from_state_reproduces_the_model(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, _app, rt):
        for _ in range(3):
            await tc.forward_backward([datum(5)], "cross_entropy")
            await tc.optim_step(AdamParams(learning_rate=1e-2))
        saved = await (await tc.save_state("ckpt", ttl_seconds=3600)).result()
        assert saved.path.startswith("tinker://")
        assert saved.path.endswith("weights/ckpt")
        expected = (await (await tc.forward([datum(5)], "cross_entropy")).result()).metrics
        clone = await rt.create_training_client_from_state_with_optimizer(saved.path)
        assert clone.model_id != tc.model_id
        assert clone.get_info().model_data.model_name == "local/tiny"
        got = (await (await clone.forward([datum(5)], "cross_entropy")).result()).metrics
        assert got["loss:sum"] == pytest.approx(expected["loss:sum"], rel=1e-6)
        loaded = await (await tc.load_state(saved.path)).result()
        assert loaded.path == saved.path
        sampler = await (await tc.save_weights_for_sampler("s1")).result()
        assert sampler.path.endswith("sampler_weights/s1")
        await clone.close()
        with pytest.raises(ta.ActorExited):
            await clone.optim_step(AdamParams())
        kinds = model_counters(server, tc.model_id)["applied_kinds"]
        assert kinds[-4:] == ["SaveWeights", "Forward", "LoadWeights",
                              "SaveWeightsForSampler"]  # fmt: skip


async def test_server_side_failure_reaches_the_caller_typed(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, _server, _app, _rt):
        bad = Datum(
            model_input=ModelInput.from_ints([5, 6, 7]),
            loss_fn_inputs={"target_tokens": np.array([1, 2], dtype=np.int64)},
        )
        # the client refuses this itself; build the op unchecked so the server sees it
        op = fwd_op(tc.model_id, ClientConfigResponse(), [bad], "cross_entropy", None,
                    forward_only=False)  # fmt: skip
        # refused at submission (400) or failed as a future, but typed either way
        with pytest.raises((ta.RequestFailedError, ta.BadRequestError), match=r"\w"):
            await (await tc.submit(op)).result()


async def test_get_tokenizer_loads_the_models_tokenizer_offline(
    autojump_clock: trio.abc.Clock,
) -> None:
    pytest.importorskip("tokenizers")
    async with trainer() as (tc, _server, _app, _rt):
        tokenizer = tc.get_tokenizer()
        ids = tokenizer.encode("hello world", add_special_tokens=False)
        assert ids
        assert all(0 <= i < tokenizer.vocab_size for i in ids)
        # a sampler knows only its base model's name; local/tiny is no Hugging Face id, so
        # offline loading fails with a clear, typed error instead of a download
        sampler = await tc.save_weights_and_get_sampling_client()
        with pytest.raises(TokenizerUnavailableError, match="never downloads"):
            sampler.get_tokenizer()
