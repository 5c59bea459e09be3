"""latency_of(): the runtime's latency report for code on the official surface."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Iterator

import numpy as np
import pytest

import tinker_actors.compat as tinker
from tinker_actors.compat.latency import latency_of
from tinker_actors.local import LocalServer
from tinker_actors.testing import server_in_thread

KEY = "tml-compat-latency-key"


@pytest.fixture
def served() -> Iterator[tuple[str, LocalServer]]:
    with server_in_thread() as (url, server):
        yield url, server


def test_every_client_of_a_service_reports_the_same_block(served: tuple[str, LocalServer]) -> None:
    url, _ = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        assert latency_of(service).operations == {}
        training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
        tokens = np.arange(5, 14)
        datum = tinker.Datum(
            model_input=tinker.ModelInput.from_ints(tokens[:-1].tolist()),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(8, np.float32)},
        )
        training.forward_backward([datum], "cross_entropy").result()
        sampler = training.save_weights_and_get_sampling_client().result()
        params = tinker.SamplingParams(max_tokens=2)
        for _ in range(3):
            sampler.sample(tinker.ModelInput.from_ints([1, 2, 3]), 1, params).result()

        report = latency_of(training)
        assert report.operations["ForwardBackward"].count == 1
        assert report.operations["Sample"].count == 3
        assert report.requests["POST /api/v1/asample"].count == 3
        # one block: the same operations whichever client asks (background requests such as
        # heartbeats may add to the requests between two reports)
        assert latency_of(sampler).operations == report.operations
        rest = tinker.RestClient(base_url=url, api_key=KEY)  # a block of its own
        rest.list_training_runs().result()
        own = latency_of(rest)
        assert own.operations == {}
        assert own.requests["GET /api/v1/training_runs"].count == 1

        assert latency_of(service, reset=True).operations == report.operations
        after = latency_of(service)
        assert after.operations == {}
        assert after.window < report.window


def test_what_cannot_report_is_refused_clearly(served: tuple[str, LocalServer]) -> None:
    url, _ = served
    with pytest.raises(tinker.InvalidInputError, match="takes a tinker ServiceClient"):
        latency_of(object())  # type: ignore[arg-type]
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        unpickled = pickle.loads(pickle.dumps(sampler))
        with pytest.raises(tinker.InvalidInputError, match="has not attached"):
            latency_of(unpickled)
    with pytest.raises(tinker.RuntimeClosedError):
        latency_of(service)


def test_asyncio_code_reads_it_without_a_blocking_warning(
    served: tuple[str, LocalServer], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = served

    async def main() -> int:
        async with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
            sampler = await service.create_sampling_client(base_model="local/tiny")
            await sampler.sample(
                tinker.ModelInput.from_ints([1, 2]), 1, tinker.SamplingParams(max_tokens=1)
            )
            return latency_of(service).operations["Sample"].count

    with caplog.at_level(logging.WARNING, logger="tinker_actors.compat"):
        assert asyncio.run(main()) == 1
    assert "blocks that loop" not in caplog.text
