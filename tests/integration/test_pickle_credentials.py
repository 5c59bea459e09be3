"""Pickles and sampler handles carry no credential, not even in ``default_headers`` (issue 14).

Before the fix a SamplingClient's pickle (and its sampler handle) carried every
``default_headers`` entry, ``Authorization: Bearer ...`` included, base64-encoded inside the
handle, so a plain ``key not in blob`` check missed it. Here the handle is decoded too. The
receiving process reads its own credential from its environment, as the official SDK's does.
"""

from __future__ import annotations

import base64
import pickle
import sys
from pathlib import Path

import pytest
import trio

import tinker_actors as ta
import tinker_actors.compat as tinker
from tinker_actors.clients._sampler_handle import SamplerState, decode_handle, encode_handle
from tinker_actors.testing import server_in_thread

pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)

KEY = "tml-pickle-owner-key-0123456789"
BEARER = "tml-bearer-SECRET-9876543210"
COOKIE = "sid=COOKIE-SECRET-4242"
HEADERS = {
    "Authorization": f"Bearer {BEARER}",
    "Cookie": COOKIE,
    "X-Auth-Token": "TOKEN-SECRET-1111",
    "X-Trace-Tag": "keep-me",
}
SECRETS = (KEY, KEY[4:], BEARER, BEARER[4:], COOKIE, "TOKEN-SECRET-1111")


def revealed(blob: bytes, handle: str) -> bytes:
    """Return the pickle's bytes plus the JSON inside its (base64) sampler handle."""
    return blob + base64.urlsafe_b64decode(handle.encode("ascii"))


def assert_no_secret(data: bytes) -> None:
    for secret in SECRETS:
        assert secret.encode() not in data, f"a credential ({secret[:8]}...) leaked"


def test_handle_codec_drops_credential_headers() -> None:
    state = SamplerState(
        session_id="s", sampling_session_id="ss", base_model="m", base_url="http://x",
        headers=dict(HEADERS),
    )  # fmt: skip
    handle = encode_handle(state)
    assert_no_secret(base64.urlsafe_b64decode(handle))
    assert decode_handle(handle).headers == {"X-Trace-Tag": "keep-me"}
    # a handle written by an older version still never hands a credential on
    old = base64.urlsafe_b64encode(
        b'{"session_id":"s","sampling_session_id":"ss","base_model":"m","base_url":"http://x",'
        b'"headers":{"authorization":"Bearer x"}}'
    ).decode()
    assert decode_handle(old).headers == {}


def test_native_pickle_drops_credentials_and_a_spawned_child_still_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", KEY)  # the spawned child resolves its own credential
    with server_in_thread() as (url, server):
        done: dict[str, object] = {}

        async def owner() -> None:
            async with ta.open(base_url=url, default_headers=HEADERS) as runtime:
                client = await runtime.create_sampling_client(base_model="local/tiny")
                blob = pickle.dumps(client)
                assert_no_secret(revealed(blob, client.get_sampler_handle()))
                assert decode_handle(client.get_sampler_handle()).headers == {
                    "X-Trace-Tag": "keep-me"
                }
                sys.path.insert(0, str(Path(__file__).parent))
                from spawn_sampler_worker import run_in_spawned_child

                done["result"], done["exitcode"] = await run_in_spawned_child(blob, url)
                done["session"] = client.sampling_session_id

        trio.run(owner)
        counters = server.counters()["totals"]
    sampler_id, tokens = done["result"]  # type: ignore[misc]
    assert sampler_id == done["session"], done
    assert len(tokens) == 2
    assert done["exitcode"] == 0
    assert counters["applied:Sample"] == 1


def test_compat_pickle_drops_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with server_in_thread() as (url, server):
        with tinker.ServiceClient(
            base_url=url, api_key=KEY, default_headers_overrides=HEADERS
        ) as service:
            sampler = service.create_sampling_client(base_model="local/tiny").result(60)
            blob = pickle.dumps(sampler)
            assert_no_secret(revealed(blob, sampler.get_sampler_handle()))
            monkeypatch.setenv("TINKER_API_KEY", KEY)
            clone = pickle.loads(blob)
            prompt = tinker.ModelInput.from_ints([1, 2])
            clone.sample(prompt, 1, tinker.SamplingParams(max_tokens=1)).result(60)
            del clone
        assert server.counters()["totals"]["applied:Sample"] == 1
