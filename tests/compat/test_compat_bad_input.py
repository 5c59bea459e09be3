"""The compat TrainingClient checks input like the native one and survives a refused request.

The compat layer prepares every operation with the native client's ``prepare_*`` methods, so
issue 14's client-side checks raise at the (blocking) call, before anything is queued; a request
the server refuses fails alone and the next step trains.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

import tinker_actors.compat as tinker
from tinker_actors.compat._process import current_runtime
from tinker_actors.local import LocalServer
from tinker_actors.testing import server_in_thread

KEY = "tml-compat-bad-input-key"


def datum(tokens: list[int], targets: list[int], **inputs: object) -> tinker.Datum:
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": np.array(targets, dtype=np.int64), **inputs},
    )


@pytest.fixture
def served() -> Iterator[tuple[str, LocalServer]]:
    with server_in_thread() as (url, server):
        yield url, server
    assert current_runtime() is None, "a test left the process runtime running"


@pytest.mark.filterwarnings("ignore:.*load_state.*deprecated:FutureWarning")
def test_bad_input_raises_at_the_call_and_a_refused_request_fails_alone(
    served: tuple[str, LocalServer],
) -> None:
    url, server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        tc = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        requests = server.counters()["totals"]
        bad_calls = [
            lambda: tc.forward_backward([datum([1, 2, 3], [2, 3])], "cross_entropy"),
            lambda: tc.forward_backward([datum([1, 10**6], [2, 3])], "cross_entropy"),
            lambda: tc.forward_backward(
                [datum([1, 2], [2, 3], weights=np.array([1, math.nan], np.float32))],
                "cross_entropy",
            ),
            lambda: tc.save_state("../x"),
            lambda: tc.load_state("/abs/path"),
            lambda: tc.optim_step(tinker.AdamParams(eps=0.0)),
        ]
        for call in bad_calls:
            with pytest.raises(tinker.InvalidInputError):
                call()
        with pytest.raises(tinker.InvalidInputError):
            tinker.ModelInput.from_ints([1.5, 2.5])
        assert server.counters()["totals"] == requests  # nothing was sent
        # refused by the server (no such checkpoint): fails alone
        missing = tc.load_state(f"tinker://{tc.model_id}/weights/never-saved")
        with pytest.raises(tinker.NotFoundError):
            missing.result()
        fb = tc.forward_backward([datum([5, 6, 7], [6, 7, 8])], "cross_entropy")
        opt = tc.optim_step(tinker.AdamParams(learning_rate=1e-3))
        assert fb.result().metrics["loss:sum"] > 0
        opt.result()
