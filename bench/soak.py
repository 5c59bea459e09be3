"""Soak: the local server under a long run of SDK traffic at 5 % faults. Not a test.

The server runs in its own process (this script with ``--serve``: the null backend, a fault
plan, a short ``result_ttl`` so that forgetting old results shows within the run) behind its
TCP ``FaultProxy``. This process drives it with the SDK (``tinker_actors.open``): one training
client pipelining forward_backward + optim_step, and ``--samplers`` concurrent sample loops.

Faults (``--fault-rate`` f, default 0.05 of all HTTP requests): 0.6 f status faults (429, 500,
502, 503, 408 in equal parts, ``Retry-After: 0.05``), 0.2 f connections reset before the server
sees the request, 0.2 f responses lost *after* the server applied the request
(``drop_response``: the fault that tests idempotency).

Reported:

* lost and duplicate operations, which must both be 0: a training operation is lost when the
  client never got its result or the server never applied it, duplicated when the server
  applied more than the client asked for (the per-model ``applied_seq_ids`` must be exactly
  0..n-1); a sample likewise, from ``applied:Sample``;
* client and server RSS and open file descriptors, every ``--sample-every`` seconds;
* p50 / p99 latency (submit to result) of samples and training steps per ``--window`` seconds,
  and the samples' overall p50 / p99 beside what ``runtime.latency()`` reports for them (and
  its requests by route);
* tracebacks in the server's log (must be 0).

Usage: ``python bench/soak.py [--requests 100000] [--samplers 16] [--result-ttl 60]``
(``--requests`` counts HTTP requests reaching the proxy, polls and retries included).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import trio
from _serve_child import serve_until_terminated

KEY = "tml-soak"
_KINDS = ("sample", "train")


def _serve(args: argparse.Namespace) -> None:
    """The server process: print the URL, serve until SIGTERM."""
    from tinker_actors.local import FaultPlan

    f = args.fault_rate
    status = {str(code): 1 for code in (429, 500, 502, 503, 408)}
    plan = FaultPlan.from_dict(
        {
            "seed": args.seed,
            "rules": [
                {"endpoint": "*", "choices": status, "probability": 0.6 * f, "retry_after": 0.05}
            ],
            "connection": {"reset": 0.2 * f, "drop_response": 0.2 * f},
        }
    )

    serve_until_terminated(faults=plan, result_ttl=args.result_ttl)


def _proc(pid: int) -> tuple[float, int]:
    """RSS in MB and the number of open file descriptors of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Run:
    """What the client did and saw."""

    def __init__(self) -> None:
        self.submitted: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        # (finished at, kind, seconds), kept in arrays: the client's RSS is the SDK's, not ours
        self.finished_at = array("d")
        self.kinds = bytearray()  # 0 sample, 1 train
        self.seconds = array("d")
        self.samples: list[dict[str, Any]] = []
        self.stop = False

    def done(self, kind: str, started: float) -> None:
        now = time.monotonic()
        self.completed[kind] += 1
        self.finished_at.append(now)
        self.kinds.append(_KINDS.index(kind))
        self.seconds.append(now - started)


async def _trainer(rt: Any, run: Run) -> str:
    from tinker_actors.types import AdamParams, Datum, ModelInput, TensorData

    tc = await rt.create_lora_training_client("local/tiny", rank=4, seed=1)
    step = 0
    pending: list[tuple[str, float, Any]] = []
    while not run.stop or pending:
        if not run.stop:
            tokens = [(step * 7 + 3 * i) % 2000 + 4 for i in range(17)]
            datum = Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": TensorData(data=tokens[1:], dtype="int64")},
            )
            started = time.monotonic()
            pending.append(("train", started, await tc.forward_backward([datum], "cross_entropy")))
            pending.append(("train", started, await tc.optim_step(AdamParams(learning_rate=1e-4))))
            run.submitted["train"] += 2
            step += 1
        # one step ahead: wait for the older step's two results once the next is queued
        while len(pending) > (0 if run.stop else 2):
            kind, started, future = pending.pop(0)
            try:
                await future.result()
            except Exception as exc:
                run.errors[f"train:{type(exc).__name__}"] += 1
            else:
                run.done(kind, started)
    return str(tc.model_id)


async def _sampler(sc: Any, run: Run) -> None:
    from tinker_actors.types import ModelInput, SamplingParams

    prompt = ModelInput.from_ints([5, 6, 7, 8])
    while not run.stop:
        started = time.monotonic()
        run.submitted["sample"] += 1
        try:
            future = await sc.sample(prompt, 1, SamplingParams(max_tokens=4))
            await future.result()
        except Exception as exc:
            run.errors[f"sample:{type(exc).__name__}"] += 1
        else:
            run.done("sample", started)


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    """GET a debug route through the proxy, retrying its connection faults (they hit us too)."""
    while True:
        try:
            return (await client.get(path)).json()
        except httpx.TransportError:
            await trio.sleep(0.05)


async def _monitor(url: str, server_pid: int, run: Run, args: argparse.Namespace) -> None:
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as client:
        while True:
            counters = await _get(client, "/_local/counters")
            requests = counters["connection_faults"]["requests"]
            server_rss, server_fds = _proc(server_pid)
            client_rss, client_fds = _proc(os.getpid())
            point = {
                "minute": round((time.monotonic() - start) / 60, 2),
                "requests": requests,
                "server_rss_mb": round(server_rss, 1),
                "server_fds": server_fds,
                "client_rss_mb": round(client_rss, 1),
                "client_fds": client_fds,
                "futures_pruned": counters["totals"].get("futures_pruned", 0),
            }
            run.samples.append(point)
            print(json.dumps(point), flush=True)
            if requests >= args.requests:
                run.stop = True
                return
            with trio.move_on_after(args.sample_every):
                while requests < args.requests:
                    await trio.sleep(1)
                    data = await _get(client, "/_local/faults")
                    requests = data["connection"]["requests"]


