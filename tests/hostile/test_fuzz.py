"""Fuzz every JSON endpoint's body and the protobuf endpoint; the server must shrug it all off.

Each example is one hostile request to a server on a 127.0.0.1 socket (running in a thread, so
one server and one set of live ids serve every example). Bodies that cannot be valid (garbage
bytes, truncated, nested past ``max_json_depth``, over ``max_json_body_bytes``) must get a 4xx;
valid bodies with wrong-typed, huge or odd values may also succeed, but nothing may answer
5xx or log a traceback. After every example ``healthz`` answers and a well-formed request
(a heartbeat) is served; after each endpoint's run the model trains and samples as before.

Hypothesis runs derandomized (a fixed seed per test) and bounded (``EXAMPLES`` per endpoint),
so the run is reproducible and adds 20-60 s to the suite (3,840 examples).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
import zstandard
from hostile_support import KEY, PROTO, World, datum, fb_body, limits, tracebacks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinker_actors.testing import server_in_thread

EXAMPLES = 120
FUZZ_LIMITS = {"max_json_body_bytes": 16 << 10, "max_body_bytes": 256 << 10}
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Fuzzed:
    """The server under fuzz, a client on it and the live ids of its world."""

    url: str
    server: Any
    client: httpx.Client
    world: World
    spare_session: str

    def post(self, method: str, path: str, body: bytes, **headers: str) -> httpx.Response:
        url = path if path.startswith("/") else f"/api/v1/{path}"
        sent = {k: v.encode("latin-1") for k, v in headers.items()}
        return self.client.request(method, url, content=body, headers=sent)

    def ok(self, path: str, body: object) -> Any:
        response = self.post("POST", path, msgspec.json.encode(body))
        assert response.status_code == 200, response.text
        return response.json()

    def settle(self, request_id: str) -> httpx.Response:
        while True:
            answer = self.post(
                "POST",
                "retrieve_future",
                msgspec.json.encode({"request_id": request_id}),
                accept=PROTO,
            )
            if answer.status_code != 200 or answer.headers["content-type"] == PROTO:
                return answer
            if answer.json().get("type") != "try_again":
                return answer


def build(fuzzed: Fuzzed) -> World:
    session = fuzzed.ok("create_session", {"sdk_version": "x"})["session_id"]
    created = fuzzed.ok(
        "create_model", {"session_id": session, "model_seq_id": 0, "base_model": "local/tiny"}
    )
    fuzzed.settle(created["request_id"])
    model = created["model_id"]
    saved = fuzzed.ok("save_weights", {"model_id": model, "path": "w", "seq_id": 1})
    weights = fuzzed.settle(saved["request_id"]).json()["path"]
    saved = fuzzed.ok("save_weights_for_sampler", {"model_id": model, "path": "s", "seq_id": 2})
    sampler_path = fuzzed.settle(saved["request_id"]).json()["path"]
    sampler = fuzzed.ok(
        "create_sampling_session",
        {"session_id": session, "sampling_session_seq_id": 0, "base_model": "local/tiny"},
    )["sampling_session_id"]
    return World(session, model, sampler, weights, sampler_path)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    options = {"limits": limits(**FUZZ_LIMITS), "long_poll_seconds": 0.05}
    with server_in_thread(**options) as (url, server):
        headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            target = Fuzzed(url, server, client, World("", "", "", "", ""), "")
            target.world = build(target)
            target.spare_session = target.ok("create_session", {"sdk_version": "x"})["session_id"]
            yield target


def templates(f: Fuzzed) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Every JSON endpoint: (method, path, a well-formed body) with the world's live ids."""
    w = f.world
    ckpt = f"training_runs/{w.model_id}/checkpoints/weights/w"
    return {
        "client_config": ("POST", "client/config", {"sdk_version": "x"}),
        "dynamic_config": ("POST", "client/dynamic_config", {"sdk_version": "x"}),
        "auth_token": ("POST", "auth/token", {}),
        "create_session": ("POST", "create_session", {"sdk_version": "x", "tags": ["t"]}),
        "heartbeat": ("POST", "session_heartbeat", {"session_id": w.session_id}),
        "finish": (
            "POST",
            f"sessions/{f.spare_session}/finish",
            {"reason": {"type": "success"}, "detail": None},
        ),
        "create_model": (
            "POST",
            "create_model",
            {"session_id": w.session_id, "model_seq_id": 50, "base_model": "local/tiny"},
        ),
        "get_info": ("POST", "get_info", {"model_id": w.model_id}),
        "optim_step": (
            "POST",
            "optim_step",
            {"model_id": w.model_id, "seq_id": 1000, "adam_params": {"learning_rate": 0.001}},
        ),
        "save_weights": (
            "POST",
            "save_weights",
            {"model_id": w.model_id, "path": "f", "seq_id": 1001},
        ),
        "save_for_sampler": (
            "POST",
            "save_weights_for_sampler",
            {"model_id": w.model_id, "path": "g", "seq_id": 1002},
        ),
        "save_external": (
            "POST",
            "save_weights_external",
            {"model_id": w.model_id, "path": "h", "seq_id": 1003},
        ),
        "load_weights": (
            "POST",
            "load_weights",
            {"model_id": w.model_id, "path": w.weights_path, "seq_id": 1004, "optimizer": False},
        ),
        "copy_weights": (
            "POST",
            "copy_weights",
            {"source_path": w.weights_path, "destination_project_id": "fuzz"},
        ),
        "create_sampling_session": (
            "POST",
            "create_sampling_session",
            {"session_id": w.session_id, "sampling_session_seq_id": 40, "base_model": "local/tiny"},
        ),
        "join_sampling_session": (
            "POST",
            "join_sampling_session",
            {"sampling_session_id": w.sampler_id},
        ),
        "asample": (
            "POST",
            "asample",
            {
                "num_samples": 2,
                "prompt": {"chunks": [{"type": "encoded_text", "tokens": [5, 6, 7]}]},
                "sampling_params": {"max_tokens": 4, "stop": ["x"], "top_k": 5},
                "sampling_session_id": w.sampler_id,
                "seq_id": 5000,
                "topk_prompt_logprobs": 2,
            },
        ),
        "retrieve_future": ("POST", "retrieve_future", {"request_id": f"{w.session_id}:req:1"}),
        "retrieve_futures": (
            "POST",
            "retrieve_futures",
            {"target": {"sampling_session_id": w.sampler_id}, "prev_cursor": 0, "timeout": 0},
        ),
        "cancel_future": ("POST", "cancel_future", {"request_id": "nope"}),
        "telemetry": (
            "POST",
            "telemetry",
            {
                "events": [],
                "platform": "x",
                "sdk_version": "x",
                "session_id": "s",
                "process_uuid": "u",
            },
        ),
        "ttl": ("PUT", f"{ckpt}/ttl", {"ttl_seconds": 7200}),
        "weights_info": ("POST", "weights_info", {"tinker_path": w.weights_path}),
        "search": ("POST", "sessions/search", {"limit": 5, "display_name": "x"}),
        "project": ("PUT", f"sessions/{w.session_id}/project", {"project_id": "p"}),
        "faults": ("PUT", "/_local/faults", {"seed": 1, "rules": []}),
    }


