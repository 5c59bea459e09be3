"""tinker_actors beside the official tinker 0.38 client, against the local null server.

The server runs as ``tinker-actors serve --port 0`` in its own process (pinned to CPU 0 when
``taskset`` exists). Each (client, workload) pair runs in a fresh child process pinned to CPU 1,
so CPU seconds (``getrusage(RUSAGE_SELF)``: every thread of the child) and peak RSS belong to
that client alone. Setup (session, model, sampling session) is not timed; the timed section is
the workload. HTTP requests per completed future come from the server's ``http:*`` counters
(``GET /_local/counters``) read before and after each child, which therefore include the
setup and shutdown requests of that child; they are divided by the workload's futures.

Workloads (protocol.md §14 / workloads.md §5):

* B1: ``--b1`` concurrent ``sample`` calls (num_samples=1, 12-token prompts, max_tokens 8).
* B3: SFT pipelined, ``--b3-steps`` steps of ``--b3-batch`` datums x ``--b3-tokens`` tokens;
  forward_backward + optim_step submitted back to back, one step ahead of the results.
* B8: ``--b8`` sequential tiny samples (5 tokens, max_tokens 1): mean and p99 latency.

The official client is driven in its documented 0.38 style (submission returns a future at
once, ``.result()`` waits; its own event loop runs in a background thread); ``compat`` runs the
very same code on ``tinker_actors.compat`` (the 0.38 surface over our runtime thread); ``ours``
is tinker_actors in trio (``await client.call(...)`` then ``await future.result()``). Ratios:
each client against the official one, and compat against ours.

``--transport auto`` (default: the SDK's default, h11) / ``httpx`` / ``h11`` picks our HTTP backend; repeat
it (``--transport httpx --transport h11``) to run ours once per transport in the same run, each
compared with the same official run. ``h11`` is the experimental
``tinker_actors.transport._h11.TrioH11Transport``.

Each (client, workload) runs ``--repeat`` times (default 3), the clients alternating order; wall,
CPU and request counts are the medians (every run's wall is printed too), latencies pool every
run. ``server cpu`` is the CPU the server process used during the child (setup included, from
``/proc``): when it approaches the wall time, the server, not the client, is the bottleneck.

Usage: ``python bench/sdk.py [--b1 2048] [--b3-steps 32] [--b8 300] [--repeat 3] [--transport h11]``.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np

KEY = "tml-bench-sdk"
BASE_MODEL = "local/tiny"
SFT_MODEL = "local/small"  # a 2,048-token SFT datum, as when its context was 2,048
WORKLOADS = ("B1", "B3", "B8")


# -- inputs shared by both clients ---------------------------------------------------------------


def sft_arrays(batch: int, tokens: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return (input tokens, target tokens, weights) per datum; the same for both clients."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(batch):
        seq = rng.integers(4, 4000, size=tokens + 1, dtype=np.int64)
        out.append((seq[:-1], seq[1:], np.ones(tokens, dtype=np.float32)))
    return out


def prompt_tokens(i: int, n: int = 12) -> list[int]:
    return [(i * 31 + k * 7) % 3000 + 4 for k in range(n)]


# -- child: the official client ------------------------------------------------------------------


def run_official(
    workload: str, url: str, args: argparse.Namespace, sdk: str = "tinker"
) -> dict[str, Any]:
    """Drive the 0.38 surface: the official client, or ``tinker_actors.compat`` (``sdk``)."""
    import importlib

    tinker: Any = importlib.import_module(sdk)
    types = tinker.types

    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    out: dict[str, Any] = {}
    if workload in ("B1", "B8"):
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
        if workload == "B1":
            params = types.SamplingParams(max_tokens=8)
            prompts = [types.ModelInput.from_ints(prompt_tokens(i)) for i in range(args.b1)]
            with Timed(out):
                futures = [
                    sampler.sample(p, num_samples=1, sampling_params=params) for p in prompts
                ]
                results = [f.result() for f in futures]
            assert all(len(r.sequences) == 1 for r in results)
            out["futures"] = args.b1
        else:
            params = types.SamplingParams(max_tokens=1)
            prompt = types.ModelInput.from_ints([5, 6, 7, 8, 9])
            sampler.sample(prompt, num_samples=1, sampling_params=params).result()  # warm
            latencies = []
            with Timed(out):
                for _ in range(args.b8):
                    start = time.perf_counter()
                    sampler.sample(prompt, num_samples=1, sampling_params=params).result()
                    latencies.append(time.perf_counter() - start)
            out["latencies"] = latencies
            out["futures"] = args.b8 + 1
    else:
        training = service.create_lora_training_client(base_model=SFT_MODEL, rank=8).result()
        data = [
            types.Datum(
                model_input=types.ModelInput.from_ints(inp.tolist()),
                loss_fn_inputs={
                    "target_tokens": types.TensorData.from_numpy(tgt),
                    "weights": types.TensorData.from_numpy(w),
                },
            )
            for inp, tgt, w in sft_arrays(args.b3_batch, args.b3_tokens)
        ]
        with Timed(out):
            previous: tuple[Any, Any] | None = None
            for step in range(args.b3_steps):
                fb = training.forward_backward(data, "cross_entropy")
                op = training.optim_step(types.AdamParams(learning_rate=1e-4 / (1 + step)))
                if previous is not None:
                    previous[0].result()
                    previous[1].result()
                previous = (fb, op)
            assert previous is not None
            previous[0].result()
            previous[1].result()
        out["futures"] = 2 * args.b3_steps + 1  # + create_model
    service.close("success").result()
    return out


# -- child: tinker_actors ------------------------------------------------------------------------


def run_ours(workload: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    import trio

    import tinker_actors as ta
    from tinker_actors.types import AdamParams, Datum, ModelInput, SamplingParams, TensorData

    out: dict[str, Any] = {}
    # the SDK's own configuration builds the transport, as a user's program would
    backend = args.transport[0] if args.transport else "auto"

    async def main() -> None:
        async with ta.open(base_url=url, api_key=KEY, http_backend=backend) as rt:
            if workload in ("B1", "B8"):
                sampler = await rt.create_sampling_client(base_model=BASE_MODEL)
                if workload == "B1":
                    params = SamplingParams(max_tokens=8)
                    prompts = [ModelInput.from_ints(prompt_tokens(i)) for i in range(args.b1)]
                    results: list[Any] = []

                    async def one(prompt: ModelInput) -> None:
                        results.append(await (await sampler.sample(prompt, 1, params)).result())

                    with Timed(out):
                        async with trio.open_nursery() as nursery:
                            for prompt in prompts:
                                nursery.start_soon(one, prompt)
                    assert len(results) == args.b1
                    assert all(len(r.sequences) == 1 for r in results)
                    out["futures"] = args.b1
                else:
                    params = SamplingParams(max_tokens=1)
                    prompt = ModelInput.from_ints([5, 6, 7, 8, 9])
                    await (await sampler.sample(prompt, 1, params)).result()  # warm
                    latencies = []
                    with Timed(out):
                        for _ in range(args.b8):
                            start = time.perf_counter()
                            await (await sampler.sample(prompt, 1, params)).result()
                            latencies.append(time.perf_counter() - start)
                    out["latencies"] = latencies
                    out["futures"] = args.b8 + 1
            else:
                training = await rt.create_lora_training_client(SFT_MODEL, rank=8)
                data = [
                    Datum(
                        model_input=ModelInput.from_ints(inp.tolist()),
                        loss_fn_inputs={
                            "target_tokens": TensorData.from_numpy(tgt),
                            "weights": TensorData.from_numpy(w),
                        },
                    )
                    for inp, tgt, w in sft_arrays(args.b3_batch, args.b3_tokens)
                ]
                with Timed(out):
                    previous: tuple[Any, Any] | None = None
                    for step in range(args.b3_steps):
                        fb = await training.forward_backward(data, "cross_entropy")
                        op = await training.optim_step(AdamParams(learning_rate=1e-4 / (1 + step)))
                        if previous is not None:
                            await previous[0].result()
                            await previous[1].result()
                        previous = (fb, op)
                    assert previous is not None
                    await previous[0].result()
                    await previous[1].result()
                out["futures"] = 2 * args.b3_steps + 1

    trio.run(main)
    return out


class Timed:
    """Record wall time and this process's CPU seconds (all threads) of a block into ``out``."""

    def __init__(self, out: dict[str, Any]) -> None:
        self.out = out

    def __enter__(self) -> None:
        self.wall = time.perf_counter()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = usage.ru_utime + usage.ru_stime

    def __exit__(self, *exc: object) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.out["wall"] = time.perf_counter() - self.wall
        self.out["cpu"] = usage.ru_utime + usage.ru_stime - self.cpu


