"""Limits are configurable (``ServerLimits``, ``serve --limit``) and checked when set."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
from click.testing import CliRunner
from hostile_support import in_process, refused, sample_body

from tinker_actors.local import LatencyModel, NullBackend, ServerLimits, ServerSettings
from tinker_actors.types import ClientConfigResponse


async def test_a_raised_limit_admits_what_the_default_refuses() -> None:
    limits = ServerLimits(max_num_samples=4)
    async with in_process(limits=limits) as (_, (api,)):
        world = await api.build_world()
        refused(
            await api.post("asample", sample_body(world, num_samples=5)), 400, "max_num_samples", 4
        )
        accepted = await api.post("asample", sample_body(world, num_samples=4))
        assert accepted.status_code == 200, accepted.text
        assert len(accepted.json()["sample_sequence_ids"]) == 4


async def test_queued_samples_are_bounded_even_without_backpressure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = NullBackend(latency={"sample": LatencyModel(a=100.0)})
    limits = ServerLimits(max_queued_samples=2)
    async with in_process(backend=slow, limits=limits) as (_, (api,)):
        world = await api.build_world()
        for _ in range(2):
            assert (await api.post("asample", sample_body(world))).status_code == 200
        response = await api.post("asample", sample_body(world))
        refused(response, 429, "max_queued_samples", 2)


def test_limit_values_are_checked() -> None:
    with pytest.raises(ValueError, match="max_num_samples must be an integer >= 1"):
        ServerLimits(max_num_samples=0)
    with pytest.raises(ValueError, match="body_timeout must be > 0"):
        ServerLimits(body_timeout=float("nan"))
    with pytest.raises(ValueError, match="max_json_depth must be in"):
        ServerLimits(max_json_depth=10_000)
    with pytest.raises(ValueError, match="must not exceed max_body_bytes"):
        ServerLimits(max_json_body_bytes=2, max_body_bytes=1)
    # the server never tells clients to send chunks it would refuse
    with pytest.raises(ValueError, match="fwdbwd_max_chunk_len"):
        ServerSettings(
            client_config=ClientConfigResponse(fwdbwd_max_chunk_len=2048),
            limits=ServerLimits(max_datums=1024),
        )


def test_limit_flags_parse_and_refuse_unknown_names() -> None:
    limits = ServerLimits.from_flags(["max_num_samples=256", "body_timeout=2.5"])
    assert limits == replace(ServerLimits(), max_num_samples=256, body_timeout=2.5)
    with pytest.raises(ValueError, match="max_num_samples"):
        ServerLimits.from_flags(["max_samples=3"])
    with pytest.raises(ValueError, match="not a number"):
        ServerLimits.from_flags(["max_num_samples=many"])
    with pytest.raises(ValueError, match="given twice"):
        ServerLimits.from_flags(["max_datums=1", "max_datums=2"])


def test_serve_refuses_a_bad_limit_flag() -> None:
    from tinker_actors.cli._commands import cli

    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--limit", "max_num_samples=-1"])
    assert result.exit_code != 0
    assert "max_num_samples must be an integer >= 1" in result.output
