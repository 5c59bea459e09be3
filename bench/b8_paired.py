"""B8 (sequential tiny samples) as paired blocks in one process: ours, the floor and floor-h.

Run: ``python bench/b8_paired.py [--rounds 60] [--block 20] [--json out.json]``.

``bench/workloads.py`` measures each client in its own process, one after the other; on a shared
machine identical runs of B8 differ by up to 45 %, so the ratio of two such runs says little
about a 10 % line. Here one process, pinned to CPU 1 with ``tinker-actors serve`` on CPU 0,
alternates short blocks of calls: each round runs ``--block`` calls of every client, in a
fresh random order, so drifts in the machine's speed fall on all of them alike. The clients:

* **ours**: ``await (await sampler.sample(prompt, 1, params)).result()``, the SDK's whole path;
* **floor**: the same two requests (asample, then the long poll of its future) sent by the
  bare transport with prebuilt bodies and the 4 or 5 headers a request needs, nothing decoded;
* **floor-h**: the floor sending the SDK's ~20 headers and a fresh idempotency key;
* **inline** (a diagnostic, with ``--inline``): the SDK's own attempt (``SamplingClient._run``:
  checks, limiter, submit, long poll, decode, retries) awaited in the caller's task, without
  the future. Since the poller lets such a waiter run the work itself (e6e6732) ours costs
  no task and no hand-over turns either; before, that was ~100 µs a call (ours/inline 1.11x).

Prints per-call wall and CPU (median of the rounds' means), the ratio of the totals with a
95 % bootstrap interval over rounds, and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _workloads_floor as floor_mod
from _workloads_inputs import KEY, TINY

CLIENTS = ("ours", "floor", "floor-h")


async def measure(
    url: str, rounds: int, block: int, seed: int, clients: tuple[str, ...]
) -> dict[str, list[list[float]]]:
    import msgspec

    import tinker_actors as ta
    from tinker_actors.actors import FutureState
    from tinker_actors.types import ModelInput, SampleRequest, SamplingParams

    rng = random.Random(seed)
    # per client, per round: [wall s, cpu s] for `block` calls
    out: dict[str, list[list[float]]] = {c: [] for c in clients}
    floor_mod.send_sdk_headers()
    sdk_headers = floor_mod._SDK_HEADERS
    async with ta.open(base_url=url, api_key=KEY) as rt:
        ours = await rt.create_sampling_client(base_model=TINY)
        # the floors' own sampling session, so their seq ids never meet ours
        bare = await rt.create_sampling_client(base_model=TINY)
        transport, _ = floor_mod._bare()
        seq = iter(range(1, 1 << 30))
        p = ModelInput.from_ints([5, 6, 7, 8, 9])
        params = SamplingParams(max_tokens=1)

        def body() -> bytes:
            return msgspec.json.encode(SampleRequest(
                num_samples=1, prompt=p, sampling_params=params,
                sampling_session_id=bare._sampler_id, seq_id=next(seq), prompt_logprobs=False))  # fmt: skip

        async def run(client: str, bodies: list[bytes]) -> None:
            if client == "ours":
                for _ in range(block):
                    await (await ours.sample(p, 1, params)).result()
                return
            if client == "inline":
                for _ in range(block):
                    prepared = ours.prepare_sample(p, 1, params)
                    seq_id = ours._take_seq()
                    await ours._run(prepared.request, seq_id, FutureState("Sample"), 64,
                                    prepared.method, prepared.transform)  # fmt: skip
                return
            floor_mod._SDK_HEADERS = sdk_headers if client == "floor-h" else None
            for b in bodies:
                await floor_mod._submit_and_wait(
                    transport, url, "/api/v1/asample", b, "application/json"
                )

        for r in range(-2, rounds):  # two rounds of warm-up, not recorded
            order = list(clients)
            rng.shuffle(order)
            for client in order:
                bodies = [body() for _ in range(block)] if client != "ours" else []
                c0, t0 = time.process_time(), time.perf_counter()
                await run(client, bodies)
                t1, c1 = time.perf_counter(), time.process_time()
                if r >= 0:
                    out[client].append([t1 - t0, c1 - c0])
        await transport.aclose()
    return out


def summarise(runs: dict[str, list[list[float]]], block: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    arr = {c: np.array(v) for c, v in runs.items()}  # rounds x (wall, cpu)
    n = len(arr["ours"])
    report: dict[str, Any] = {"per_call_us": {}, "ratios": {}}
    for c, a in arr.items():
        report["per_call_us"][c] = {
            "wall": float(np.median(a[:, 0]) / block * 1e6),
            "cpu": float(np.median(a[:, 1]) / block * 1e6),
        }
    boot = rng.integers(0, n, size=(2000, n))
    pairs = [("ours", "floor"), ("ours", "floor-h")]
    if "inline" in arr:
        pairs += [("inline", "floor-h"), ("ours", "inline")]
    for mine, peer in pairs:
        for k, name in ((0, "wall"), (1, "cpu")):
            o, f = arr[mine][:, k], arr[peer][:, k]
            totals = o[boot].sum(axis=1) / f[boot].sum(axis=1)
            report["ratios"][f"{mine}/{peer} {name}"] = {
                "of_totals": float(o.sum() / f.sum()),
                "ci95": [float(x) for x in np.percentile(totals, [2.5, 97.5])],
                "median_of_rounds": float(np.median(o / f)),
            }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rounds and the summary here")
    parser.add_argument("--url", help="use this running server instead of starting one")
    parser.add_argument("--inline", action="store_true", help="add the diagnostic inline row")
    args = parser.parse_args()
    import trio

    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server = None
    url = args.url
    if url is None:
        cmd = [sys.executable, "-m", "tinker_actors.cli", "serve", "--port", "0"]
        server = subprocess.Popen((["taskset", "-c", "0"] if pin else []) + cmd,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert server.stdout is not None
        url = server.stdout.readline().rsplit(" at ", 1)[1].strip()
    if pin:
        os.sched_setaffinity(0, {1})
    load = os.getloadavg()[0]
    try:
        clients = (*CLIENTS, "inline") if args.inline else CLIENTS
        runs = trio.run(measure, url, args.rounds, args.block, args.seed, clients)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    report = summarise(runs, args.block, args.seed)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  load {load:.2f} -> {os.getloadavg()[0]:.2f}  "
          f"{args.rounds} rounds x {args.block} calls per client, pinned {pin}")  # fmt: skip
    for c, v in report["per_call_us"].items():
        print(f"{c:8s} wall {v['wall']:7.1f} us/call   cpu {v['cpu']:7.1f} us/call")
    for k, v in report["ratios"].items():
        lo, hi = v["ci95"]
        print(f"{k:20s} {v['of_totals']:.3f}x  (95% CI {lo:.3f}-{hi:.3f}; "
              f"median of rounds {v['median_of_rounds']:.3f}x)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": runs, "summary": report, "block": args.block}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