ENDPOINTS = [
    "client_config", "dynamic_config", "auth_token", "create_session", "heartbeat", "finish",
    "create_model", "get_info", "optim_step", "save_weights", "save_for_sampler",
    "save_external", "load_weights", "copy_weights", "create_sampling_session",
    "join_sampling_session", "asample", "retrieve_future", "retrieve_futures", "cancel_future",
    "telemetry", "ttl", "weights_info", "search", "project", "faults",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def hostile_json(draw: st.DrawFn, template: dict[str, Any]) -> tuple[bytes, bool]:
    """A hostile body for an endpoint, and whether it must be refused (True: a 4xx)."""
    valid = msgspec.json.encode(template)
    kind = draw(st.sampled_from(["garbage", "truncated", "nested", "oversized", "mutated", "any"]))
    if kind == "garbage":
        body = draw(st.binary(max_size=200))
        try:
            msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):
            return body, True
        return body, False  # random bytes that happen to be JSON (a number, say)
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))], True
    if kind == "nested":
        depth = draw(st.integers(65, 20_000))
        field = draw(st.sampled_from([*template, "extra"]))
        inner = b"[" * depth + b"]" * depth
        return b'{"' + field.encode() + b'":' + inner + b"}", True
    if kind == "oversized":
        field = draw(st.sampled_from([*template, "extra"]))
        return msgspec.json.encode(
            {**template, field: "x" * (FUZZ_LIMITS["max_json_body_bytes"] + 1)}
        ), True
    if kind == "mutated" and template:
        field = draw(st.sampled_from(sorted(template)))
        value = draw(
            json_values
            | st.sampled_from([10**30, -(10**30), 2**63, -1, 0, math.inf, "", "\n", "x" * 5000])
        )
        return msgspec.json.encode({**template, field: value}), False
    return msgspec.json.encode(draw(json_values)), False


