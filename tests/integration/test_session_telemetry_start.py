"""Telemetry starts with the session in the normal flow (issue 14).

Before the fix only ``runtime.session_id()`` started the telemetry flusher; the normal flow
(``create_lora_training_client`` first, which reserves a seq id and so bootstraps the session
another way) queued SESSION_START and error events that were never sent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from sdk_support import BufferedTap, lm_datum, served_runtime

from tinker_actors._version import PROTOCOL_VERSION, __version__

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class TelemetryTap(BufferedTap):
    """Keeps every telemetry body and the User-Agent it arrived with."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.bodies: list[dict[str, Any]] = []
        self.agents: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v1/telemetry":
            headers = dict(scope["headers"])
            self.agents.append(headers.get(b"user-agent", b"").decode())
        await super().__call__(scope, receive, send)

    async def inspect(self, path: str, raw: bytes) -> int | None:
        if path == "/api/v1/telemetry":
            self.bodies.append(json.loads(raw))
        return None


async def test_training_flow_sends_session_start(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(300):
        async with served_runtime(TelemetryTap) as (rt, _server, tap):
            tc = await rt.create_lora_training_client("local/tiny", rank=4)
            fb = await tc.forward_backward([lm_datum([1, 2, 3, 4])], "cross_entropy")
            await fb.result()
            session_id = rt.current_session_id()
    events = [e for body in tap.bodies for e in body["events"]]
    assert events, "no telemetry reached the server in the normal training flow"
    assert events[0]["event"] == "SESSION_START"
    assert {body["session_id"] for body in tap.bodies} == {session_id}
    # the protocol version the service keys on; our own name and version in User-Agent
    assert {body["sdk_version"] for body in tap.bodies} == {PROTOCOL_VERSION}
    assert set(tap.agents) == {f"tinker-actors/{__version__} (tinker-protocol {PROTOCOL_VERSION})"}


async def test_sampling_flow_sends_session_start(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(300):
        async with served_runtime(TelemetryTap) as (rt, _server, tap):
            await rt.create_sampling_client(base_model="local/tiny")
    events = [e["event"] for body in tap.bodies for e in body["events"]]
    assert events[:1] == ["SESSION_START"]