def _windows(run: Run, width: float) -> list[dict[str, Any]]:
    """p50 / p99 latency per kind in consecutive windows of ``width`` seconds."""
    at = np.frombuffer(run.finished_at, dtype=np.float64)
    if not at.size:
        return []
    kinds = np.frombuffer(bytes(run.kinds), dtype=np.uint8)
    seconds = np.frombuffer(run.seconds, dtype=np.float64)
    window = ((at - at.min()) // width).astype(np.int64)
    rows = []
    for index in range(int(window.max()) + 1):
        row: dict[str, Any] = {"window": index}
        for code, kind in enumerate(_KINDS):
            values = seconds[(window == index) & (kinds == code)]
            if values.size:
                row[f"{kind}_n"] = int(values.size)
                row[f"{kind}_p50_ms"] = round(float(np.percentile(values, 50)) * 1000, 1)
                row[f"{kind}_p99_ms"] = round(float(np.percentile(values, 99)) * 1000, 1)
        rows.append(row)
    return rows


async def _drive(url: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    import tinker_actors as ta

    run = Run()
    started = time.monotonic()
    async with ta.open(base_url=url, api_key=KEY) as rt:
        sc = await rt.create_sampling_client(base_model="local/tiny")
        async with trio.open_nursery() as nursery:
            model: list[str] = []

            async def train() -> None:
                model.append(await _trainer(rt, run))

            nursery.start_soon(train)
            for _ in range(args.samplers):
                nursery.start_soon(_sampler, sc, run)
            await _monitor(url, server_pid, run, args)
        sdk_latency = rt.latency()
    elapsed = time.monotonic() - started
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=60) as client:
        counters = await _get(client, "/_local/counters")
    stats = counters["models"][model[0]]
    applied_ids = stats["applied_seq_ids"]
    train_applied = len(applied_ids) - 1  # seq_id 0 is the model's creation
    applied_samples = counters["totals"].get("applied:Sample", 0)
    return {
        "elapsed_s": round(elapsed, 1),
        "requests": counters["connection_faults"]["requests"],
        "faults": {
            "status": counters["faults"]["replaced"],
            "reset": counters["connection_faults"]["reset"],
            "dropped_after_apply": counters["connection_faults"]["dropped"],
        },
        "submitted": dict(run.submitted),
        "completed": dict(run.completed),
        "client_errors": dict(run.errors),
        "train": {
            "applied": train_applied,
            "seq_ids_contiguous": applied_ids == list(range(len(applied_ids))),
            "deduplicated": stats["deduplicated"],
            "failed": stats["failed"],
            "lost": run.submitted["train"] - min(run.completed["train"], train_applied),
            "duplicated": max(0, train_applied - run.submitted["train"]),
        },
        "sample": {
            "applied": applied_samples,
            "deduplicated": counters["totals"].get("deduplicated:Sample", 0),
            "lost": run.submitted["sample"] - min(run.completed["sample"], applied_samples),
            "duplicated": max(0, applied_samples - run.submitted["sample"]),
        },
        "futures_pruned": counters["totals"].get("futures_pruned", 0),
        "resources": run.samples,
        "latency": _windows(run, args.window),
        "sdk_latency_vs_measured": _against_sdk(run, sdk_latency.operations.get("Sample")),
        "sdk_requests": {
            route: {"n": r.count, "failed": r.failed, "p50_ms": _ms(r.p50), "p99_ms": _ms(r.p99)}
            for route, r in sdk_latency.requests.items()
        },
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _against_sdk(run: Run, sdk: Any) -> dict[str, Any]:
    """Samples' p50 / p99 as this script timed them (exact, every sample kept) beside what
    ``runtime.latency()`` reports for them (histogram buckets): a check of the SDK's numbers."""
    kinds = np.frombuffer(bytes(run.kinds), dtype=np.uint8)
    seconds = np.frombuffer(run.seconds, dtype=np.float64)[kinds == _KINDS.index("sample")]
    out: dict[str, Any] = {"measured_n": int(seconds.size)}
    if seconds.size:
        out["measured_p50_ms"] = _ms(float(np.percentile(seconds, 50)))
        out["measured_p99_ms"] = _ms(float(np.percentile(seconds, 99)))
    if sdk is not None:
        out |= {"sdk_n": sdk.count, "sdk_failed": sdk.failed}
        out |= {"sdk_p50_ms": _ms(sdk.p50), "sdk_p99_ms": _ms(sdk.p99)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--samplers", type=int, default=16)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--result-ttl", type=float, default=60.0)
    parser.add_argument("--sample-every", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args)
        return 0
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"soak-server-{os.getpid()}.log"
    child = [sys.executable, __file__, "--serve", "--fault-rate", str(args.fault_rate)]
    child += ["--result-ttl", str(args.result_ttl), "--seed", str(args.seed)]
    with log.open("w") as stderr:
        server = subprocess.Popen(child, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            summary = trio.run(_drive, url, server.pid, args)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    text = log.read_text()
    summary["server_tracebacks"] = text.count("Traceback")
    summary["server_error_lines"] = sum(" ERROR " in line for line in text.splitlines())
    summary["command"] = " ".join(["python", "bench/soak.py", *sys.argv[1:]])
    print(json.dumps({k: v for k, v in summary.items() if k not in ("resources",)}, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=1))
    ok = (
        summary["train"]["lost"] == summary["train"]["duplicated"] == 0
        and summary["sample"]["lost"] == summary["sample"]["duplicated"] == 0
        and summary["train"]["seq_ids_contiguous"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
