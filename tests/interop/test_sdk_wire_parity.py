"""Wire parity: tinker_actors sends what the official tinker 0.38 client sends, call by call.

One local server (null backend) listens on 127.0.0.1 behind a recording ASGI wrapper. The
official client makes the sequence of ``parity_official_flow.py`` in a child process; then
tinker_actors makes the same sequence in this process over the same socket. Each captured
request is reduced to (method, path, query, headers, decoded body) and the two lists are
compared entry by entry.

Normalisations (each one is a value that must differ between two clients or two runs):

* **ids**: session, model, request, sampler and sampling-session ids and the tinker:// paths
  built from them are renamed in order of first appearance (``<id0>``, ``<id1>``, ...) within
  each client's capture, so a structural difference (an id in the wrong place) still shows.
  ``session_id`` values follow the server's session counter, as do ``model_seq_id`` bases.
* **X-Idempotency-Key**: a fresh uuid4 per logical request; only its presence and its
  ``stainless-python-retry-`` prefix are compared.
* **Runtime identity**: ``User-Agent``, ``X-Stainless-Runtime``,
  ``X-Stainless-Runtime-Version`` and ``X-Stainless-Async`` name the client library and its
  event loop, so only their presence is compared. The protocol version (``x-sdk-version``,
  ``X-Stainless-Package-Version``, ``sdk_version`` in the bootstrap bodies) is compared
  exactly: the service keys flags and compatibility on it, so we must report 0.38.0.
* **Timing**: ``X-Tinker-Create-Promise-Roundtrip-Time`` carries a measured time; only its
  presence is compared.
* **Transport plumbing**: ``host`` (the same server), ``content-length`` (covered by the
  decoded body), ``connection`` and ``accept-encoding`` (which HTTP library and pool sent it:
  the official client itself differs between its pyqwest and httpx pools, protocol.md §14.9)
  are dropped, and header order is ignored (header names are case-insensitive).
* **Background traffic**: heartbeats and telemetry run on timers, not on calls; they are
  left out of the call-by-call list (telemetry is checked on its own).
* **The RestClient's own bootstrap**: ``tinker.RestClient(base_url=, api_key=)`` builds a
  session-less holder that sends its own ``client/config`` + ``dynamic_config`` pair before
  its first call; a tinker_actors RestClient runs on the runtime's already bootstrapped
  transport. That second pair is removed from the official capture (the first pair, before
  ``create_session``, is compared).

Deviations found by this test and fixed: the first poll of a future lacked
``X-Tinker-Create-Promise-Roundtrip-Time``; ``asample`` left out ``"prompt_logprobs": false``;
the ``finish`` sent on leaving ``open()`` carried no ``x-sdk-method: ServiceClient.close``.
Each keeps a focused test below.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import trio

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)

import tinker_actors as ta
from tinker_actors.clients import RestClient
from tinker_actors.local import open_local_server
from tinker_actors.transport.proto import decode_forward_backward_request
from tinker_actors.types import AdamParams, Datum, ModelInput, SamplingParams, TensorData

pytestmark = pytest.mark.interop

FLOW = Path(__file__).with_name("parity_official_flow.py")
sys.path.insert(0, str(FLOW.parent))
from parity_official_flow import API_KEY, BASE_MODEL, PROMPT  # noqa: E402

BACKGROUND = ("/api/v1/session_heartbeat", "/api/v1/telemetry")
PRESENCE_ONLY = frozenset(
    {
        "user-agent",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-async",
        "x-tinker-create-promise-roundtrip-time",
    }
)
DROPPED = frozenset({"host", "content-length", "connection", "accept-encoding"})
IDEMPOTENCY = "x-idempotency-key"


# -- capture -------------------------------------------------------------------------------------


@dataclass
class Captured:
    """One HTTP request as the server received it."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Recorder:
    """An ASGI wrapper that records every ``/api/v1`` request, then passes it on unchanged."""

    app: Any
    requests: list[Captured] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        self.requests.append(
            Captured(
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode(),
                headers=[(k.decode().lower(), v.decode()) for k, v in scope["headers"]],
                body=body,
            )
        )
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- normalisation -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Reduce a decoded body (structs, numpy arrays) to comparable builtins."""
    if isinstance(value, msgspec.Struct):
        return {
            f: _plain(getattr(value, f))
            for f in value.__struct_fields__
            if getattr(value, f) is not None and getattr(value, f) is not msgspec.UNSET
        }
    if isinstance(value, TensorData):
        return _plain(value.to_json())
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.tolist()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def decode_body(request: Captured) -> Any:
    """Decode the body: JSON, or the forward_backward protobuf; None when empty."""
    if not request.body:
        return None
    content_type = dict(request.headers).get("content-type", "")
    if "protobuf" in content_type:
        encoding = dict(request.headers).get("content-encoding")
        return {
            "protobuf": _plain(
                decode_forward_backward_request(request.body, content_encoding=encoding)
            )
        }
    return json.loads(request.body)


# ids the local server hands out: sessions, models (":train:N"), futures, samplers, paths.
_ID = re.compile(
    r"tinker://[^\s\"'/]+(?:/[A-Za-z_]+)?"  # tinker://<model>/<kind> (the tail name is kept)
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?::[a-z]+:\d+)?"
    r"|session-[0-9a-f]+(?::[a-z]+:\d+)?"  # session-<hex>, <session>:train:0, <session>:req:7
)


class Renamer:
    """Rename ids in order of first appearance, consistently within one client's capture."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        def sub(match: re.Match[str]) -> str:
            found = match.group(0)
            if found not in self.names:
                self.names[found] = f"<id{len(self.names)}>"
            return self.names[found]

        return _ID.sub(sub, text)

    def walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        return value


