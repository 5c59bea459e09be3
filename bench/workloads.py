"""Workloads B1-B8 (workloads.md §5): tinker_actors, the official 0.38 client and a floor.

One command runs every workload for three clients, each (client, workload) run in a fresh child
process (pinned to CPU 1 when ``taskset`` exists; the local null server on CPU 0):

* ``ours``: tinker_actors in trio (``await client.call(...)``, then ``await future.result()``);
* ``official``: the official client in its documented 0.38 style (futures, ``.result()``);
* ``floor``: the same HTTP requests sent by the bare h11 transport (``TrioH11Transport``) with no
  SDK logic: bodies prebuilt before the timed section (the protobuf ones with our encoder),
  one submit + long-poll per operation, no retries, limiter, futures or actors. Setup (session,
  model, sampler) uses the SDK and is not timed. There is no floor for B6 (its sampler
  refresh is SDK logic through and through).

Per run: CPU seconds of the child (``getrusage``, all threads) and wall time of the timed
section, HTTP requests per completed operation (the server's counters; setup included), peak
open sockets (sampled every 20 ms from ``/proc/self/fd``) and peak RSS. Each (client, workload)
repeats ``--repeat`` times, the order of the clients alternating, and the medians are reported
with ours/official and ours/floor CPU ratios. ``--json`` writes every run.

Sizes are scaled down by default so the whole set fits in about 10 minutes on 2 cores; ``--full``
gives workloads.md's sizes where the local models allow (their context is 1,024 or 2,048 tokens:
B2's 24k-token responses and B4/B5's 4.5k-token sequences are cut to what fits, said below).

Usage: ``python bench/workloads.py [--only B1 --only B3] [--repeat 3] [--full] [--json out.json]``.
Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import numpy as np

KEY = "tml-bench-workloads"
TINY, SMALL = "local/tiny", "local/small"  # contexts 1,024 and 2,048 tokens
WORKLOADS = ("B1", "B2", "B3", "B3n", "B4", "B5", "B6", "B7", "B8")

# name: (default sizes, full sizes); see describe() for what each number is
SIZES: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    "B1": ({"n": 512, "prompt": 300, "max_tokens": 256}, {"n": 2048, "prompt": 300, "max_tokens": 256}),
    "B2": ({"n": 32, "prompt": 256, "max_tokens": 1536}, {"n": 1024, "prompt": 256, "max_tokens": 1536}),
    "B3": ({"steps": 8, "batch": 128, "tokens": 2048}, {"steps": 100, "batch": 128, "tokens": 2048}),
    "B3n": ({"steps": 8, "batch": 128, "tokens": 2048}, {"steps": 100, "batch": 128, "tokens": 2048}),
    "B4": ({"batch": 256, "tokens": 2048}, {"batch": 4096, "tokens": 2048}),
    "B5": ({"n": 256, "tokens": 1024}, {"n": 4096, "tokens": 2000}),
    "B6": ({"iters": 3, "groups": 4, "group": 16, "datums": 64, "tokens": 256},
           {"iters": 300, "groups": 64, "group": 16, "datums": 1024, "tokens": 600}),
    "B7": ({"n": 64, "turns": 5, "prompt": 128, "grow": 160, "max_tokens": 64},
           {"n": 4096, "turns": 5, "prompt": 128, "grow": 160, "max_tokens": 64}),
    "B8": ({"n": 200}, {"n": 1000}),
}  # fmt: skip


def describe(w: str, s: dict[str, int]) -> str:
    return {
        "B1": lambda: (
            f"{s['n']} concurrent sample(num_samples=1), {s['prompt']}-token prompts from 128 prefixes, max_tokens {s['max_tokens']}"
        ),
        "B2": lambda: (
            f"{s['n']} concurrent long samples, {s['prompt']}-token prompts, max_tokens {s['max_tokens']} (workloads.md: 24,576; local context is 2,048)"
        ),
        "B3": lambda: (
            f"{s['steps']} pipelined SFT steps of {s['batch']} x {s['tokens']} tokens, Python-list tokens"
        ),
        "B3n": lambda: "B3 with numpy-built tokens (ModelInput.from_ints(array))",
        "B4": lambda: (
            f"one forward_backward of {s['batch']} x {s['tokens']} tokens, target_tokens + logprobs + advantages (importance_sampling)"
        ),
        "B5": lambda: f"{s['n']} concurrent compute_logprobs of {s['tokens']}-token sequences",
        "B6": lambda: (
            f"{s['iters']} RL iterations: save_weights_and_get_sampling_client, {s['groups']}x{s['group']} samples, forward_backward of {s['datums']} x {s['tokens']} + optim_step"
        ),
        "B7": lambda: (
            f"{s['n']} trajectories x {s['turns']} sequential turns, prompts {s['prompt']} + {s['grow']}/turn, max_tokens {s['max_tokens']}"
        ),
        "B8": lambda: f"{s['n']} sequential tiny samples (5 tokens, max_tokens 1)",
    }[w]()


# -- inputs shared by every client -------------------------------------------------------------


def prompt(i: int, n: int, prefixes: int = 128) -> list[int]:
    base = (i % prefixes) * 13
    return [(base + k * 7) % 3000 + 4 for k in range(n)]


def sft_arrays(
    batch: int, tokens: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batch):
        seq = rng.integers(4, 4000, size=tokens + 1, dtype=np.int64)
        out.append((seq[:-1], seq[1:], np.ones(tokens, dtype=np.float32)))
    return out


def rl_arrays(batch: int, tokens: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(batch):
        seq = rng.integers(4, 4000, size=tokens + 1, dtype=np.int64)
        out.append((seq[:-1], {
            "target_tokens": seq[1:],
            "logprobs": -rng.random(tokens).astype(np.float32),
            "advantages": rng.standard_normal(tokens).astype(np.float32),
        }))  # fmt: skip
    return out


class Meter:
    """CPU, wall, peak open sockets of this process over a block (sockets sampled in a thread).

    With ``BENCH_PROFILE=FILE`` in the environment the block also runs under cProfile (main
    thread only) and the stats go to FILE: ``--child ours B4 URL SIZES`` then profiles exactly
    the timed section (CPU and wall then include the profiler's overhead).
    """

    def __init__(self, out: dict[str, Any]) -> None:
        self.out = out
        self.stop = threading.Event()
        self.peak = 0
        self.profile_to = os.environ.get("BENCH_PROFILE")
        self.profiler: Any = None
        self.gc_cpu = 0.0  # CPU seconds inside the garbage collector (all generations)
        self.gc_started = 0.0
        self.gc_runs = [0, 0, 0]  # collections per generation

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc_started = time.process_time()
        else:
            self.gc_cpu += time.process_time() - self.gc_started
            self.gc_runs[info["generation"]] += 1

    def _sockets(self) -> None:
        while not self.stop.wait(0.02):
            n = 0
            try:
                for fd in os.listdir("/proc/self/fd"):
                    with contextlib.suppress(OSError):
                        n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                return
            self.peak = max(self.peak, n)

    def __enter__(self) -> None:
        self.thread = threading.Thread(target=self._sockets, daemon=True)
        self.thread.start()
        # setup's young objects (e.g. 256 token lists of 2,048 ints) would otherwise be
        # traversed by whichever gen-1 collection the timed section happens to trigger: 7-8 ms
        # in B4, charged to one client by chance
        gc.collect()
        self.wall = time.perf_counter()
        gc.callbacks.append(self._gc)
        u = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = u.ru_utime + u.ru_stime
        self.sys = u.ru_stime
        if self.profile_to:
            import cProfile

            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()

    def __exit__(self, *exc: object) -> None:
        if self.profiler is not None:
            self.profiler.disable()
            self.profiler.dump_stats(self.profile_to)
        u = resource.getrusage(resource.RUSAGE_SELF)
        self.out["wall"] = time.perf_counter() - self.wall
        self.out["cpu"] = u.ru_utime + u.ru_stime - self.cpu
        self.out["sys_cpu"] = u.ru_stime - self.sys  # kernel: mostly loopback socket sends
        gc.callbacks.remove(self._gc)
        self.out["gc_cpu"] = self.gc_cpu
        self.out["gc_runs"] = self.gc_runs
        self.stop.set()
        self.thread.join()
        self.out["sockets"] = self.peak


# -- the official client -------------------------------------------------------------------------


def run_official(w: str, s: dict[str, int], url: str) -> dict[str, Any]:
    import tinker

    types = tinker.types
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    out: dict[str, Any] = {}
    if w in ("B1", "B2", "B5", "B7", "B8"):
        sampler = service.create_sampling_client(
            base_model=SMALL if w in ("B2", "B5") else TINY
        ).result()
        if w in ("B1", "B2"):
            params = types.SamplingParams(max_tokens=s["max_tokens"])
            prompts = [types.ModelInput.from_ints(prompt(i, s["prompt"])) for i in range(s["n"])]
            with Meter(out):
                futures = [
                    sampler.sample(p, num_samples=1, sampling_params=params) for p in prompts
                ]
                assert all(len(f.result().sequences) == 1 for f in futures)
            out["ops"] = s["n"]
        elif w == "B5":
            prompts = [types.ModelInput.from_ints(prompt(i, s["tokens"])) for i in range(s["n"])]
            with Meter(out):
                futures = [sampler.compute_logprobs(p) for p in prompts]
                assert all(len(f.result()) == s["tokens"] for f in futures)
            out["ops"] = s["n"]
        elif w == "B7":
            import concurrent.futures as cf

            params = types.SamplingParams(max_tokens=s["max_tokens"])

            def trajectory(i: int) -> None:
                for t in range(s["turns"]):
                    p = types.ModelInput.from_ints(prompt(i, s["prompt"] + t * s["grow"]))
                    sampler.sample(p, num_samples=1, sampling_params=params).result()

            with Meter(out), cf.ThreadPoolExecutor(min(s["n"], 256)) as pool:
                list(pool.map(trajectory, range(s["n"])))
            out["ops"] = s["n"] * s["turns"]
        else:
            params = types.SamplingParams(max_tokens=1)
            p = types.ModelInput.from_ints([5, 6, 7, 8, 9])
            sampler.sample(p, num_samples=1, sampling_params=params).result()
            with Meter(out):
                for _ in range(s["n"]):
                    sampler.sample(p, num_samples=1, sampling_params=params).result()
            out["ops"] = s["n"]
    else:
        training = service.create_lora_training_client(base_model=SMALL, rank=8).result()
        if w in ("B3", "B3n", "B4"):
            if w == "B4":
                rows = rl_arrays(s["batch"], s["tokens"])
                data = [types.Datum(model_input=types.ModelInput.from_ints(inp.tolist()),
                                    loss_fn_inputs={k: types.TensorData.from_numpy(v) for k, v in f.items()})
                        for inp, f in rows]  # fmt: skip
                with Meter(out):
                    training.forward_backward(data, "importance_sampling").result()
                out["ops"] = 1
            else:
                data = [types.Datum(model_input=types.ModelInput.from_ints(inp.tolist()),
                                    loss_fn_inputs={"target_tokens": types.TensorData.from_numpy(tgt),
                                                    "weights": types.TensorData.from_numpy(wt)})
                        for inp, tgt, wt in sft_arrays(s["batch"], s["tokens"])]  # fmt: skip
                with Meter(out):
                    prev = None
                    for step in range(s["steps"]):
                        fb = training.forward_backward(data, "cross_entropy")
                        op = training.optim_step(types.AdamParams(learning_rate=1e-4 / (1 + step)))
                        if prev is not None:
                            prev[0].result(), prev[1].result()
                        prev = (fb, op)
                    assert prev is not None
                    prev[0].result(), prev[1].result()
                out["ops"] = 2 * s["steps"]
        else:  # B6
            rows = rl_arrays(s["datums"], s["tokens"])
            data = [types.Datum(model_input=types.ModelInput.from_ints(inp.tolist()),
                                loss_fn_inputs={k: types.TensorData.from_numpy(v) for k, v in f.items()})
                    for inp, f in rows]  # fmt: skip
            params = types.SamplingParams(max_tokens=32)
            with Meter(out):
                for _it in range(s["iters"]):
                    sampler = training.save_weights_and_get_sampling_client()
                    futures = [sampler.sample(types.ModelInput.from_ints(prompt(g, 64)),
                                              num_samples=1, sampling_params=params)
                               for g in range(s["groups"]) for _ in range(s["group"])]  # fmt: skip
                    for f in futures:
                        f.result()
                    fb = training.forward_backward(data, "importance_sampling")
                    op = training.optim_step(types.AdamParams(learning_rate=1e-5))
                    fb.result(), op.result()
            out["ops"] = s["iters"] * (s["groups"] * s["group"] + 3)
    service.close("success").result() if hasattr(service, "close") else None
    return out


# -- tinker_actors ---------------------------------------------------------------------------------


def run_ours(w: str, s: dict[str, int], url: str, floor: bool = False) -> dict[str, Any]:
    import trio

    import tinker_actors as ta
    from tinker_actors.types import (
        AdamParams,
        Datum,
        ModelInput,
        SamplingParams,
        TensorData,
    )

    out: dict[str, Any] = {}

    async def sampling(rt: Any) -> None:
        sampler = await rt.create_sampling_client(base_model=SMALL if w in ("B2", "B5") else TINY)
        if floor:
            await floor_sampling(w, s, url, sampler._sampler_id, out)
            return
        if w in ("B1", "B2", "B5"):
            if w == "B5":
                prompts = [ModelInput.from_ints(prompt(i, s["tokens"])) for i in range(s["n"])]
            else:
                prompts = [ModelInput.from_ints(prompt(i, s["prompt"])) for i in range(s["n"])]
            params = SamplingParams(max_tokens=s.get("max_tokens", 1))
            done: list[Any] = []

            async def one(p: ModelInput) -> None:
                if w == "B5":
                    done.append(await (await sampler.compute_logprobs(p)).result())
                else:
                    done.append(await (await sampler.sample(p, 1, params)).result())

            with Meter(out):
                async with trio.open_nursery() as nursery:
                    for p in prompts:
                        nursery.start_soon(one, p)
            assert len(done) == s["n"]
            out["ops"] = s["n"]
        elif w == "B7":
            params = SamplingParams(max_tokens=s["max_tokens"])

            async def trajectory(i: int) -> None:
                for t in range(s["turns"]):
                    p = ModelInput.from_ints(prompt(i, s["prompt"] + t * s["grow"]))
                    await (await sampler.sample(p, 1, params)).result()

            with Meter(out):
                async with trio.open_nursery() as nursery:
                    for i in range(s["n"]):
                        nursery.start_soon(trajectory, i)
            out["ops"] = s["n"] * s["turns"]
        else:
            params = SamplingParams(max_tokens=1)
            p = ModelInput.from_ints([5, 6, 7, 8, 9])
            await (await sampler.sample(p, 1, params)).result()
            with Meter(out):
                for _ in range(s["n"]):
                    await (await sampler.sample(p, 1, params)).result()
            out["ops"] = s["n"]

    async def training(rt: Any) -> None:
        trainer = await rt.create_lora_training_client(SMALL, rank=8)
        if w == "B6":
            rows = rl_arrays(s["datums"], s["tokens"])
            data = [Datum(model_input=ModelInput.from_ints(inp.tolist()),
                          loss_fn_inputs={k: TensorData.from_numpy(v) for k, v in f.items()})
                    for inp, f in rows]  # fmt: skip
            params = SamplingParams(max_tokens=32)
            with Meter(out):
                for _ in range(s["iters"]):
                    sampler = await trainer.save_weights_and_get_sampling_client()
                    futures = [await sampler.sample(ModelInput.from_ints(prompt(g, 64)), 1, params)
                               for g in range(s["groups"]) for _ in range(s["group"])]  # fmt: skip
                    for f in futures:
                        await f.result()
                    fb = await trainer.forward_backward(data, "importance_sampling")
                    op = await trainer.optim_step(AdamParams(learning_rate=1e-5))
                    await fb.result()
                    await op.result()
            out["ops"] = s["iters"] * (s["groups"] * s["group"] + 3)
            return
        if w == "B4":
            rows4 = rl_arrays(s["batch"], s["tokens"])
            data = [Datum(model_input=ModelInput.from_ints(inp.tolist()),
                          loss_fn_inputs={k: TensorData.from_numpy(v) for k, v in f.items()})
                    for inp, f in rows4]  # fmt: skip
            loss = "importance_sampling"
        else:
            data = [Datum(model_input=ModelInput.from_ints(inp if w == "B3n" else inp.tolist()),
                          loss_fn_inputs={"target_tokens": TensorData.from_numpy(tgt),
                                          "weights": TensorData.from_numpy(wt)})
                    for inp, tgt, wt in sft_arrays(s["batch"], s["tokens"])]  # fmt: skip
            loss = "cross_entropy"
        if floor:
            await floor_training(w, s, url, trainer.model_id, data, loss, out)
            return
        if w == "B4":
            with Meter(out):
                await (await trainer.forward_backward(data, loss)).result()
            out["ops"] = 1
            return
        with Meter(out):
            prev: tuple[Any, Any] | None = None
            for step in range(s["steps"]):
                fb = await trainer.forward_backward(data, loss)
                op = await trainer.optim_step(AdamParams(learning_rate=1e-4 / (1 + step)))
                if prev is not None:
                    await prev[0].result()
                    await prev[1].result()
                prev = (fb, op)
            assert prev is not None
            await prev[0].result()
            await prev[1].result()
        out["ops"] = 2 * s["steps"]

    async def main() -> None:
        async with ta.open(base_url=url, api_key=KEY) as rt:
            if w in ("B1", "B2", "B5", "B7", "B8"):
                await sampling(rt)
            else:
                await training(rt)

    trio.run(main)
    return out


# -- the floor: bare transport, prebuilt bodies ----------------------------------------------------


def _bare() -> tuple[Any, dict[str, str]]:
    from tinker_actors.transport._h11 import TrioH11Transport

    return TrioH11Transport(max_connections=1000), {"X-API-Key": KEY}


async def _exchange(
    transport: Any, url: str, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    request = httpx.Request("POST", url + path, headers=headers, content=body,
                            extensions={"timeout": {"connect": 60, "read": 600, "write": 600, "pool": 600}})  # fmt: skip
    response = await transport.handle_async_request(request)
    await response.aread()
    return response


async def _submit_and_wait(transport: Any, url: str, path: str, body: bytes, ctype: str) -> bytes:
    """One operation as the protocol has it: submit, then long-poll its future to the end."""
    import msgspec

    json_headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    submitted = await _exchange(
        transport, url, path, body, {"X-API-Key": KEY, "Content-Type": ctype}
    )
    assert submitted.status_code == 200, (submitted.status_code, submitted.content[:200])
    request_id = msgspec.json.decode(submitted.content)["request_id"]
    poll = msgspec.json.encode({"request_id": request_id, "allow_metadata_only": False})
    headers = {**json_headers, "Accept": "application/x-protobuf"}
    while True:
        answer = await _exchange(transport, url, "/api/v1/retrieve_future", poll, headers)
        if answer.status_code == 408 or b'"try_again"' in answer.content[:64]:
            continue
        assert answer.status_code == 200, (answer.status_code, answer.content[:200])
        return answer.content


async def floor_sampling(
    w: str, s: dict[str, int], url: str, sampler_id: str, out: dict[str, Any]
) -> None:
    import msgspec
    import trio

    from tinker_actors.types import ModelInput, SampleRequest, SamplingParams

    transport, _ = _bare()
    seq = iter(range(1, 1 << 30))

    def body(p: list[int], max_tokens: int, logprobs: bool = False) -> bytes:
        return msgspec.json.encode(SampleRequest(
            num_samples=1, prompt=ModelInput.from_ints(p), sampling_params=SamplingParams(max_tokens=max_tokens),
            sampling_session_id=sampler_id, seq_id=next(seq), prompt_logprobs=logprobs,
        ))  # fmt: skip

    async def one(b: bytes) -> None:
        await _submit_and_wait(transport, url, "/api/v1/asample", b, "application/json")

    if w in ("B1", "B2", "B5"):
        if w == "B5":
            bodies = [body(prompt(i, s["tokens"]), 1, True) for i in range(s["n"])]
        else:
            bodies = [body(prompt(i, s["prompt"]), s["max_tokens"]) for i in range(s["n"])]
        with Meter(out):
            async with trio.open_nursery() as nursery:
                for b in bodies:
                    nursery.start_soon(one, b)
        out["ops"] = s["n"]
    elif w == "B7":
        turns = [[body(prompt(i, s["prompt"] + t * s["grow"]), s["max_tokens"]) for t in range(s["turns"])]
                 for i in range(s["n"])]  # fmt: skip

        async def trajectory(bs: list[bytes]) -> None:
            for b in bs:
                await one(b)

        with Meter(out):
            async with trio.open_nursery() as nursery:
                for bs in turns:
                    nursery.start_soon(trajectory, bs)
        out["ops"] = s["n"] * s["turns"]
    else:
        bodies = [body([5, 6, 7, 8, 9], 1) for _ in range(s["n"])]
        with Meter(out):
            for b in bodies:
                await one(b)
        out["ops"] = s["n"]
    await transport.aclose()


async def floor_training(
    w: str,
    s: dict[str, int],
    url: str,
    model_id: str,
    data: list[Any],
    loss: str,
    out: dict[str, Any],
) -> None:
    import msgspec
    import trio

    from tinker_actors.transport.proto import encode_forward_backward_request
    from tinker_actors.types import (
        AdamParams,
        ForwardBackwardInput,
        ForwardBackwardRequest,
        OptimStepRequest,
    )

    transport, _ = _bare()
    proto = "application/x-protobuf"

    def fb_body(seq_id: int) -> bytes:
        return encode_forward_backward_request(ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(data=data, loss_fn=loss),  # type: ignore[arg-type]
            model_id=model_id, seq_id=seq_id), compress=False)  # fmt: skip

    if w == "B4":
        # one request (the server's chunk limits may make the SDK send several: see req/op)
        b = fb_body(1)
        with Meter(out):
            await _submit_and_wait(transport, url, "/api/v1/forward_backward", b, proto)
        out["ops"] = 1
        await transport.aclose()
        return
    steps = []
    for step in range(s["steps"]):
        opt = msgspec.json.encode(OptimStepRequest.for_params(
            model_id, AdamParams(learning_rate=1e-4 / (1 + step)), seq_id=2 * step + 2))  # fmt: skip
        steps.append((fb_body(2 * step + 1), opt))
    with Meter(out):
        # the same pipelining as the SDK loops: submit step k+1's pair before waiting on step k
        async with trio.open_nursery() as nursery:
            prev: trio.Event | None = None
            for fb, opt in steps:
                fb_done, op_done = trio.Event(), trio.Event()
                send_fb = await _submit_only(transport, url, "/api/v1/forward_backward", fb, proto)
                send_op = await _submit_only(
                    transport, url, "/api/v1/optim_step", opt, "application/json"
                )
                nursery.start_soon(_wait, transport, url, send_fb, fb_done)
                nursery.start_soon(_wait, transport, url, send_op, op_done)
                if prev is not None:
                    await prev.wait()
                prev = op_done
    out["ops"] = 2 * s["steps"]
    await transport.aclose()


async def _submit_only(transport: Any, url: str, path: str, body: bytes, ctype: str) -> str:
    import msgspec

    submitted = await _exchange(
        transport, url, path, body, {"X-API-Key": KEY, "Content-Type": ctype}
    )
    assert submitted.status_code == 200, (submitted.status_code, submitted.content[:200])
    return str(msgspec.json.decode(submitted.content)["request_id"])


async def _wait(transport: Any, url: str, request_id: str, done: Any) -> None:
    import msgspec

    poll = msgspec.json.encode({"request_id": request_id, "allow_metadata_only": False})
    headers = {
        "X-API-Key": KEY,
        "Content-Type": "application/json",
        "Accept": "application/x-protobuf",
    }
    while True:
        answer = await _exchange(transport, url, "/api/v1/retrieve_future", poll, headers)
        if answer.status_code == 408 or b'"try_again"' in answer.content[:64]:
            continue
        assert answer.status_code == 200, (answer.status_code, answer.content[:200])
        done.set()
        return


# -- parent ---------------------------------------------------------------------------------------


def child(client: str, w: str, url: str, sizes: dict[str, int]) -> int:
    import warnings

    warnings.simplefilter("ignore")
    if client == "official":
        out = run_official(w, sizes, url)
    else:
        out = run_ours(w, sizes, url, floor=client == "floor")
    u = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_mb"] = u.ru_maxrss / 1024
    print(json.dumps(out))
    return 0


def main() -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sdk import ServerCPU, http_counts

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=WORKLOADS, action="append")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="workloads.md's sizes (long)")
    parser.add_argument("--clients", default="ours,official,floor")
    parser.add_argument("--json", help="write every run and the medians here")
    parser.add_argument("--child", nargs=4, metavar=("CLIENT", "WORKLOAD", "URL", "SIZES"))
    args = parser.parse_args()
    if args.child:
        c, w, url, sizes = args.child
        return child(c, w, url, json.loads(sizes))
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cmd = [sys.executable, "-m", "tinker_actors.cli", "serve", "--port", "0"]
    server = subprocess.Popen((["taskset", "-c", "0"] if pin else []) + server_cmd,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    load = os.getloadavg()[0]
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load,
                              "full": args.full, "pinned": pin, "workloads": {}}  # fmt: skip
    rows: list[str] = []
    try:
        assert server.stdout is not None
        url = server.stdout.readline().rsplit(" at ", 1)[1].strip()
        cpu_of_server = ServerCPU(server.pid)
        print(f"# {report['date']}  load {load:.2f}  server {url} (null backend), pinned {pin}")
        header = ("| workload | client | CPU s | CPU ms/op | wall s | req/op | peak sockets | "
                  "peak RSS MB | server CPU s | ours/official CPU | ours/floor CPU |")  # fmt: skip
        print(header)
        print("|" + "---|" * 11)
        clients = args.clients.split(",")
        for w in args.only or WORKLOADS:
            sizes = SIZES[w][1 if args.full else 0]
            if w == "B6" and "floor" in clients:
                order = [c for c in clients if c != "floor"]
            else:
                order = list(clients)
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in order}
            for r in range(args.repeat):
                for c in order if r % 2 == 0 else order[::-1]:
                    cmd = [sys.executable, __file__, "--child", c, w, url, json.dumps(sizes)]
                    if pin:
                        cmd = ["taskset", "-c", "1", *cmd]
                    before, sc = http_counts(url), cpu_of_server()
                    done = subprocess.run(
                        cmd, capture_output=True, text=True, timeout=1800, check=False
                    )
                    if done.returncode != 0:
                        raise SystemExit(f"{c} {w} failed:\n{done.stderr[-3000:]}")
                    run = json.loads(done.stdout.strip().splitlines()[-1])
                    run["requests"] = http_counts(url) - before
                    sc2 = cpu_of_server()
                    if sc is not None and sc2 is not None:
                        run["server_cpu"] = sc2 - sc
                    runs[c].append(run)
            med = {c: {k: float(np.median([r[k] for r in runs[c] if k in r]))
                       for k in ("cpu", "wall", "requests", "ops", "sockets", "server_cpu")
                       if any(k in r for r in runs[c])} | {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs[c])}
                   for c in order}  # fmt: skip
            report["workloads"][w] = {
                "sizes": sizes,
                "what": describe(w, sizes),
                "runs": runs,
                "median": med,
            }
            for c in order:
                m = med[c]
                vs_off = (
                    f"{med['ours']['cpu'] / med['official']['cpu']:.2f}x"
                    if c == "ours" and "official" in med
                    else ""
                )
                vs_floor = (
                    f"{med['ours']['cpu'] / med['floor']['cpu']:.2f}x"
                    if c == "ours" and "floor" in med
                    else ""
                )
                row = (f"| {w} | {c} | {m['cpu']:.3f} | {m['cpu'] / m['ops'] * 1e3:.3f} | {m['wall']:.3f} | "
                       f"{m['requests'] / m['ops']:.2f} | {m['sockets']:.0f} | {m['peak_rss_mb']:.0f} | "
                       f"{m.get('server_cpu', float('nan')):.2f} | {vs_off} | {vs_floor} |")  # fmt: skip
                rows.append(row)
                print(row, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report["load_after"] = os.getloadavg()[0]
    print(f"# load after {report['load_after']:.2f}; medians of {args.repeat}; sizes:")
    for w in args.only or WORKLOADS:
        print(f"#   {w}: {report['workloads'][w]['what']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
