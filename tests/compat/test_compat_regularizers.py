"""A composed loss through the 0.38 surface's forward_backward_custom."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tinker_actors.compat as tinker
from tinker_actors.regularizers import Regularizer, compose, cross_entropy, kl_penalty
from tinker_actors.testing import server_in_thread

torch = pytest.importorskip("torch")

KEY = "tml-compat-regularizers"


def _base(data: list[Any], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    return -torch.stack([lp.mean() for lp in logprobs]).mean(), {}


def test_a_composed_loss_runs_on_the_official_surface() -> None:
    loss_fn = compose(
        _base,
        Regularizer("kl", kl_penalty(estimator="k1"), weight=0.5),
        Regularizer("sft", cross_entropy(mask=None), weight=0.2),
    )
    tokens = np.arange(7, 16)
    datum = tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={"target_tokens": tokens[1:], "ref_logprobs": np.full(8, -1.0, np.float32)},
    )
    with (
        server_in_thread() as (url, _server),
        tinker.ServiceClient(base_url=url, api_key=KEY) as service,
    ):
        training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
        out = training.forward_backward_custom([datum], loss_fn).result()
        training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result()
        bad = tinker.Datum(
            model_input=datum.model_input, loss_fn_inputs={"target_tokens": tokens[1:]}
        )
        with pytest.raises(ValueError, match="ref_logprobs"):
            training.forward_backward_custom([bad], loss_fn)
        training.forward_backward_custom([datum], loss_fn).result()  # it goes on
    metrics = out.metrics
    assert metrics["loss:sum"] == pytest.approx(
        metrics["base_loss"] + metrics["regularizer_total"], rel=1e-5
    )
    assert metrics["regularizer/sft/weighted"] == pytest.approx(0.2 * metrics["regularizer/sft"])


def test_a_loss_that_raises_fails_its_call_and_the_client_goes_on() -> None:
    """0.38 poisons its TrainingClient here; this runtime fills the reserved backward ids
    with a forward pass instead, so a loop that catches the error can go on (docs/compat.md)."""

    def broken(data: list[Any], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        raise RuntimeError("my loss is broken")

    tokens = np.arange(7, 16)
    datum = tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={"target_tokens": tokens[1:]},
    )
    with (
        server_in_thread() as (url, _server),
        tinker.ServiceClient(base_url=url, api_key=KEY) as service,
    ):
        training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
        with pytest.raises(RuntimeError, match="my loss is broken"):
            training.forward_backward_custom([datum], broken).result()
        out = training.forward_backward_custom([datum], _base).result()
        training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result()
    assert np.isfinite(out.metrics["loss:sum"])