def normalise(request: Captured, rename: Renamer) -> dict[str, Any]:
    """Reduce one request to what must be equal between the two clients."""
    headers: dict[str, str] = {}
    for name, value in request.headers:
        if name in DROPPED:
            continue
        if name in PRESENCE_ONLY:
            value = "<present>"
        elif name == IDEMPOTENCY:
            value = (
                "stainless-python-retry-<uuid>"
                if re.fullmatch(r"stainless-python-retry-[0-9a-f-]{36}", value)
                else f"<other:{value}>"
            )
        headers[name] = rename(value)
    body = decode_body(request)
    return {
        "call": f"{request.method} {rename(request.path)}",
        "query": rename(request.query),
        "headers": dict(sorted(headers.items())),
        "body": rename.walk(body),
    }


def foreground(requests: list[Captured]) -> list[dict[str, Any]]:
    rename = Renamer()
    return [normalise(r, rename) for r in requests if r.path not in BACKGROUND]


# -- the two clients -----------------------------------------------------------------------------


def _batch() -> list[Datum]:
    out = []
    for offset in (0, 40):
        tokens = [(offset + 7 * i) % 4000 + 4 for i in range(9)]
        out.append(
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 8},
            )
        )
    return out


async def run_ours(url: str) -> None:
    """The parity sequence with tinker_actors, each call awaited before the next."""
    async with ta.open(base_url=url, api_key=API_KEY) as rt:
        training = await rt.create_lora_training_client(BASE_MODEL, rank=8, seed=3)
        data = _batch()
        await (await training.forward_backward(data, "cross_entropy")).result()
        await (await training.forward(data, "cross_entropy")).result()
        await (await training.optim_step(AdamParams(learning_rate=1e-3))).result()
        state = (await (await training.save_state("parity-state")).result()).path
        await (await training.load_state(state)).result()
        saved = await (await training.save_weights_for_sampler("parity-sampler")).result()
        await training.save_weights_and_get_sampling_client()
        sampler = await rt.create_sampling_client(model_path=saved.path)
        prompt = ModelInput.from_ints(PROMPT)
        params = SamplingParams(max_tokens=4, temperature=0.5, seed=17)
        await (await sampler.sample(prompt, 2, params)).result()
        await (await sampler.compute_logprobs(prompt)).result()
        rest = RestClient(rt.transport)
        await rest.list_training_runs()
        await rest.list_checkpoints(training.model_id)
        await rest.get_training_run(training.model_id)


async def run_official(url: str) -> None:
    done = await trio.run_process(
        [sys.executable, str(FLOW), url], capture_stdout=True, capture_stderr=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]


