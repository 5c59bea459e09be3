"""Train and sample on the embedded local Tinker server, through tinker_actors' wire layer.

This is the project's "main job" until the high-level clients land (ServiceClient /
TrainingClient / SamplingClient): it starts the local server on a loopback port inside this trio
program, then speaks the Tinker protocol to it with our own pieces — the HTTP transport
(retries, idempotency keys, headers), the msgspec wire types and the protobuf codec:

1. bootstrap: client config, create a session;
2. create a LoRA training model on ``local/tiny`` and wait for its future;
3. pipeline N steps of forward_backward + optim_step (all submitted before any is awaited,
   seq_ids 1, 2, 3, ...), then read the losses;
4. save sampler weights (an ephemeral sampling session) and sample from them;
5. finish the session and print the server's counters (every operation applied once, in order).

Run: ``python examples/train_and_sample_local.py [--steps 8]``
"""

from __future__ import annotations

import argparse
from typing import TypeVar

import numpy as np
import trio

from tinker_actors.config import resolve_config
from tinker_actors.local import open_local_server
from tinker_actors.transport import RequestOptions, Transport, open_transport
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    decode_sample_response,
    encode_forward_backward_request,
)
from tinker_actors.types import (
    AdamParams,
    ClientConfigRequest,
    CompleteMetadataResponse,
    CreateModelRequest,
    CreateModelResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    Datum,
    FinishSessionRequest,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    FutureRetrieveRequest,
    LoraConfig,
    ModelInput,
    OptimStepRequest,
    OptimStepResponse,
    RequestFailedResponse,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponseInternal,
    TryAgainResponse,
    UntypedAPIFuture,
    decode_future_answer,
)

T = TypeVar("T")
PROTOBUF = "application/x-protobuf"


async def wait_json(transport: Transport, future: UntypedAPIFuture, kind: type[T]) -> T:
    """Long-poll a future whose result is JSON."""
    allow_metadata = True
    while True:
        response = await transport.request(
            "POST",
            "/api/v1/retrieve_future",
            json=FutureRetrieveRequest(
                request_id=future.request_id, allow_metadata_only=allow_metadata
            ),
            options=RequestOptions(timeout=45, max_retries=0),
        )
        answer = decode_future_answer(response.content, kind)
        if isinstance(answer, TryAgainResponse):
            continue
        if isinstance(answer, CompleteMetadataResponse):
            allow_metadata = False
            continue
        if isinstance(answer, RequestFailedResponse):
            raise RuntimeError(f"{future.request_id} failed: {answer.error}")
        return answer


async def wait_proto(transport: Transport, future: UntypedAPIFuture) -> bytes:
    """Long-poll a future whose result is protobuf; return the payload bytes."""
    allow_metadata = True
    while True:
        response = await transport.request(
            "POST",
            "/api/v1/retrieve_future",
            json=FutureRetrieveRequest(
                request_id=future.request_id, allow_metadata_only=allow_metadata
            ),
            options=RequestOptions(timeout=45, max_retries=0, accept=PROTOBUF),
        )
        if PROTOBUF in response.headers.get("content-type", ""):
            return response.content
        answer = decode_future_answer(response.content, dict)
        if isinstance(answer, RequestFailedResponse):
            raise RuntimeError(f"{future.request_id} failed: {answer.error}")
        if isinstance(answer, CompleteMetadataResponse):
            allow_metadata = False


def make_batch(rng: np.random.Generator, size: int) -> list[Datum]:
    """Sequences that count up by a fixed stride: easy to learn, cheap to make."""
    batch = []
    for _ in range(size):
        start, stride = int(rng.integers(10, 1000)), int(rng.integers(1, 5))
        tokens = np.arange(start, start + 33 * stride, stride, dtype=np.int64)[:33]
        batch.append(
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1].tolist()),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "weights": np.ones(32, dtype=np.float32),
                },
            )
        )
    return batch


