"""Workloads B1-B8 (workloads.md §5): tinker_actors, the official 0.38 client and a floor.

One command runs every workload for four clients, each (client, workload) run in a fresh child
process (pinned to CPU 1 when ``taskset`` exists; the local null server on CPU 0):

* ``ours``: tinker_actors in trio (``await client.call(...)``, then ``await future.result()``);
* ``official``: the official client in its documented 0.38 style (futures, ``.result()``);
* ``floor``: the same HTTP requests sent by the bare h11 transport (``TrioH11Transport``) with no
  SDK logic: bodies prebuilt before the timed section (the protobuf ones with our encoder),
  one submit + long-poll per operation, no retries, limiter, futures or actors. Setup (session,
  model, sampler) uses the SDK and is not timed. There is no floor for B6 (its sampler
  refresh is SDK logic through and through).
* ``floor-h``: the floor carrying the SDK's header set (about 20 headers: the official
  client's, which protocol.md has every request send, plus a fresh idempotency key), so the
  same bytes go over the wire as the SDK's requests; ``floor`` sends the 4 or 5 headers a bare
  request needs. Both are floors of the transport; which is "the same request" is the
  difference between them (server CPU included: it parses every header).

Per run: CPU seconds of the child (``getrusage``, all threads) and wall time of the timed
section, HTTP requests per completed operation (the server's counters; setup included), peak
open sockets (sampled every 20 ms from ``/proc/self/fd``) and peak RSS. Each (client, workload)
repeats ``--repeat`` times, the order of the clients alternating, and the medians are reported
with ours/official CPU and ours/floor (and floor-h) CPU and wall ratios. ``--json`` writes every run.

Sizes are scaled down by default so the whole set fits in about 10 minutes on 2 cores; ``--full``
gives workloads.md's sizes where the local models allowed when the sizes were set (contexts of
1,024 and 2,048 tokens then, 8,192 now; kept so runs compare across sessions): B2's 24k-token
responses and B4/B5's 4.5k-token sequences are cut, said below.

The timed section starts after a ``gc.collect()`` (so no client pays for a collection over
the setup's young objects by chance); its GC CPU (``gc_cpu``) and kernel CPU (``sys_cpu``) are
kept in the JSON runs. ``BENCH_PROFILE=FILE python bench/workloads.py --child ours B4 URL
'{"batch": 256, "tokens": 2048}'`` runs one child under cProfile (timed section only).

Modules: this driver (sizes, children, table); ``_workloads_inputs`` (inputs, ``Meter``);
``_workloads_clients`` (ours, official); ``_workloads_floor`` (the floor).

Usage: ``python bench/workloads.py [--only B1 --only B3] [--repeat 3] [--full] [--json out.json]``.
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

import numpy as np

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
            f"{s['n']} concurrent long samples, {s['prompt']}-token prompts, max_tokens {s['max_tokens']} (workloads.md: 24,576; cut when the context was 2,048)"
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


# -- parent ---------------------------------------------------------------------------------------


def child(client: str, w: str, url: str, sizes: dict[str, int]) -> int:
    import warnings

    from _workloads_clients import run_official, run_ours

    warnings.simplefilter("ignore")
    if client == "official":
        out = run_official(w, sizes, url)
    else:
        if client == "floor-h":
            from _workloads_floor import send_sdk_headers

            send_sdk_headers()
        out = run_ours(w, sizes, url, floor=client.startswith("floor"))
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
    parser.add_argument("--clients", default="ours,official,floor,floor-h")
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
                  "peak RSS MB | server CPU s | ours/official CPU | ours/floor CPU | "
                  "ours/floor wall | ours/floor-h CPU | ours/floor-h wall |")  # fmt: skip
        print(header)
        print("|" + "---|" * 14)
        clients = args.clients.split(",")
        for w in args.only or WORKLOADS:
            sizes = SIZES[w][1 if args.full else 0]
            if w == "B6":  # no floor: its sampler weights come from the SDK's own save
                order = [c for c in clients if not c.startswith("floor")]
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

            def ratio(c: str, peer: str, key: str, med: dict[str, Any] = med) -> str:
                if c != "ours" or peer not in med:
                    return ""
                return f"{med['ours'][key] / med[peer][key]:.2f}x"

            for c in order:
                m = med[c]
                ratios = " | ".join(ratio(c, peer, key) for peer, key in (
                    ("official", "cpu"), ("floor", "cpu"), ("floor", "wall"),
                    ("floor-h", "cpu"), ("floor-h", "wall")))  # fmt: skip
                row = (f"| {w} | {c} | {m['cpu']:.3f} | {m['cpu'] / m['ops'] * 1e3:.3f} | {m['wall']:.3f} | "
                       f"{m['requests'] / m['ops']:.2f} | {m['sockets']:.0f} | {m['peak_rss_mb']:.0f} | "
                       f"{m.get('server_cpu', float('nan')):.2f} | {ratios} |")  # fmt: skip
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