@st.composite
def hostile_proto(draw: st.DrawFn, valid: bytes) -> tuple[bytes, dict[str, str], bool]:
    """A hostile forward_backward body and headers, and whether it must be refused."""
    kind = draw(st.sampled_from(["garbage", "truncated", "flipped", "zstd", "encoding"]))
    headers = {"Content-Type": PROTO}
    if kind == "garbage":
        return draw(st.binary(max_size=300)), headers, True
    if kind == "truncated":  # may stop on a field boundary and be a valid, smaller request
        return valid[: draw(st.integers(0, len(valid) - 1))], headers, False
    if kind == "flipped":
        body = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            body[draw(st.integers(0, len(body) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(body), headers, False
    headers["Content-Encoding"] = "zstd"
    if kind == "zstd":
        inner = draw(st.binary(max_size=300) | st.just(valid[: len(valid) // 2]))
        compressed = zstandard.ZstdCompressor().compress(inner)
        if draw(st.booleans()):
            compressed = compressed[: draw(st.integers(0, len(compressed)))]
        return compressed, headers, False
    # any header-legal bytes, Latin-1 included (a field value has no whitespace at its edges:
    # the client refuses to send such a header, so the server never sees one)
    legal = st.binary(max_size=10).filter(
        lambda b: all(c >= 32 and c != 127 for c in b) and b == b.strip(b" \t")
    )
    headers["Content-Encoding"] = draw(legal).decode("latin-1")
    return valid, headers, False


def check(f: Fuzzed, response: httpx.Response, must_refuse: bool) -> None:
    """The answer to a hostile request: JSON, never 5xx, a 4xx where it cannot be valid."""
    assert response.status_code < 500, response.text[:300]
    if must_refuse:
        assert 400 <= response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert isinstance(response.json()["detail"], str), response.text[:300]
    health = f.client.get("/api/v1/healthz")
    assert health.json() == {"status": "ok"}
    beat = f.post(
        "POST", "session_heartbeat", msgspec.json.encode({"session_id": f.world.session_id})
    )
    assert beat.status_code == 200, beat.text


def trains_and_samples(f: Fuzzed) -> None:
    """The world's model takes its next operation and its sampler samples."""
    core = f.server.engine.core
    sequencer = core.models[f.world.model_id].sequencer
    # the next two free ids: a refused fuzzed request may have consumed some (issue 14)
    free = itertools.filterfalse(sequencer.is_taken, itertools.count(sequencer.next_seq_id))
    seq, after = next(free), next(free)
    step = f.ok("optim_step", {"model_id": f.world.model_id, "seq_id": seq, "adam_params": {}})
    assert "metrics" in f.settle(step["request_id"]).json()
    body = fb_body(f.world.model_id, after, [datum([10, 11, 12])])
    submitted = f.post("POST", "forward_backward", body, **{"Content-Type": PROTO})
    assert submitted.status_code == 200, submitted.text
    assert f.settle(submitted.json()["request_id"]).status_code == 200
    sample = f.ok(
        "asample",
        {
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": [5, 6]}]},
            "sampling_params": {"max_tokens": 2},
            "sampling_session_id": f.world.sampler_id,
        },
    )
    assert f.settle(sample["request_id"]).headers["content-type"] == PROTO


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_hostile_json_bodies(
    fuzzed: Fuzzed, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    method, path, template = templates(fuzzed)[endpoint]

    @SETTINGS
    @given(hostile_json(template))
    def run(case: tuple[bytes, bool]) -> None:
        body, must_refuse = case
        check(fuzzed, fuzzed.post(method, path, body), must_refuse)
        if endpoint == "faults":  # a fuzzed plan that happened to be valid must not linger
            assert fuzzed.post("PUT", "/_local/faults", b"{}").status_code == 200

    run()
    assert tracebacks(caplog.records) == []
    trains_and_samples(fuzzed)


def test_hostile_protobuf_bodies(fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    valid = fb_body(fuzzed.world.model_id, 2000, [datum([10, 11, 12]), datum([7, 8])])

    @settings(SETTINGS, max_examples=EXAMPLES * 6)
    @given(hostile_proto(valid))
    def run(case: tuple[bytes, dict[str, str], bool]) -> None:
        body, headers, must_refuse = case
        check(fuzzed, fuzzed.post("POST", "forward_backward", body, **headers), must_refuse)

    run()
    assert tracebacks(caplog.records) == []
    trains_and_samples(fuzzed)
