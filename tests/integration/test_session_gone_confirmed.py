"""A single heartbeat 410 does not end the session; confirmed 410s raise SessionLostError.

Before the fix one spurious 410 (a proxy, a restarting server) marked the session lost for the
rest of the runtime: every later ``create_*_client`` raised a plain APIConnectionError
("session ... was lost") although the server's session was alive (issue 14).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from sdk_support import BufferedTap, served_runtime

import tinker_actors as ta
from tinker_actors.actors._session import GONE_CONFIRM_DELAYS, HEARTBEAT_INTERVAL

HEARTBEAT = "/api/v1/session_heartbeat"


class HeartbeatScript(BufferedTap):
    """Answers heartbeats from a script of statuses (None: pass to the server); counts them."""

    script: list[int | None] = []  # noqa: RUF012  (set per test before the runtime opens)

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.answers: list[int | None] = []
        self.pending = list(type(self).script)

    async def inspect(self, path: str, raw: bytes) -> int | None:
        if path != HEARTBEAT:
            return None
        status = self.pending.pop(0) if self.pending else None
        self.answers.append(status)
        return status


def scripted(statuses: list[int | None]) -> type[HeartbeatScript]:
    return type("Scripted", (HeartbeatScript,), {"script": statuses})


async def test_one_spurious_410_keeps_the_session(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(600):
        async with served_runtime(scripted([None, 410])) as (rt, server, tap):
            await rt.create_sampling_client(base_model="local/tiny")
            await trio.sleep(HEARTBEAT_INTERVAL * 6)
            # the 410 was followed by a successful confirming beat: the session lives
            assert tap.answers[:3] == [None, 410, None]
            assert len(tap.answers) >= 5  # and the regular heartbeat went on
            handle = rt._session_handle
            assert handle is not None
            assert not handle.lost
            await rt.create_lora_training_client("local/tiny", rank=4)
            await rt.create_sampling_client(base_model="local/tiny")
            assert rt.current_session_id() == handle.session_id
    assert server.counters()["totals"]["sessions:success"] == 1


async def test_an_inconclusive_confirmation_keeps_the_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(600):
        async with served_runtime(scripted([410, 503, 410, 410, None])) as (rt, _server, tap):
            await rt.create_sampling_client(base_model="local/tiny")
            await trio.sleep(HEARTBEAT_INTERVAL * 8)
            handle = rt._session_handle
            assert handle is not None
            assert not handle.lost
            assert tap.answers[:5] == [410, 503, 410, 410, None]
            await rt.create_sampling_client(base_model="local/tiny")


async def test_confirmed_410s_raise_session_lost(autojump_clock: trio.abc.Clock) -> None:
    beats = len(GONE_CONFIRM_DELAYS) + 1
    with trio.fail_after(600):
        async with served_runtime(scripted([410] * beats)) as (rt, _server, tap):
            await rt.create_sampling_client(base_model="local/tiny")
            session_id = rt.current_session_id()
            await trio.sleep(HEARTBEAT_INTERVAL * 6)
            assert tap.answers == [410] * beats  # confirmed, then the heartbeat stopped
            with pytest.raises(ta.SessionLostError) as info:
                await rt.create_lora_training_client("local/tiny", rank=4)
            with pytest.raises(ta.APIConnectionError):  # still caught by the old handler
                await rt.create_sampling_client(base_model="local/tiny")
    assert info.value.session_id == session_id
    assert session_id is not None
    assert session_id in str(info.value)
    assert "410" in str(info.value)
