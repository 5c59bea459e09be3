"""Training and sampling throughput of the torch backend beside bare torch loops, and heartbeats.

For each base model (``local/tiny``, ``local/small``, and SmolLM2-135M-Instruct when installed)
and a batch of 8 x 256 tokens (4 x 128 for SmolLM2), three ways to run the same forward +
backward + AdamW step on the same model, in the same process:

* bare: a plain torch loop over ``_torch_model.forward`` with ``F.cross_entropy`` and
  ``torch.optim.AdamW`` on the LoRA tensors (the ceiling);
* backend: ``TorchBackend.forward_backward`` + ``optim_step`` (Datum conversion, the loss
  module, outputs, worker thread);
* server: the same through the local server in-process (ASGI: protobuf request encoding and
  decoding, sequencing, futures and polling) — what a client's step costs minus the network.

The three are interleaved round by round and the median step time of each is reported with
its ratio to bare. Sampling likewise: ``num_samples`` 8 continuations of a 32-token prompt,
32 new tokens each at temperature 1 (no stop), by a bare loop (one prefill, the KV cache
repeated, one ``forward`` per step, ``multinomial`` and the sampled token's logprob) and by
``TorchBackend.sample``. Then the heartbeat latency while the last model's steps run back to
back through the server: p50 and max of heartbeat round trips sent every 20 ms.

Usage: ``python bench/backend.py [--steps 8] [--models local/tiny,local/small,HuggingFaceTB/SmolLM2-135M-Instruct]``.
Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import torch
import torch.nn.functional as F
import trio

from tinker_actors.local import open_local_server
from tinker_actors.local._backend import SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.local._torch_model import Adapter, AdapterShape, KVCache, build_base, forward
from tinker_actors.transport.proto import encode_forward_backward_request
from tinker_actors.types import (
    AdamParams,
    CreateModelRequest,
    CreateSessionRequest,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    LoraConfig,
    ModelInput,
    OptimStepRequest,
    SamplingParams,
    SessionHeartbeatRequest,
    TensorData,
)
from tinker_actors.types._tensor import json_enc_hook

RANK = 16
#: batch x length per model (SmolLM2 is 60x the compute of local/tiny per token)
SHAPES = {"HuggingFaceTB/SmolLM2-135M-Instruct": (4, 128)}
DEFAULT_SHAPE = (8, 256)
SAMPLES, PROMPT, NEW_TOKENS = 8, 32, 32
HEADERS = {"X-API-Key": "tml-bench"}
PROTO = "application/x-protobuf"
#: real (GGUF) weights are cached here once dequantized
CACHE = Path(tempfile.gettempdir()) / "tinker-actors-cache"


def make_batch(name: str, seed: int = 0) -> tuple[np.ndarray[Any, Any], list[Datum]]:
    batch, length = SHAPES.get(name, DEFAULT_SHAPE)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(4, lookup_model(name).vocab_size, size=(batch, length + 1))
    data = [
        Datum(
            model_input=ModelInput.from_ints(row[:-1].tolist()),
            loss_fn_inputs={
                "target_tokens": TensorData.from_numpy(row[1:].astype(np.int64)),
                "weights": TensorData.from_numpy(np.ones(length, dtype=np.float32)),
            },
        )
        for row in tokens
    ]
    return tokens, data


class Bare:
    """The ceiling: the same model and optimizer in a plain loop."""

    def __init__(self, name: str, tokens: np.ndarray[Any, Any]) -> None:
        spec = lookup_model(name)
        self.base = build_base(spec, cache_dir=CACHE)
        self.adapter = Adapter.create(self.base, AdapterShape(rank=RANK), seed=0)
        self.opt = torch.optim.AdamW(self.adapter.parameters(), lr=1e-4, weight_decay=0.0)
        self.inputs = torch.from_numpy(tokens[:, :-1])
        self.targets = torch.from_numpy(tokens[:, 1:])

    def step(self) -> float:
        began = time.perf_counter()
        logits = forward(self.base, self.adapter, self.inputs)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), self.targets.reshape(-1), reduction="sum"
        )
        torch.autograd.backward(loss)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - began


class Server:
    """A client of the in-process server (ASGI)."""

    def __init__(self, client: httpx.AsyncClient, model_id: str, data: list[Datum]) -> None:
        self.client = client
        self.model_id = model_id
        self.data = data
        self.seq = 1

    @classmethod
    async def create(cls, client: httpx.AsyncClient, name: str, data: list[Datum]) -> Server:
        session_id = (
            await post(client, "create_session", CreateSessionRequest(sdk_version="bench"))
        ).json()["session_id"]
        created = await post(
            client,
            "create_model",
            CreateModelRequest(
                session_id=session_id,
                model_seq_id=0,
                base_model=name,
                lora_config=LoraConfig(rank=RANK),
            ),
        )
        model_id = (await settle(client, created.json()["request_id"])).json()["model_id"]
        server = cls(client, model_id, data)
        server.session_id = session_id
        return server

    session_id: str = ""

    async def step(self) -> float:
        began = time.perf_counter()
        request = ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(data=self.data, loss_fn="cross_entropy"),
            model_id=self.model_id,
            seq_id=self.seq,
        )
        body = encode_forward_backward_request(request, compress=False)
        fb = await self.client.post(
            "/api/v1/forward_backward", content=body, headers={**HEADERS, "Content-Type": PROTO}
        )
        optim = await post(
            self.client,
            "optim_step",
            OptimStepRequest(model_id=self.model_id, seq_id=self.seq + 1, adam_params=AdamParams()),
        )
        self.seq += 2
        await settle(self.client, fb.json()["request_id"])
        await settle(self.client, optim.json()["request_id"])
        return time.perf_counter() - began


async def post(client: httpx.AsyncClient, path: str, body: object, **headers: str) -> Any:
    response = await client.post(
        f"/api/v1/{path}",
        content=msgspec.json.encode(body, enc_hook=json_enc_hook),
        headers={**HEADERS, "Content-Type": "application/json", **headers},
    )
    response.raise_for_status()
    return response


async def settle(client: httpx.AsyncClient, request_id: str) -> httpx.Response:
    body = {"request_id": request_id, "allow_metadata_only": False}
    while True:
        response = await post(client, "retrieve_future", body, Accept=PROTO)
        if response.headers["content-type"].startswith(PROTO):
            return response
        if response.json().get("type") != "try_again":
            return response


async def throughput(name: str, steps: int) -> None:
    spec = lookup_model(name)
    tokens, data = make_batch(name)
    bare = Bare(name, tokens)
    backend = TorchBackend(device="cpu", cache_dir=CACHE)
    await backend.create_model("bench", spec, LoraConfig(rank=RANK))
    params = AdamParams()

    async def backend_step() -> float:
        began = time.perf_counter()
        await backend.forward_backward("bench", data, "cross_entropy", {}, forward_only=False)
        await backend.optim_step("bench", params)
        return time.perf_counter() - began

    times: dict[str, list[float]] = {"bare": [], "backend": [], "server": []}
    async with open_local_server(backend=TorchBackend(device="cpu", cache_dir=CACHE)) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            remote = await Server.create(client, name, data)
            for round_ in range(steps + 1):  # round 0 warms up
                results = {
                    "bare": await trio.to_thread.run_sync(bare.step),
                    "backend": await backend_step(),
                    "server": await remote.step(),
                }
                if round_:
                    for key, value in results.items():
                        times[key].append(value)
    batch, length = SHAPES.get(name, DEFAULT_SHAPE)
    tokens_per_step = batch * length
    bare_median = statistics.median(times["bare"])
    print(
        f"{name}: forward_backward, batch {batch} x {length}, LoRA rank {RANK}, {steps} steps, median"
    )
    for key, values in times.items():
        median = statistics.median(values)
        print(
            f"  {key:8s} {median * 1000:8.1f} ms/step {tokens_per_step / median:9.0f} tok/s"
            f"  {bare_median / median * 100:5.1f} % of bare"
        )


def bare_sample(base: Any, prompt: list[int], seed: int) -> float:
    """Sample like a plain loop would: prefill once, repeat the cache, decode step by step."""
    began = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    tokens, logprobs = [], []
    with torch.inference_mode():
        cache = KVCache()
        logits = forward(base, None, torch.tensor([prompt]), cache)[0, -1:]
        cache = cache.expand(SAMPLES)
        logits = logits.expand(SAMPLES, -1)
        for step in range(NEW_TOKENS):
            lps = torch.log_softmax(logits, dim=-1)
            chosen = torch.multinomial(lps.exp(), 1, generator=gen)
            tokens.append(chosen)
            logprobs.append(lps.gather(-1, chosen))
            if step < NEW_TOKENS - 1:
                logits = forward(base, None, chosen, cache)[:, -1]
    torch.cat(tokens, 1).tolist(), torch.cat(logprobs, 1).tolist()
    return time.perf_counter() - began


async def sampling(name: str, rounds: int) -> None:
    spec = lookup_model(name)
    backend = TorchBackend(device="cpu", cache_dir=CACHE)
    base = backend.base(spec)
    prompt = np.random.default_rng(1).integers(4, spec.vocab_size, size=PROMPT).tolist()
    job = SampleJob(
        prompt=ModelInput.from_ints(prompt),
        num_samples=SAMPLES,
        params=SamplingParams(max_tokens=NEW_TOKENS, temperature=1.0, seed=3, stop=[]),
        prompt_logprobs=False,
        topk_prompt_logprobs=0,
        topk_sample_logprobs=0,
        prompt_logprobs_last_n=None,
    )
    times: dict[str, list[float]] = {"bare": [], "backend": []}
    for round_ in range(rounds + 1):  # round 0 warms up
        bare = await trio.to_thread.run_sync(bare_sample, base, prompt, round_)
        began = time.perf_counter()
        result = await backend.sample(spec, None, job)
        ours = time.perf_counter() - began
        assert all(len(s.tokens) == NEW_TOKENS for s in result.sequences)
        if round_:
            times["bare"].append(bare)
            times["backend"].append(ours)
    produced = SAMPLES * NEW_TOKENS
    bare_median = statistics.median(times["bare"])
    print(
        f"{name}: sample, {SAMPLES} x {NEW_TOKENS} new tokens after {PROMPT}, {rounds} rounds, median"
    )
    for key, values in times.items():
        median = statistics.median(values)
        print(
            f"  {key:8s} {median * 1000:8.1f} ms      {produced / median:9.0f} tok/s"
            f"  {bare_median / median * 100:5.1f} % of bare"
        )


async def heartbeats(name: str, steps: int) -> None:
    _, data = make_batch(name)
    latencies: list[float] = []
    async with open_local_server(backend=TorchBackend(device="cpu", cache_dir=CACHE)) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            remote = await Server.create(client, name, data)
            beat = SessionHeartbeatRequest(session_id=remote.session_id)
            done = trio.Event()

            async def train() -> None:
                for _ in range(steps):
                    await remote.step()
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(train)
                while not done.is_set():
                    began = time.perf_counter()
                    await post(client, "session_heartbeat", beat)
                    latencies.append(time.perf_counter() - began)
                    await trio.sleep(0.02)
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"heartbeats during {steps} {name} steps: n={len(ms)} p50={statistics.median(ms):.2f} ms "
        f"p99={ms[int(len(ms) * 0.99) - 1]:.2f} ms max={ms[-1]:.2f} ms"
    )


async def main(models: list[str], steps: int) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in models:
        await throughput(name, steps)
        await sampling(name, steps)
    await heartbeats(models[-1], max(2, steps // 2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--models", default="local/tiny,local/small")
    args = parser.parse_args()
    trio.run(main, args.models.split(","), args.steps)
