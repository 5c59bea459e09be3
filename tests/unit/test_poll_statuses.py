"""How one long-poll loop treats a run of server errors and a 410 (protocol.md §6.2)."""

from __future__ import annotations

import msgspec
import pytest
import trio
from test_transport_support import Server, ok, opened, status

from tinker_actors.actors._poll import FutureExpiredError, ResponseBudget, ResultSpec, poll_future


class Done(msgspec.Struct):
    value: int


async def test_a_run_of_5xx_backs_off_after_the_first_immediate_repoll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([status(503)] * 6 + [ok({"value": 7})])
    async with opened(server) as transport:
        result = await poll_future(
            transport, "req-1", ResultSpec("Sample", Done), budget=ResponseBudget()
        )
    assert result == Done(7)
    # 1st 5xx re-polls at once (as the official client), then 1, 2, 4, 8, 16 s.
    assert [round(g, 6) for g in server.gaps()] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]


async def test_an_answer_between_5xx_resets_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(
        [status(502), status(502), status(408), status(502), status(502), ok({"value": 1})]
    )
    async with opened(server) as transport:
        await poll_future(transport, "req-2", ResultSpec("Sample", Done), budget=ResponseBudget())
    assert [round(g, 6) for g in server.gaps()] == [0.0, 1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("request_type", "advice"),
    [
        ("ForwardBackward", "may already have applied this ForwardBackward"),
        ("OptimStep", "check the model's state"),
        ("Sample", "must be submitted again"),
    ],
)
async def test_410_says_whether_resubmitting_is_safe(
    autojump_clock: trio.testing.MockClock, request_type: str, advice: str
) -> None:
    server = Server([status(410, {"detail": "gone"})])
    async with opened(server) as transport:
        with pytest.raises(FutureExpiredError) as caught:
            await poll_future(
                transport, "req-3", ResultSpec(request_type, Done), budget=ResponseBudget()
            )
    assert advice in str(caught.value)
    assert caught.value.request_type == request_type
    assert "req-3" in str(caught.value)