def child(client: str, workload: str, url: str, args: argparse.Namespace) -> int:
    import warnings

    warnings.simplefilter("ignore")
    if client.startswith("ours/"):
        client, args.transport = "ours", [client.split("/", 1)[1]]
    if client == "official":
        out = run_official(workload, url, args)
    elif client == "compat":
        out = run_official(workload, url, args, sdk="tinker_actors.compat")
    else:
        out = run_ours(workload, url, args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    out["process_cpu"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(out))
    return 0


# -- parent --------------------------------------------------------------------------------------


def http_counts(url: str) -> int:
    totals = httpx.get(f"{url}/_local/counters", headers={"x-api-key": KEY}).json()["totals"]
    return sum(v for k, v in totals.items() if k.startswith("http:"))


class ServerCPU:
    """CPU seconds the server process has used so far, from ``/proc`` (Linux only)."""

    def __init__(self, pid: int) -> None:
        self.path = f"/proc/{pid}/stat"
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __call__(self) -> float | None:
        try:
            with open(self.path) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime


def run_child(
    client: str, workload: str, url: str, argv: list[str], pin: bool, server_cpu: ServerCPU
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", client, workload, url, *argv]
    if pin:
        cmd = ["taskset", "-c", "1", *cmd]
    before, cpu_before = http_counts(url), server_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{client} {workload} failed:\n{done.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["requests"] = http_counts(url) - before
    cpu_after = server_cpu()
    if cpu_before is not None and cpu_after is not None:
        report["server_cpu"] = cpu_after - cpu_before  # the whole child, setup included
    return report


def median_report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold repeated runs of one (client, workload): medians, the worst peak RSS, all latencies."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key in ("wall", "cpu", "server_cpu", "requests", "futures"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = float(np.median(values))
    out["walls"] = [r["wall"] for r in runs]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    if "latencies" in runs[0]:
        out["latencies"] = [x for r in runs for x in r["latencies"]]
    return out


def summary(workload: str, results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for client in results:
        r = results[client]
        line = (
            f"{workload} {client:10s} wall {r['wall']:7.3f} s  cpu {r['cpu']:7.3f} s  "
            f"req/future {r['requests'] / r['futures']:5.2f}  peak RSS {r['peak_rss_mb']:6.1f} MB"
        )
        if "server_cpu" in r:
            line += f"  server cpu {r['server_cpu']:6.3f} s"
        if "latencies" in r:
            lat = np.array(r["latencies"]) * 1000
            line += f"  mean {lat.mean():6.3f} ms  p99 {np.percentile(lat, 99):6.3f} ms"
        if r["runs"] > 1:
            line += "  (median of " + " / ".join(f"{w:.3f}" for w in r["walls"]) + " s)"
        lines.append(line)
    o = results["official"]
    for client in results:
        if client != "official":
            lines.append(ratio_line(workload, client, o, results[client]))
    natives = [c for c in results if c.startswith("ours/")]
    if "compat" in results and natives:
        native = natives[0]
        lines.append(ratio_line(workload, "compat", results[native], results["compat"], native))
    return lines


def ratio_line(
    workload: str, client: str, o: dict[str, Any], m: dict[str, Any], peer: str = "official"
) -> str:
    ratio = (
        f"{workload} {client}/{peer}: wall {m['wall'] / o['wall']:.2f}x  cpu {m['cpu'] / o['cpu']:.2f}x"
        f"  peak RSS {m['peak_rss_mb'] / o['peak_rss_mb']:.2f}x"
    )
    if "latencies" in m:
        lo, lm = np.array(o["latencies"]), np.array(m["latencies"])
        ratio += (
            f"  mean latency {lm.mean() / lo.mean():.2f}x"
            f"  p99 {np.percentile(lm, 99) / np.percentile(lo, 99):.2f}x"
        )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--b1", type=int, default=2048)
    parser.add_argument("--b3-steps", type=int, default=32)
    parser.add_argument("--b3-batch", type=int, default=128)
    parser.add_argument("--b3-tokens", type=int, default=2048)
    parser.add_argument("--b8", type=int, default=300)
    parser.add_argument("--only", choices=WORKLOADS, action="append")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per (client, workload); medians are reported"
    )
    parser.add_argument("--transport", choices=("auto", "httpx", "h11"), action="append")
    parser.add_argument(
        "--no-compat", action="store_true", help="leave out tinker_actors.compat (the 0.38 surface)"
    )
    parser.add_argument("--child", nargs=3, metavar=("CLIENT", "WORKLOAD", "URL"))
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args)
    sizes = [
        f"--b1={args.b1}",
        f"--b3-steps={args.b3_steps}",
        f"--b3-batch={args.b3_batch}",
        f"--b3-tokens={args.b3_tokens}",
        f"--b8={args.b8}",
    ]
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cmd = [sys.executable, "-m", "tinker_actors.cli", "serve", "--port", "0"]
    if pin:
        server_cmd = ["taskset", "-c", "0", *server_cmd]
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().rsplit(" at ", 1)[1].strip()
        print(f"server {url} (null backend; server on CPU 0, clients on CPU 1: {pin})")
        print(" ".join(sizes))
        server_cpu = ServerCPU(server.pid)
        for workload in args.only or WORKLOADS:
            clients = ["official"] + [f"ours/{t}" for t in args.transport or ["auto"]]
            if not args.no_compat:
                clients.insert(1, "compat")
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
            for r in range(args.repeat):
                # alternate the order so drift in the machine's load favours neither client
                for c in clients if r % 2 == 0 else clients[::-1]:
                    runs[c].append(run_child(c, workload, url, sizes, pin, server_cpu))
            results = {c: median_report(runs[c]) for c in clients}
            for line in summary(workload, results):
                print(line, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
