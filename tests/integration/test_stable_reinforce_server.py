"""stable_reinforce's server side: recorded sequences, provenance checks, losses refused at submission.

Raw HTTP on the ASGI app (null backend unless said otherwise): what the engine records when a
sample asks for ``record_stability_info``, how a datum's provenance is checked against it, and
that a loss or a loss config a backend cannot take is a 400 at submission on every backend.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
from test_local_server_extra import START, Api, WallClock, detail, open_api

from tinker_actors.local import NullBackend
from tinker_actors.transport.proto import decode_sample_response, encode_forward_backward_request
from tinker_actors.types import (
    CreateSamplingSessionRequest,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    ModelInput,
    PromptProvenanceSpan,
    SampledProvenanceSpan,
    SampleRequest,
    SampleResponse,
    SamplingParams,
)

PROMPT = [10, 11, 12, 13]
PROTO = "application/x-protobuf"


async def sample(
    api: Api, session_id: str, *, record: bool = True, seq: int = 0
) -> tuple[SampleResponse, list[str]]:
    """Sample 2 sequences of 3 tokens from the base model; return them with their ids."""
    create = CreateSamplingSessionRequest(
        session_id=session_id, sampling_session_seq_id=seq, base_model="local/tiny"
    )
    sampler_id = (await api.ok("create_sampling_session", create))["sampling_session_id"]
    request = SampleRequest(
        sampling_session_id=sampler_id,
        seq_id=0,
        num_samples=2,
        prompt=ModelInput.from_ints(PROMPT),
        sampling_params=SamplingParams(max_tokens=3, seed=1),
        record_stability_info=record,
    )
    future = await api.ok("asample", request)
    for _ in range(100):
        response = await api.client.post(
            "/api/v1/retrieve_future",
            content=msgspec.json.encode({"request_id": future["request_id"]}),
            headers={"X-API-Key": "tml-extra-test", "Accept": PROTO},
        )
        assert response.status_code == 200, response.text
        if response.headers["content-type"].startswith(PROTO):
            ids: list[str] = future["sample_sequence_ids"]
            return decode_sample_response(response.content, sequence_ids=ids), ids
    raise AssertionError("the sample never settled")


def rl_datum(sampled: list[int], sequence_id: str, *, spans: bool = True) -> Datum:
    """The cookbook's rl_loop datum: prompt + all but the last sampled token, with provenance."""
    tokens = [*PROMPT, *sampled]
    n = len(tokens) - 1
    datum = Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "advantages": [0.0] * (len(PROMPT) - 1) + [1.0] * len(sampled),
            "logprobs": [0.0] * n,
        },
    )
    if not spans:
        return datum
    return datum.with_provenance(
        model_input=[
            PromptProvenanceSpan(sequence_id=sequence_id, length=len(PROMPT)),
            SampledProvenanceSpan(sequence_id=sequence_id, length=len(sampled) - 1),
        ],
        loss_fn_inputs=[
            PromptProvenanceSpan(sequence_id=sequence_id, offset=1, length=len(PROMPT) - 1),
            SampledProvenanceSpan(sequence_id=sequence_id, length=len(sampled)),
        ],
    )


async def forward_backward(
    api: Api,
    model_id: str,
    data: list[Datum],
    loss_fn: str = "stable_reinforce",
    config: dict[str, Any] | None = None,
    seq_id: int = 1,
) -> httpx.Response:
    request = ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data,
            loss_fn=loss_fn,  # type: ignore[arg-type]
            loss_fn_config=config,
        ),
        model_id=model_id,
        seq_id=seq_id,
    )
    return await api.client.post(
        "/api/v1/forward_backward",
        content=encode_forward_backward_request(request, compress=False),
        headers={"X-API-Key": "tml-extra-test", "Content-Type": PROTO},
    )


async def test_recorded_sequences_train_with_the_samplers_logprobs() -> None:
    async with open_api() as (server, api):
        session_id = await api.session()
        model_id = await api.model(session_id)
        response, ids = await sample(api, session_id)
        assert len(server.engine.core.stability) == 2
        data = [rl_datum(s.tokens, i) for s, i in zip(response.sequences, ids, strict=True)]
        accepted = await forward_backward(api, model_id, data)
        assert accepted.status_code == 200, accepted.text
        result = await api.client.post(
            "/api/v1/retrieve_future",
            content=msgspec.json.encode({"request_id": accepted.json()["request_id"]}),
            headers={"X-API-Key": "tml-extra-test", "Accept": PROTO},
        )
        assert result.status_code == 200
        assert result.headers["content-type"].startswith(PROTO)
        totals = server.counters()["totals"]
        assert totals["applied:ForwardBackward"] == 1  # type: ignore[index]
        assert totals.get("failed:ForwardBackward", 0) == 0  # type: ignore[attr-defined]