async def run_compat(url: str) -> None:
    """The official flow, unchanged, under the import switch (tinker_actors.compat)."""
    done = await trio.run_process(
        [sys.executable, "-m", "tinker_actors.compat", str(FLOW), url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]


async def capture_both() -> tuple[list[Captured], list[Captured], list[Captured]]:
    """Run the clients against one recording server; return (official, ours, compat) requests."""
    async with open_local_server() as server, trio.open_nursery() as nursery:
        recorder = Recorder(server.app)
        server.app = recorder  # type: ignore[method-assign]  # serve() reads self.app
        url = await nursery.start(server.serve)
        with trio.fail_after(240):
            await run_official(url)
        official = list(recorder.requests)
        recorder.requests.clear()
        with trio.fail_after(120):
            await run_ours(url)
        ours = list(recorder.requests)
        recorder.requests.clear()
        with trio.fail_after(120):
            await run_compat(url)
        compat = list(recorder.requests)
        nursery.cancel_scope.cancel()
    return official, ours, compat


# -- the comparison ------------------------------------------------------------------------------

ROUNDTRIP = "x-tinker-create-promise-roundtrip-time"
BOOTSTRAP = ("POST /api/v1/client/config", "POST /api/v1/client/dynamic_config")


def drop_rest_bootstrap(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Remove every client/config + dynamic_config pair after the first (see module doc)."""
    out: list[dict[str, Any]] = []
    for call in calls:
        if call["call"] in BOOTSTRAP and any(
            c["call"] == "POST /api/v1/create_session" for c in out
        ):
            continue  # a later holder's bootstrap
        out.append(call)
    return out


def test_normalisation_keeps_structure() -> None:
    """The renamer maps the same id to the same name and different ids apart."""
    rename = Renamer()
    a = rename("tinker://1234abcd-0000-4000-8000-00000000000a:train:0/weights/x")
    b = rename("1234abcd-0000-4000-8000-00000000000a:train:0")
    assert a.startswith("<id0>")
    assert a.endswith("/x")
    assert rename("tinker://1234abcd-0000-4000-8000-00000000000a:train:0/weights/y") == a[:-1] + "y"
    assert b == "<id1>"
    assert rename("session-9b10a73:req:11") == "<id2>"
    assert rename("session-9b10a73") == "<id3>"


def test_rest_bootstrap_is_dropped_only_after_the_session() -> None:
    calls = [{"call": c} for c in (*BOOTSTRAP, "POST /api/v1/create_session", *BOOTSTRAP, "GET /x")]
    assert [c["call"] for c in drop_rest_bootstrap(calls)] == [
        *BOOTSTRAP,
        "POST /api/v1/create_session",
        "GET /x",
    ]


Wire = tuple[list[Captured], list[Captured], list[Captured]]


@pytest.fixture(scope="module")
def wire() -> Wire:
    """Capture the clients once for the whole module (the runs take a few seconds)."""

    async def both() -> Wire:
        return await capture_both()

    return trio.run(both)


def test_wire_parity_call_by_call(wire: Wire) -> None:
    official = drop_rest_bootstrap(foreground(wire[0]))
    ours = foreground(wire[1])
    assert [c["call"] for c in ours] == [c["call"] for c in official]
    for index, (theirs, mine) in enumerate(zip(official, ours, strict=True)):
        assert mine == theirs, f"request {index}: {theirs['call']}"


def test_compat_layer_sends_what_the_official_client_sends(wire: Wire) -> None:
    """The official flow's own code, run on tinker_actors.compat, matches call by call.

    Its stand-alone RestClient needs no flags for the calls it makes, so the official
    client's second bootstrap pair is dropped here as for the native run.
    """
    official = drop_rest_bootstrap(foreground(wire[0]))
    compat = foreground(wire[2])
    assert [c["call"] for c in compat] == [c["call"] for c in official]
    for index, (theirs, mine) in enumerate(zip(official, compat, strict=True)):
        assert mine == theirs, f"request {index}: {theirs['call']}"


def test_every_operation_was_captured(wire: Wire) -> None:
    """The comparison covers every public operation of the brief (a guard on the flow)."""
    calls = {c["call"].split(" ", 1)[1].split("/<id")[0] for c in foreground(wire[1])}
    for path in (
        "/api/v1/create_model", "/api/v1/get_info", "/api/v1/forward_backward",
        "/api/v1/optim_step", "/api/v1/save_weights", "/api/v1/load_weights",
        "/api/v1/save_weights_for_sampler", "/api/v1/create_sampling_session",
        "/api/v1/samplers", "/api/v1/asample", "/api/v1/retrieve_future",
        "/api/v1/training_runs", "/api/v1/sessions",
    ):  # fmt: skip
        assert path in calls, path
    kinds = [
        c["body"]["protobuf"].get("forward_only", False)
        for c in foreground(wire[1])
        if c["call"] == "POST /api/v1/forward_backward"
    ]
    assert kinds == [False, True]


def test_first_poll_carries_promise_roundtrip_time(
    wire: Wire,
) -> None:
    for capture in wire:
        first_polls = [
            dict(r.headers)
            for r in capture
            if r.path == "/api/v1/retrieve_future"
            and dict(r.headers).get("x-tinker-request-iteration") == "0"
        ]
        assert first_polls
        for headers in first_polls:
            float(headers[ROUNDTRIP])  # present, and a number of seconds


def test_asample_always_sends_prompt_logprobs(
    wire: Wire,
) -> None:
    for capture in wire:
        bodies = [json.loads(r.body) for r in capture if r.path == "/api/v1/asample"]
        assert [b.get("prompt_logprobs") for b in bodies] == [False, True]


def test_finish_names_service_client_close(wire: Wire) -> None:
    for capture in wire:
        finish = [dict(r.headers) for r in capture if r.path.endswith("/finish")]
        assert len(finish) == 1
        assert finish[0].get("x-sdk-method") == "ServiceClient.close"
        assert "x-sdk-version" in finish[0]


def test_telemetry_has_the_official_shape(wire: Wire) -> None:
    """Telemetry (background): every POST our client sends decodes like the official's."""
    official = [json.loads(r.body) for r in wire[0] if r.path == "/api/v1/telemetry"]
    assert official
    assert official[0]["events"][0]["event"] == "SESSION_START"
    ours = [json.loads(r.body) for r in wire[1] if r.path == "/api/v1/telemetry"]
    # issue 14: the normal flow starts telemetry, so SESSION_START reaches the server
    assert ours, "tinker_actors sent no telemetry in the normal flow"
    assert ours[0]["events"][0]["event"] == "SESSION_START"
    assert {b["sdk_version"] for b in ours} == {b["sdk_version"] for b in official}
    for body in ours:
        assert set(body) <= set(official[0]) | {"session_id"}, sorted(body)
        for event in body["events"]:
            assert {"event", "event_id", "severity", "timestamp"} <= set(event)
