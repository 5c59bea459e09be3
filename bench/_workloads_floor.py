"""The floor: the same HTTP requests through the bare h11 transport, bodies prebuilt."""

from __future__ import annotations

import os
from typing import Any

import httpx
from _workloads_inputs import KEY, Meter, prompt

#: Set by :func:`send_sdk_headers`: the floor then carries every header the SDK sends. Per
#: kind of request (path, its own headers): the parsed URL and the full headers.
_SDK_HEADERS: (
    dict[tuple[str, tuple[tuple[str, str], ...]], tuple[httpx.URL, httpx.Headers]] | None
) = None
_SDK_BASE: httpx.Headers | None = None
_PER_PATH = {
    "/api/v1/retrieve_future": {"X-Tinker-Request-Iteration": "0", "X-Tinker-Request-Type": "Sample",
                                "X-Stainless-Raw-Response": "raw"},
    "/api/v1/asample": {"X-Tinker-Sampling-Backpressure": "1"},
}  # fmt: skip


def send_sdk_headers() -> None:
    """Make the floor send the SDK's header set (``floor-h``): the same bytes on the wire as the
    SDK's requests (about 20 headers, as the protocol has the official client send them), not
    the 4 or 5 a bare request needs, with a fresh idempotency key per request like the SDK's.
    Still a floor: each kind's headers are normalised once (httpx copies a ``Headers`` without
    normalising it again) and each URL parsed once; per request, one header is set."""
    global _SDK_HEADERS, _SDK_BASE
    from tinker_actors.transport._headers import base_headers
    from tinker_actors.transport._request import request_headers

    _SDK_BASE = request_headers(httpx.AsyncClient().headers, base_headers())  # before timing
    _SDK_HEADERS = {}


def _with_sdk_headers(
    url: str, path: str, headers: dict[str, str]
) -> tuple[httpx.URL, httpx.Headers]:
    assert _SDK_HEADERS is not None
    assert _SDK_BASE is not None
    key = (path, tuple(headers.items()))
    found = _SDK_HEADERS.get(key)
    if found is None:  # once per kind of request
        full = _SDK_BASE.copy()
        full.update({"x-sdk-version": "0.38.0", "x-sdk-method": "Bench.floor",
                     "x-stainless-retry-count": "0", "x-stainless-read-timeout": "60.0"})  # fmt: skip
        full.update(_PER_PATH.get(path, {}))
        full.update(headers)
        found = _SDK_HEADERS[key] = (httpx.URL(url + path), full)
    target, full = found
    sent = full.copy()
    sent["X-Idempotency-Key"] = os.urandom(16).hex()
    return target, sent


def _bare() -> tuple[Any, dict[str, str]]:
    from tinker_actors.transport._h11 import TrioH11Transport

    return TrioH11Transport(max_connections=1000), {"X-API-Key": KEY}