async def test_provenance_that_does_not_match_the_records_is_a_400() -> None:
    async with open_api() as (_, api):
        session_id = await api.session()
        model_id = await api.model(session_id)
        response, ids = await sample(api, session_id)
        tokens = response.sequences[0].tokens

        # no provenance at all
        message = detail(
            await forward_backward(api, model_id, [rl_datum(tokens, ids[0], spans=False)]), 400
        )
        assert "stable_reinforce needs provenance" in message

        # a sampled token the sampler did not produce
        forged = [*tokens[:-1], (tokens[-1] + 1) % 4096]
        message = detail(await forward_backward(api, model_id, [rl_datum(forged, ids[0])]), 400)
        assert "are not the sampled tokens" in message
        assert ids[0] in message

        # a sequence id that was never recorded
        message = detail(
            await forward_backward(api, model_id, [rl_datum(tokens, "nope:seq:0")]), 400
        )
        assert "no recorded sequence 'nope:seq:0' in this session" in message

        # claims past the end of the sequence
        longer = [*tokens, 5]
        message = detail(await forward_backward(api, model_id, [rl_datum(longer, ids[0])]), 400)
        assert "past the 3 sampled tokens" in message


async def test_sequences_are_scoped_to_their_session_and_unrecorded_without_the_flag() -> None:
    async with open_api() as (server, api):
        first = await api.session()
        response, ids = await sample(api, first)
        unrecorded, other_ids = await sample(api, first, record=False, seq=1)
        assert len(server.engine.core.stability) == 2
        second = await api.session()
        model_id = await api.model(second)
        message = detail(
            await forward_backward(api, model_id, [rl_datum(response.sequences[0].tokens, ids[0])]),
            400,
        )
        assert "in this session" in message
        model_first = await api.model(first, model_seq_id=1)
        message = detail(
            await forward_backward(
                api, model_first, [rl_datum(unrecorded.sequences[0].tokens, other_ids[0])]
            ),
            400,
        )
        assert "record_stability_info=True" in message


async def test_records_expire_a_day_after_their_last_use() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (_, api):
        session_id = await api.session()
        model_id = await api.model(session_id)
        response, ids = await sample(api, session_id)
        datum = rl_datum(response.sequences[0].tokens, ids[0])
        clock.now = START + 23 * 3600
        assert (await forward_backward(api, model_id, [datum], seq_id=1)).status_code == 200
        clock.now = START + 46 * 3600  # 23 h after the use: still alive
        assert (await forward_backward(api, model_id, [datum], seq_id=2)).status_code == 200
        clock.now = START + 70 * 3600 + 1
        message = detail(await forward_backward(api, model_id, [datum], seq_id=3), 400)
        assert "within a day of their last use" in message


async def test_a_loss_the_backend_cannot_run_is_refused_with_what_it_supports() -> None:
    backend = NullBackend(losses=frozenset({"cross_entropy", "importance_sampling"}))
    async with open_api(backend=backend) as (_, api):
        session_id = await api.session()
        model_id = await api.model(session_id)
        datum = rl_datum([20, 21], "x")
        message = detail(await forward_backward(api, model_id, [datum], loss_fn="ppo"), 400)
        assert message == (
            "this backend cannot run loss_fn 'ppo'; the local server supports: "
            "cross_entropy, importance_sampling"
        )
        message = detail(await forward_backward(api, model_id, [datum], loss_fn="custom"), 400)
        assert message.startswith("unknown loss_fn 'custom'")


@pytest.mark.parametrize(
    ("loss_fn", "config", "needle"),
    [
        ("ppo", {"beta": 0.1}, "has unknown keys ['beta']; it accepts clip_high_threshold"),
        ("ppo", {"clip_low_threshold": 1.5}, "must not exceed clip_high_threshold (1.2)"),
        ("dro", {"beta": "lots"}, "must be a number"),
    ],
)
async def test_a_bad_loss_config_is_refused_at_submission(
    loss_fn: str, config: dict[str, Any], needle: str
) -> None:
    async with open_api() as (server, api):
        session_id = await api.session()
        model_id = await api.model(session_id)
        datum = rl_datum([20, 21], "x", spans=False)
        message = detail(await forward_backward(api, model_id, [datum], loss_fn, config), 400)
        assert needle in message
        assert "received:ForwardBackward" not in server.counters()["totals"]  # type: ignore[operator]
