"""The rest of the 0.38 surface: custom-loss handles, optimizer choice, tokenizers, TINKER_LOG."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import trio

import tinker_actors as ta
import tinker_actors.compat as tinker
from tinker_actors.compat import _tokenizer
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.testing import server_in_thread
from tinker_actors.types import OptimizerConfig

KEY = "tml-compat-extras-key"


@pytest.fixture
def served() -> Iterator[tuple[str, LocalServer]]:
    with server_in_thread() as (url, server):
        yield url, server


def datum(offset: int = 0) -> tinker.Datum:
    tokens = np.arange(40 + offset, 49 + offset, dtype=np.int64)
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "weights": np.ones(8, np.float32),
            "advantages": np.linspace(-1, 1, 8).astype(np.float32),
        },
    )


# -- custom losses ----------------------------------------------------------------------------


def weighted_nll(logprobs: Any, advantages: Any) -> Any:
    loss = -(logprobs * advantages).sum()
    return loss, {"custom/weighted:sum": loss, "custom/tokens:mean": logprobs.shape[0] * 1.0}


def test_a_loss_handle_trains_through_forward_backward_custom(
    served: tuple[str, LocalServer],
) -> None:
    pytest.importorskip("torch")
    url, server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        handle = service.create_custom_loss(weighted_nll, {"logprobs": 1, "advantages": 1}).result()
        assert isinstance(handle, tinker.LossHandle)
        assert handle.input_names == ("advantages",)
        assert handle.loss_id is None  # it runs on this machine
        training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        out = training.forward_backward_custom([datum(0), datum(3)], handle).result(60)
        assert "custom/weighted:sum" in out.metrics
        assert out.metrics["custom/tokens:mean"] == pytest.approx(8.0)
        training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result(60)
        kinds = server.counters()["models"][training.model_id]["applied_kinds"]
    assert kinds == ["CreateModel", "Forward", "ForwardBackward", "OptimStep"]


def _branches(logprobs: Any) -> Any:
    if logprobs.sum() > 0:  # branching on a tensor value cannot be traced
        return logprobs.sum(), {}
    return -logprobs.sum(), {}


def _python_metric(logprobs: Any) -> Any:
    return logprobs.sum(), {"custom/x:sum": 1.0}


def _numpy_call(logprobs: Any) -> Any:
    return logprobs.sum(), {"custom/x:sum": np.float32(1.0)}


def _bad_metric(logprobs: Any) -> Any:
    return logprobs.sum(), {"accuracy": logprobs.sum()}


def _tolist(logprobs: Any) -> Any:
    return logprobs.sum(), {"custom/n:sum": logprobs.tolist()}


@pytest.mark.parametrize(
    ("fn", "ranks", "message"),
    [
        (_branches, {"logprobs": 1}, "cannot be traced"),
        (_python_metric, {"logprobs": 1}, "must be a tensor"),
        (_numpy_call, {"logprobs": 1}, "cannot be traced"),
        (_bad_metric, {"logprobs": 1}, "custom/<name>:sum"),
        (_tolist, {"logprobs": 1}, "stay in torch"),
        (weighted_nll, {"logprobs": 1}, "rank for each parameter"),
        (weighted_nll, {"logprobs": 0, "advantages": 1}, "rank 1"),
    ],
)
def test_bad_losses_are_refused_when_the_handle_is_made(
    served: tuple[str, LocalServer], fn: Any, ranks: dict[str, int], message: str
) -> None:
    pytest.importorskip("torch")
    url, _server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        future = service.create_custom_loss(fn, ranks)
        with pytest.raises(tinker.InvalidInputError, match=message):
            future.result(60)


# -- optimizer choice -------------------------------------------------------------------------


async def test_optimizer_config_is_sent_at_model_creation() -> None:
    bodies: list[dict[str, Any]] = []
    async with open_local_server() as server:

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("path") == "/api/v1/create_model":
                chunks = []
                while True:
                    message = await receive()
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        break
                bodies.append(json.loads(b"".join(chunks)))
                replayed = iter([{"type": "http.request", "body": b"".join(chunks)}])

                async def again() -> Any:
                    return next(replayed)

                await server.app(scope, again, send)
                return
            await server.app(scope, receive, send)

        async with ta.open(
            base_url="http://local",
            api_key=KEY,
            http_transport=httpx.ASGITransport(app=recording),
        ) as runtime:
            with trio.fail_after(60):
                await runtime.create_lora_training_client("local/tiny", rank=8)
                with pytest.raises(ta.TinkerError, match="adamw only"):
                    await runtime.create_lora_training_client(
                        "local/tiny", rank=8, optimizer=OptimizerConfig.dimuon()
                    )
                with pytest.raises(ta.InvalidInputError, match="optimizer"):
                    await runtime.create_lora_training_client("local/tiny", optimizer="dimuon")  # type: ignore[arg-type]
    assert [b["optimizer_config"] for b in bodies] == [
        {"type": "adamw"},
        {"type": "dimuon", "version": 1},
    ]


# -- tokenizers -------------------------------------------------------------------------------


def test_get_tokenizer_downloads_only_when_the_hub_is_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    pytest.importorskip("transformers")
    import transformers

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_from_pretrained(name: str, **kwargs: Any) -> str:
        calls.append((name, kwargs))
        return f"tokenizer of {name}"

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing offline
    _tokenizer.load_hf_tokenizer.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ta.TokenizerUnavailableError, match="not in the Hugging Face cache"):
        _tokenizer.load_hf_tokenizer("Org/Model-Nowhere", None)
    assert calls == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    _tokenizer.load_hf_tokenizer.cache_clear()
    assert _tokenizer.load_hf_tokenizer("meta-llama/Llama-3.2-1B", None) == (
        "tokenizer of thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"
    )
    assert calls == [("thinkingmachineslabinc/meta-llama-3-instruct-tokenizer", {})]
    _tokenizer.load_hf_tokenizer.cache_clear()


# -- TINKER_LOG -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "level"), [("debug", logging.DEBUG), ("info", logging.INFO)])
def test_tinker_log_sets_the_level(value: str, level: int) -> None:
    script = (
        "import logging, tinker_actors.compat\n"
        "print(logging.getLogger('tinker').level, logging.getLogger('tinker_actors').level,"
        " logging.getLogger('httpx').level)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**__import__("os").environ, "TINKER_LOG": value},
    )
    assert done.stdout.split() == [str(level)] * 3