async def _exchange(
    transport: Any, url: str, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    target: Any = url + path
    sent: Any = headers
    if _SDK_HEADERS is not None:
        target, sent = _with_sdk_headers(url, path, headers)
    request = httpx.Request("POST", target, headers=sent, content=body,
                            extensions={"timeout": {"connect": 60, "read": 600, "write": 600, "pool": 600}})  # fmt: skip
    response = await transport.handle_async_request(request)
    await response.aread()
    return response


async def _submit_and_wait(transport: Any, url: str, path: str, body: bytes, ctype: str) -> bytes:
    """One operation as the protocol has it: submit, then long-poll its future to the end."""
    import msgspec

    json_headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    submitted = await _exchange(
        transport, url, path, body, {"X-API-Key": KEY, "Content-Type": ctype}
    )
    assert submitted.status_code == 200, (submitted.status_code, submitted.content[:200])
    request_id = msgspec.json.decode(submitted.content)["request_id"]
    return await _poll_to_end(transport, url, request_id, json_headers)


async def _poll_to_end(
    transport: Any, url: str, request_id: str, json_headers: dict[str, str]
) -> bytes:
    """Long-poll a future as protocol §6.2 has it: the first poll allows a metadata-only
    answer (a result over the server's threshold, 1 MiB here), which the SDKs re-poll for."""
    import msgspec

    polls = [
        msgspec.json.encode({"request_id": request_id, "allow_metadata_only": allow})
        for allow in (True, False)
    ]
    poll = polls[0]
    headers = {**json_headers, "Accept": "application/x-protobuf"}
    while True:
        answer = await _exchange(transport, url, "/api/v1/retrieve_future", poll, headers)
        head = answer.content[:64]
        if answer.status_code == 408 or b'"try_again"' in head:
            continue
        if b'"complete_metadata"' in head:
            poll = polls[1]
            continue
        assert answer.status_code == 200, (answer.status_code, answer.content[:200])
        return answer.content


async def floor_sampling(
    w: str, s: dict[str, int], url: str, sampler_id: str, out: dict[str, Any]
) -> None:
    import msgspec
    import trio

    from tinker_actors.types import ModelInput, SampleRequest, SamplingParams

    transport, _ = _bare()
    seq = iter(range(1, 1 << 30))

    def body(p: list[int], max_tokens: int, logprobs: bool = False) -> bytes:
        return msgspec.json.encode(SampleRequest(
            num_samples=1, prompt=ModelInput.from_ints(p), sampling_params=SamplingParams(max_tokens=max_tokens),
            sampling_session_id=sampler_id, seq_id=next(seq), prompt_logprobs=logprobs,
        ))  # fmt: skip

    async def one(b: bytes) -> None:
        await _submit_and_wait(transport, url, "/api/v1/asample", b, "application/json")

    if w in ("B1", "B2", "B5"):
        if w == "B5":
            bodies = [body(prompt(i, s["tokens"]), 1, True) for i in range(s["n"])]
        else:
            bodies = [body(prompt(i, s["prompt"]), s["max_tokens"]) for i in range(s["n"])]
        with Meter(out):
            async with trio.open_nursery() as nursery:
                for b in bodies:
                    nursery.start_soon(one, b)
        out["ops"] = s["n"]
    elif w == "B7":
        turns = [[body(prompt(i, s["prompt"] + t * s["grow"]), s["max_tokens"]) for t in range(s["turns"])]
                 for i in range(s["n"])]  # fmt: skip

        async def trajectory(bs: list[bytes]) -> None:
            for b in bs:
                await one(b)

        with Meter(out):
            async with trio.open_nursery() as nursery:
                for bs in turns:
                    nursery.start_soon(trajectory, bs)
        out["ops"] = s["n"] * s["turns"]
    else:
        bodies = [body([5, 6, 7, 8, 9], 1) for _ in range(s["n"])]
        with Meter(out):
            for b in bodies:
                await one(b)
        out["ops"] = s["n"]
    await transport.aclose()


async def floor_training(
    w: str,
    s: dict[str, int],
    url: str,
    model_id: str,
    data: list[Any],
    loss: str,
    out: dict[str, Any],
) -> None:
    import msgspec
    import trio

    from tinker_actors.transport.proto import encode_forward_backward_request
    from tinker_actors.types import (
        AdamParams,
        ForwardBackwardInput,
        ForwardBackwardRequest,
        OptimStepRequest,
    )

    transport, _ = _bare()
    proto = "application/x-protobuf"

    def fb_body(seq_id: int) -> bytes:
        return encode_forward_backward_request(ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(data=data, loss_fn=loss),  # type: ignore[arg-type]
            model_id=model_id, seq_id=seq_id), compress=False)  # fmt: skip

    if w == "B4":
        # one request (the server's chunk limits may make the SDK send several: see req/op)
        b = fb_body(1)
        with Meter(out):
            await _submit_and_wait(transport, url, "/api/v1/forward_backward", b, proto)
        out["ops"] = 1
        await transport.aclose()
        return
    steps = []
    for step in range(s["steps"]):
        opt = msgspec.json.encode(OptimStepRequest.for_params(
            model_id, AdamParams(learning_rate=1e-4 / (1 + step)), seq_id=2 * step + 2))  # fmt: skip
        steps.append((fb_body(2 * step + 1), opt))
    with Meter(out):
        # the same pipelining as the SDK loops: submit step k+1's pair before waiting on step k
        async with trio.open_nursery() as nursery:
            prev: trio.Event | None = None
            for fb, opt in steps:
                fb_done, op_done = trio.Event(), trio.Event()
                send_fb = await _submit_only(transport, url, "/api/v1/forward_backward", fb, proto)
                send_op = await _submit_only(
                    transport, url, "/api/v1/optim_step", opt, "application/json"
                )
                nursery.start_soon(_wait, transport, url, send_fb, fb_done)
                nursery.start_soon(_wait, transport, url, send_op, op_done)
                if prev is not None:
                    await prev.wait()
                prev = op_done
    out["ops"] = 2 * s["steps"]
    await transport.aclose()


async def _submit_only(transport: Any, url: str, path: str, body: bytes, ctype: str) -> str:
    import msgspec

    submitted = await _exchange(
        transport, url, path, body, {"X-API-Key": KEY, "Content-Type": ctype}
    )
    assert submitted.status_code == 200, (submitted.status_code, submitted.content[:200])
    return str(msgspec.json.decode(submitted.content)["request_id"])


async def _wait(transport: Any, url: str, request_id: str, done: Any) -> None:
    await _poll_to_end(
        transport, url, request_id, {"X-API-Key": KEY, "Content-Type": "application/json"}
    )
    done.set()
