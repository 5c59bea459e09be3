"""download_checkpoint() for code on the official surface."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tinker_actors.compat as tinker
from tinker_actors.compat.download import download_checkpoint
from tinker_actors.testing import server_in_thread

KEY = "tml-compat-download-key"


@pytest.fixture
def url() -> Iterator[str]:
    with server_in_thread() as (served, _server):
        yield served


def test_a_checkpoint_downloads_through_any_client_of_a_service(url: str, tmp_path: Path) -> None:
    tokens = np.arange(5, 14)
    datum = tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(8, np.float32)},
    )
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
        training.forward_backward([datum], "cross_entropy").result()
        state = training.save_state("final").result().path
        sampler = training.save_weights_for_sampler("s").result().path

        seen: list[int] = []
        done = download_checkpoint(
            service, state, tmp_path / "a", on_progress=lambda e: seen.append(e.done)
        ).result()
        assert done.files == sorted(p.name for p in (tmp_path / "a").iterdir())
        assert seen[-1] > 0

        async def from_asyncio() -> list[str]:
            return (await download_checkpoint(training, state, tmp_path / "b")).files

        assert asyncio.run(from_asyncio()) == done.files

        # refused on the caller's thread, before anything is sent
        with pytest.raises(tinker.InvalidInputError, match="sampler_weights"):
            download_checkpoint(service, sampler, tmp_path / "c")
        with pytest.raises(tinker.InvalidInputError, match="already exists"):
            download_checkpoint(service, state, tmp_path / "a")
        with pytest.raises(tinker.InvalidInputError, match="download_checkpoint\\(\\) takes"):
            download_checkpoint("service", state, tmp_path / "d")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
