"""Telemetry wired into the runtime: SESSION_START, errors of public calls, drain on exit."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from sdk_support import KEY, BufferedTap, open_runtime

import tinker_actors as ta
from tinker_actors.local import open_local_server
from tinker_actors.types import ModelInput, SamplingParams

TELEMETRY = "/api/v1/telemetry"


class Recorder(BufferedTap):
    """ASGI middleware that keeps the raw body of every telemetry POST."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.telemetry: list[bytes] = []
        self.posted = trio.Event()

    def wants(self, scope: Any) -> bool:
        return bool(scope["type"] == "http" and scope["path"] == TELEMETRY)

    async def inspect(self, path: str, raw: bytes) -> int | None:
        self.telemetry.append(raw)
        self.posted.set()
        return None

    def events(self) -> list[dict[str, Any]]:
        return [event for raw in self.telemetry for event in json.loads(raw)["events"]]


async def test_session_start_errors_and_the_final_drain_reach_the_server(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Recorder(server.app)
        async with open_runtime(app) as rt:
            sc = await rt.create_sampling_client(base_model="local/tiny")
            session_id = await rt.session_id()
            with trio.fail_after(120):
                # A caller's mistake the server refuses (404): user_error, flushed at once.
                with pytest.raises(ta.NotFoundError):
                    await rt.create_sampling_client(model_path="tinker://nope/sampler_weights/x")
                # Bad input raised before sending: an unhandled exception of a public call.
                with pytest.raises(ta.InvalidInputError):
                    await sc.sample(ModelInput.from_ints([1, 2]), 0, SamplingParams())
                while len(app.events()) < 3:
                    app.posted = trio.Event()
                    await app.posted.wait()
            rt.telemetry.log("phase2_marker", {"step": 1})  # only the drain on exit sends it
            assert server.counters()["totals"]["telemetry_batches"] >= 1  # type: ignore[index]
        events = app.events()
        bodies = [json.loads(raw) for raw in app.telemetry]
        assert all(body["session_id"] == session_id for body in bodies)
        assert events[0]["event"] == "SESSION_START"
        user_errors = [e for e in events if e.get("event_name") == "user_error"]
        assert len(user_errors) == 1
        assert user_errors[0]["event_data"]["status_code"] == 404
        assert user_errors[0]["severity"] == "WARNING"
        unhandled = [e for e in events if e["event"] == "UNHANDLED_EXCEPTION"]
        assert [e["error_type"] for e in unhandled] == ["InvalidInputError"]
        assert events[-1]["event_name"] == "phase2_marker"  # drained when open() exited
        assert server.counters()["totals"]["telemetry_batches"] == len(app.telemetry)  # type: ignore[index]
        for raw in app.telemetry:
            assert KEY.encode() not in raw
            assert b"tml-" not in raw


async def test_telemetry_off_sends_nothing(autojump_clock: trio.abc.Clock) -> None:
    async with open_local_server() as server:
        app = Recorder(server.app)
        async with open_runtime(app, telemetry=False) as rt:
            with trio.fail_after(120):
                await rt.create_sampling_client(base_model="local/tiny")
                with pytest.raises(ta.NotFoundError):
                    await rt.create_sampling_client(model_path="tinker://nope/sampler_weights/x")
                await trio.sleep(30)  # three flush intervals
            assert rt.telemetry.statistics().enabled is False
            assert "telemetry" not in [c.id for c in rt.root.which_children()]
        assert app.telemetry == []
        assert server.counters()["totals"].get("telemetry_batches", 0) == 0  # type: ignore[union-attr]


async def test_telemetry_flusher_starts_with_the_session_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Recorder(server.app)
        async with open_runtime(app) as rt:
            await rt.get_server_capabilities()  # needs no session
            assert "telemetry" not in [c.id for c in rt.root.which_children()]
            await rt.session_id()
            assert "telemetry" in [c.id for c in rt.root.which_children()]
        assert [e["event"] for e in app.events()] == ["SESSION_START"]
