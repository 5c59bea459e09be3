"""Signed download links served by the server itself, and age-encrypted external exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest
from test_local_server_extra import START, WallClock, detail, open_api, trained_model

from tinker_actors.types import SaveWeightsExternalRequest

pyrage = pytest.importorskip("pyrage", reason="pyrage (server extra) encrypts exports")

EXTERNAL = "training_runs/{run}/checkpoints/external_weights/{name}/external_weights_urls"


async def test_links_are_unguessable_public_and_expire() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (server, api):
        _, model_id = await trained_model(api)
        await api.save(
            SaveWeightsExternalRequest(model_id=model_id, path="x", seq_id=2),
            "save_weights_external",
        )
        answer = (await api.get(EXTERNAL.format(run=model_id, name="x"))).json()
        assert datetime.fromisoformat(answer["expires"]) == datetime.fromtimestamp(
            START, tz=UTC
        ) + timedelta(hours=1)
        (name, url), *_ = answer["urls"].items()
        parsed = urlparse(url)
        assert f"{parsed.scheme}://{parsed.netloc}" == "http://local"
        _, _, _, token, file_name = parsed.path.split("/")
        assert file_name == name
        assert len(token) >= 40  # 32 random bytes, URL-safe base64

        # no API key needed (the token is the key); HEAD works too
        fetched = await api.client.get(url)
        assert fetched.status_code == 200
        assert fetched.headers["content-length"] == str(len(fetched.content))
        head = await api.client.head(url)
        assert head.status_code == 200
        assert head.content == b""

        # another token, or the right token with another file name, finds nothing
        forged = url.replace(token, token[:-4] + "AAAA")
        assert "unknown or expired" in detail(await api.client.get(forged), 404)
        assert (await api.client.get(url.rsplit("/", 1)[0] + "/other.json")).status_code == 404

        clock.now = START + 3600 - 1
        assert (await api.client.get(url)).status_code == 200
        clock.now = START + 3600
        assert "unknown or expired" in detail(await api.client.get(url), 404)
        assert len(server.engine.core.links) == 0


async def test_age_encrypted_export_decrypts_to_the_plain_export() -> None:
    identity = pyrage.x25519.Identity.generate()
    second = pyrage.x25519.Identity.generate()
    async with open_api() as (server, api):
        _, model_id = await trained_model(api)
        await api.save(
            SaveWeightsExternalRequest(model_id=model_id, path="plain", seq_id=2),
            "save_weights_external",
        )
        encrypted = SaveWeightsExternalRequest(
            model_id=model_id,
            path="secret",
            seq_id=3,
            age_encryption_recipients=[str(identity.to_public()), str(second.to_public())],
        )
        await api.save(encrypted, "save_weights_external")
        plain = (await api.get(EXTERNAL.format(run=model_id, name="plain"))).json()["urls"]
        secret = (await api.get(EXTERNAL.format(run=model_id, name="secret"))).json()["urls"]
        assert sorted(secret) == sorted(f"{name}.age" for name in plain)
        for name, url in plain.items():
            clear = (await api.client.get(url)).content
            sealed = (await api.client.get(secret[f"{name}.age"])).content
            assert sealed != clear
            assert pyrage.decrypt(sealed, [identity]) == clear
            assert pyrage.decrypt(sealed, [second]) == clear  # every recipient can decrypt
        run = server.engine.core.store.runs[model_id]
        (record,) = [c for c in run.checkpoints if c.name == "secret"]
        sizes = [len((await api.client.get(u)).content) for u in secret.values()]
        assert record.size_bytes == sum(sizes)


@pytest.mark.parametrize(
    ("keys", "needle"),
    [
        (["age1notakey"], "age_encryption_recipients[0] ('age1notakey'...)"),
        (["hello"], "is not an age public key"),
        (["ssh-ed25519 AAAA"], "age_encryption_recipients[0]"),
    ],
)
async def test_bad_recipients_are_refused_before_anything_is_saved(
    keys: list[str], needle: str
) -> None:
    async with open_api() as (server, api):
        _, model_id = await trained_model(api)
        request = SaveWeightsExternalRequest(
            model_id=model_id, path="x", seq_id=2, age_encryption_recipients=keys
        )
        message = detail(await api.post("save_weights_external", request), 400)
        assert needle in message
        run = server.engine.core.store.runs[model_id]
        assert not [c for c in run.checkpoints if c.kind == "external"]
