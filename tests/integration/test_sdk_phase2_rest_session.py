"""create_rest_client over the runtime's transport; session user_metadata and display_name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from sdk_support import BASE, KEY, BufferedTap, json_or_none, open_runtime

import tinker_actors as ta
from tinker_actors.clients import RestClient
from tinker_actors.local import open_local_server


class Bodies(BufferedTap):
    """ASGI middleware that keeps (path, JSON body) of every request."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.requests: list[tuple[str, Any]] = []

    async def inspect(self, path: str, raw: bytes) -> int | None:
        self.requests.append((path, json_or_none(raw)))
        return None


async def test_session_options_are_sent_and_the_rest_client_reads_them_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Bodies(server.app)
        async with open_runtime(
            app, user_metadata={"team": "phase2"}, display_name="phase2 run"
        ) as rt:
            # (the guard starts after creation: the server builds its tokenizer in a thread)
            tc = await rt.create_lora_training_client("local/tiny", rank=4)
            with trio.fail_after(120):
                rest = rt.create_rest_client()
                assert isinstance(rest, RestClient)
                assert isinstance(rt.service.create_rest_client(), RestClient)
                before = rt.transport.statistics()
                session = await rest.get_session(await rt.session_id())
                caps = await rest.get_server_capabilities()
                run = await rest.get_training_run(tc.model_id)
                # The REST calls went through the runtime's own transport.
                assert rt.transport.statistics() != before
        created = [body for path, body in app.requests if path == "/api/v1/create_session"]
        assert len(created) == 1
        assert created[0]["user_metadata"] == {"team": "phase2"}
        assert created[0]["display_name"] == "phase2 run"
        assert session.user_metadata == {"team": "phase2"}
        assert session.display_name == "phase2 run"
        assert tc.model_id in session.training_run_ids
        assert any(m.model_name == "local/tiny" for m in caps.supported_models)
        assert run.training_run_id == tc.model_id


async def test_without_options_the_session_has_empty_metadata_and_no_name(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Bodies(server.app)
        async with open_runtime(app) as rt:
            await rt.session_id()
        created = [body for path, body in app.requests if path == "/api/v1/create_session"]
        assert created[0]["user_metadata"] == {}
        assert "display_name" not in created[0]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"user_metadata": ["a"]}, "user_metadata"),
        ({"user_metadata": {1: "a"}}, "user_metadata"),
        ({"display_name": 7}, "display_name"),
    ],
)
async def test_bad_session_options_fail_before_anything_starts(
    options: dict[str, Any], match: str
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    with pytest.raises(ta.InvalidInputError, match=match):
        async with ta.open(
            http_transport=httpx.MockTransport(handler), base_url=BASE, api_key=KEY, **options
        ):
            pass
    assert calls == []


async def test_health_check_needs_no_session() -> None:
    async with open_local_server() as server:
        with trio.fail_after(30):
            async with open_runtime(server.app, api_key="tml-health") as rt:
                health = await rt.health_check()
                assert health.status == "ok"
        assert "applied:CreateSession" not in server.counters()["totals"]