async def train_and_sample(url: str, steps: int) -> None:
    config = resolve_config(base_url=url, api_key="tml-local-example")
    async with open_transport(config) as transport:
        await transport.request(
            "POST", "/api/v1/client/config", json=ClientConfigRequest(sdk_version="example")
        )
        session = (
            await transport.request(
                "POST", "/api/v1/create_session", json=CreateSessionRequest(sdk_version="example")
            )
        ).decode(CreateSessionResponse)
        sid = session.session_id
        print(f"session {sid}")

        created = (
            await transport.request(
                "POST",
                "/api/v1/create_model",
                json=CreateModelRequest(
                    session_id=sid,
                    model_seq_id=0,
                    base_model="local/tiny",
                    lora_config=LoraConfig(rank=8, seed=0),
                ),
            )
        ).decode(UntypedAPIFuture)
        model_id = (await wait_json(transport, created, CreateModelResponse)).model_id
        print(f"model {model_id}")

        rng = np.random.default_rng(0)
        submitted: list[tuple[UntypedAPIFuture, UntypedAPIFuture]] = []
        seq_id = 1
        for _ in range(steps):
            body = encode_forward_backward_request(
                ForwardBackwardRequest(
                    forward_backward_input=ForwardBackwardInput(
                        data=make_batch(rng, 8), loss_fn="cross_entropy"
                    ),
                    model_id=model_id,
                    seq_id=seq_id,
                ),
                compress=False,
            )
            fb = (
                await transport.request(
                    "POST", "/api/v1/forward_backward", content=body, content_type=PROTOBUF
                )
            ).decode(UntypedAPIFuture)
            step = (
                await transport.request(
                    "POST",
                    "/api/v1/optim_step",
                    json=OptimStepRequest.for_params(
                        model_id, AdamParams(learning_rate=1e-3), seq_id=seq_id + 1
                    ),
                )
            ).decode(UntypedAPIFuture)
            submitted.append((fb, step))
            seq_id += 2
        for i, (fb, step) in enumerate(submitted):
            output: ForwardBackwardOutput = decode_forward_backward_output(
                await wait_proto(transport, fb)
            )
            await wait_json(transport, step, OptimStepResponse)
            print(f"step {i + 1}: loss:sum = {output.metrics['loss:sum']:.3f}")

        saved = (
            await transport.request(
                "POST",
                "/api/v1/save_weights_for_sampler",
                json=SaveWeightsForSamplerRequest(
                    model_id=model_id, sampling_session_seq_id=0, seq_id=seq_id
                ),
            )
        ).decode(UntypedAPIFuture)
        sampler = await wait_json(transport, saved, SaveWeightsForSamplerResponseInternal)
        assert sampler.sampling_session_id is not None
        sample_future = (
            await transport.request(
                "POST",
                "/api/v1/asample",
                json=SampleRequest(
                    num_samples=2,
                    prompt=ModelInput.from_ints([100, 102, 104, 106]),
                    sampling_params=SamplingParams(max_tokens=8, seed=1),
                    sampling_session_id=sampler.sampling_session_id,
                    seq_id=0,
                    prompt_logprobs=True,
                ),
                options=RequestOptions(extra_headers={"X-Tinker-Sampling-Backpressure": "1"}),
            )
        ).decode(UntypedAPIFuture)
        result: SampleResponse = decode_sample_response(
            await wait_proto(transport, sample_future),
            sequence_ids=sample_future.sample_sequence_ids,
        )
        for sequence in result.sequences:
            print(f"sample {sequence.sequence_id}: {sequence.tokens} ({sequence.stop_reason})")
        print(f"prompt logprobs: {result.prompt_logprobs}")
        await transport.request(
            "POST",
            f"/api/v1/sessions/{sid}/finish",
            json=FinishSessionRequest.for_status("success"),
        )


async def main(steps: int) -> None:
    async with open_local_server() as server, trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        print(f"local server at {url}")
        await train_and_sample(url, steps)
        counters = server.counters()
        for model_id, model in counters["models"].items():  # type: ignore[union-attr]
            print(f"{model_id}: applied seq_ids {model['applied_seq_ids']}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    trio.run(main, parser.parse_args().steps)
