"""Training requests accepted before a cancel scope ends ``open()`` are still sent (issue 14).

Before the fix, with a cancel scope around ``open()``, requests already accepted by their first
await were never sent: the cancellation reached the training client's sender along with the
body, and the session was finished without them. docs/sdk.md promised the opposite. Now
leaving the block first flushes them, shielded and bounded by ``flush_timeout``.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from sdk_support import lm_datum, open_runtime

import tinker_actors as ta
from tinker_actors.local import LatencyModel, NullBackend, open_local_server
from tinker_actors.types import AdamParams, Datum

STEPS = 3  # forward_backward + optim_step each: six accepted requests


def datum(offset: int) -> Datum:
    return lm_datum([(offset + 7 * i) % 4000 + 4 for i in range(9)])


async def warm(app: Any) -> None:
    """Have the server build the model's tokenizer (in a thread, while the virtual clock runs
    on) before any deadline starts."""
    async with open_runtime(app) as rt:
        await rt.create_lora_training_client("local/tiny", rank=4, seed=0)


class Holding:
    """ASGI middleware: requests to a path in ``hold`` wait for its event before going on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hold: dict[str, trio.Event] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in self.hold:
            await self.hold[scope["path"]].wait()
        await self.app(scope, receive, send)


async def test_accepted_requests_are_sent_when_a_cancel_scope_ends_open(
    autojump_clock: trio.abc.Clock,
) -> None:
    # each forward_backward takes 2 s on the server, so most of the six are still queued
    # (accepted, not yet sent) when the deadline around open() passes
    backend = NullBackend(latency={"forward_backward": LatencyModel(kind="fixed", a=2.0)})
    async with open_local_server(backend=backend) as server:
        app = Holding(server.app)
        await warm(app)
        futures: list[ta.APIFuture[Any]] = []
        with trio.fail_after(300):
            with trio.move_on_after(100) as deadline:
                async with open_runtime(app) as rt:
                    tc = await rt.create_lora_training_client("local/tiny", rank=4, seed=0)
                    model_id = tc.model_id
                    for step in range(STEPS):
                        futures.append(await tc.forward_backward([datum(step)], "cross_entropy"))
                        futures.append(await tc.optim_step(AdamParams(learning_rate=1e-3)))
                    deadline.deadline = trio.current_time() + 0.5  # the trainer's deadline
                    await trio.sleep_forever()
            assert deadline.cancelled_caught
            # every accepted request was sent and answered: the results are there to read
            for future in futures:
                await future.result()
        models: dict[str, Any] = server.counters()["models"]  # type: ignore[assignment]
        counters = models[model_id]
    kinds = counters["applied_kinds"]
    assert kinds == ["CreateModel"] + ["ForwardBackward", "OptimStep"] * STEPS
    assert counters["applied_seq_ids"] == list(range(1 + 2 * STEPS))


async def test_the_flush_is_bounded_and_says_what_was_lost(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Holding(server.app)
        await warm(app)
        futures: list[ta.APIFuture[Any]] = []
        with trio.fail_after(300):
            with trio.move_on_after(100) as deadline:
                async with open_runtime(app, flush_timeout=7.0, shutdown_grace=2.0) as rt:
                    tc = await rt.create_lora_training_client("local/tiny", rank=4, seed=0)
                    app.hold["/api/v1/forward_backward"] = trio.Event()  # never answered
                    futures.append(await tc.forward_backward([datum(0)], "cross_entropy"))
                    futures.append(await tc.optim_step(AdamParams(learning_rate=1e-3)))
                    deadline.deadline = trio.current_time() + 0.5
                    await trio.sleep_forever()
            ended = trio.current_time()
            assert deadline.cancelled_caught
            # the flush held the exit for at most flush_timeout, the ladder for the grace
            assert ended - deadline.deadline <= 7.0 + 2.0 + 1e-6
            for future in futures:
                with pytest.raises(ta.OperationCancelledError, match=r"flush_timeout=7 s"):
                    await future.result()


async def test_flush_timeout_is_checked() -> None:
    with pytest.raises(ta.InvalidInputError, match="flush_timeout"):
        async with ta.open(base_url="http://h", api_key="tml-x", flush_timeout=-1):
            pass
