"""Soak: an RL-shaped loop on the 0.38 surface, for hours' worth of steps. Not a test.

What a week-long RL run does to both sides, compressed: every step makes a new sampling client
(``save_weights_and_get_sampling_client``, as tinker-cookbook's RL loops do), samples a batch
from it with futures (``.result()``) and with ``asyncio.run`` over ``sample_async`` (a fresh
event loop per step, as scripts written for the official client do), then one
``forward_backward`` + ``optim_step``.

The server is ``tinker-actors serve``'s engine in a child process (null backend, its data dir
kept under ``--data-dir`` so its disk use can be read); the client is this script in another
child, on ``tinker_actors.compat`` or the official client (``--client``). Every ``--every``
steps the parent prints and records: client RSS, threads and open files; server RSS; the data
dir's size and file count; the steps per second of the last stretch.

Usage: ``python bench/soak_rl.py [--steps 10000] [--every 1000] [--client compat|official]
[--ephemeral-samplers 32] [--result-ttl 3600] [--out soak_rl.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _serve_child import serve_until_terminated

KEY = "tml-soak-rl"


def _serve(args: argparse.Namespace) -> None:
    """The server process: print the URL, serve until SIGTERM."""
    settings: dict[str, Any] = {"data_dir": Path(args.data_dir), "result_ttl": args.result_ttl}
    if args.ephemeral_samplers >= 0:  # -1: the server's default (older servers lack the setting)
        settings["ephemeral_samplers"] = args.ephemeral_samplers or None
    serve_until_terminated(**settings)


def _status(pid: int) -> tuple[float, int, int]:
    """RSS in MB, threads and open file descriptors of a process."""
    rss, threads = 0.0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads, len(os.listdir(f"/proc/{pid}/fd"))


def _client(args: argparse.Namespace) -> None:
    """The client process: the loop; one line on stdout every ``--every`` steps."""
    import importlib
    import warnings

    warnings.simplefilter("ignore", FutureWarning)  # sample_async is deprecated in 0.38
    tinker: Any = importlib.import_module(
        "tinker_actors.compat" if args.client == "compat" else "tinker"
    )
    types = tinker.types
    service = tinker.ServiceClient(base_url=args.url, api_key=KEY)
    training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
    params = types.SamplingParams(max_tokens=4)
    prompt = types.ModelInput.from_ints([5, 6, 7, 8, 9, 10])
    tokens = list(range(4, 37))
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=tokens[1:], dtype="int64", shape=[32]),
            "weights": types.TensorData(data=[1.0] * 32, dtype="float32", shape=[32]),
        },
    )

    async def sample_async(sampler: Any) -> None:
        calls = [
            sampler.sample_async(prompt, num_samples=1, sampling_params=params) for _ in range(4)
        ]
        await asyncio.gather(*calls)

    started = time.perf_counter()
    for step in range(args.steps + 1):
        sampler = training.save_weights_and_get_sampling_client().result()
        futures = [sampler.sample(prompt, num_samples=2, sampling_params=params) for _ in range(8)]
        for future in futures:
            future.result()
        asyncio.run(sample_async(sampler))
        forward_backward = training.forward_backward([datum] * 4, "cross_entropy")
        optim = training.optim_step(types.AdamParams(learning_rate=1e-4))
        forward_backward.result()
        optim.result()
        if step % args.every == 0:
            now = time.perf_counter()
            rss, _, fds = _status(os.getpid())
            line = {"step": step, "seconds": now - started, "rss": rss, "fds": fds}
            line["threads"] = threading.active_count()
            print(json.dumps(line), flush=True)
    if hasattr(service, "close"):
        service.close("success").result()


def _dir_size(root: Path) -> tuple[float, int]:
    total, files = 0, 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue  # removed while walking
            files += 1
    return total / 1e6, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--client", choices=["compat", "official"], default="compat")
    parser.add_argument(
        "--ephemeral-samplers", type=int, default=32, help="0 keeps all; -1 the server's default"
    )
    parser.add_argument("--result-ttl", type=float, default=3600.0)
    parser.add_argument("--out", default="soak_rl.json")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return _serve(args)
    if args.run_client:
        return _client(args)

    me = [sys.executable, __file__]
    shared = ["--ephemeral-samplers", str(args.ephemeral_samplers)]
    with tempfile.TemporaryDirectory(prefix="soak-rl-") as data_dir:
        server = subprocess.Popen(
            [*me, "--serve", "--data-dir", data_dir, "--result-ttl", str(args.result_ttl), *shared],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            client = subprocess.Popen(
                [*me, "--run-client", "--url", url, "--client", args.client,
                 "--steps", str(args.steps), "--every", str(args.every)],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            rows: list[dict[str, Any]] = []
            assert client.stdout is not None
            print("step  seconds  steps/s  client MB  threads  fds  server MB  disk MB  files")
            last = (0, 0.0)
            for text in client.stdout:
                row = json.loads(text)
                row["server_rss"] = _status(server.pid)[0]
                row["disk_mb"], row["files"] = _dir_size(Path(data_dir))
                rate = (row["step"] - last[0]) / max(row["seconds"] - last[1], 1e-9)
                last = (row["step"], row["seconds"])
                rows.append(row)
                print(
                    f"{row['step']:>5} {row['seconds']:8.1f} {rate:8.1f} {row['rss']:10.1f} "
                    f"{row['threads']:8} {row['fds']:4} {row['server_rss']:10.1f} "
                    f"{row['disk_mb']:8.1f} {row['files']:6}",
                    flush=True,
                )
            if client.wait() != 0:
                raise SystemExit(f"the client failed (exit {client.returncode})")
        finally:
            server.terminate()
            server.wait(timeout=60)
    summary = {"args": {k: v for k, v in vars(args).items() if v is not None}, "rows": rows}
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
