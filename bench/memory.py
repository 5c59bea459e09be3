"""Memory and CPU per in-flight sample: tinker_actors beside the official tinker 0.38 client.

Each client submits N ``sample`` calls (``num_samples=1``, 12-token prompts, ``max_tokens`` 8)
and drops every result as it reads it. The server holds every sample until no new one has
arrived for ``--quiet`` seconds, so all N are really in flight at once (submitted, accepted by
the server, their futures being polled) before the first result comes back.

Measured in a fresh child process per (client, N), against one local null server in its own
process (pinned to CPU 0 when ``taskset`` exists, children to CPU 1):

* ``rss_in_flight``: the highest RSS (``/proc/self/statm``, read every 10 ms by a thread)
  between the end of submission and the first result, when every sample is pending;
* ``rss_base``: RSS just before the first submission (runtime and sampler set up, a
  ``gc.collect()`` done); prompts are built inside the submission loop and not kept, so what
  the SDK retains per sample counts and what the caller holds does not;
* bytes per in-flight sample: ``(rss_in_flight - rss_base) / N``;
* CPU per sample: the process's CPU seconds (every thread, ``getrusage``) from the first
  submission to the last result, over N.

Both clients run the same shape of code: submit all, keep the futures, read results in order,
dropping each. ``--profile`` re-runs ours at N = 1,000 (or the largest N, if smaller) under ``tracemalloc`` and prints
where the bytes are while the samples are pending.

Usage: ``python bench/memory.py [--sizes 100 1000 10000] [--quiet 3] [--mode per-future|batched]
[--json PATH] [--png PATH] [--profile] [--replot]``. Writes docs/memory-per-sample.json and docs/memory-per-sample.png by default.
Not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

KEY = "tml-bench-memory"
BASE_MODEL = "local/tiny"
CLIENTS = ("ours", "official")
#: How results reach the clients (the server's flag ``sample_use_retrieve_futures``).
MODES = {
    "per-future": "each sample long-polls its own future (the server's default flag)",
    "batched": "sample_use_retrieve_futures: one batched long poll, then one fetch per result",
}
DOCS = Path(__file__).resolve().parents[1] / "docs"


def prompt_tokens(i: int, n: int = 12) -> list[int]:
    return [(i * 31 + k * 7) % 3000 + 4 for k in range(n)]


# -- server --------------------------------------------------------------------------------------


def serve(quiet: float, batched: bool) -> int:
    """Serve a null server whose samples wait for ``quiet`` seconds without a new sample."""
    import trio

    from tinker_actors.local import NullBackend, ServerLimits, open_local_server
    from tinker_actors.types import ClientConfigResponse

    class HoldingBackend(NullBackend):
        """Hold every sample until no sample has arrived for ``quiet`` seconds."""

        last_arrival: float = 0.0

        async def sample(self, spec: Any, weights: Any, job: Any) -> Any:
            self.last_arrival = trio.current_time()
            # each arrival moves every waiter's deadline: re-read it after each sleep
            while (wait := self.last_arrival + quiet - trio.current_time()) > 0:  # noqa: ASYNC110
                await trio.sleep(wait)
            return await super().sample(spec, weights, job)

    async def main() -> None:
        limits = ServerLimits(max_connections=16384, max_queued_samples=65536)
        async with (
            open_local_server(
                backend=HoldingBackend(),
                sample_capacity=65536,
                limits=limits,
                client_config=ClientConfigResponse(sample_use_retrieve_futures=batched),
            ) as server,
            trio.open_nursery() as nursery,
        ):
            url = await nursery.start(server.serve)
            print(f"serving at {url}", flush=True)

    trio.run(main)
    return 0


# -- child: measure one client at one size -------------------------------------------------------


class RssWatch:
    """Read this process's RSS every ``period`` seconds on a thread; keep (time, bytes)."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.rss()))
            self._stop.wait(self.period)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else self.rss()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Marks:
    """Time marks of one run: submission start and end, first and last result."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.t[name] = time.perf_counter()
        self.cpu[name] = cpu_seconds()


def run_official(n: int, url: str, watch: RssWatch) -> Marks:
    import tinker

    types = tinker.types
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
    params = types.SamplingParams(max_tokens=8)
    sampler.sample(types.ModelInput.from_ints(prompt_tokens(0)), 1, params).result()  # warm
    marks = Marks()
    gc.collect()
    marks.t["base_rss"] = watch.rss()
    marks.mark("submit")
    futures: list[Any] = [
        sampler.sample(types.ModelInput.from_ints(prompt_tokens(i)), 1, params) for i in range(n)
    ]
    marks.mark("submitted")
    got = 0
    for i in range(n):
        result = futures[i].result()
        futures[i] = None  # drop the future, and its result with it
        if i == 0:
            marks.mark("first")
        got += len(result.sequences)
        del result
    marks.mark("last")
    assert got == n
    service.close("success").result()
    return marks


def run_ours(n: int, url: str, watch: RssWatch, profile: bool) -> Marks:
    import trio

    import tinker_actors as ta
    from tinker_actors.types import ModelInput, SamplingParams

    marks = Marks()

    async def main() -> None:
        async with ta.open(base_url=url, api_key=KEY, telemetry=False) as rt:
            sampler = await rt.create_sampling_client(base_model=BASE_MODEL)
            params = SamplingParams(max_tokens=8)
            warm = ModelInput.from_ints(prompt_tokens(0))
            await (await sampler.sample(warm, 1, params)).result()
            gc.collect()
            if profile:
                import tracemalloc

                tracemalloc.start(12)
                before = tracemalloc.take_snapshot()
            marks.t["base_rss"] = watch.rss()
            marks.mark("submit")
            futures: list[Any] = [
                await sampler.sample(ModelInput.from_ints(prompt_tokens(i)), 1, params)
                for i in range(n)
            ]
            marks.mark("submitted")
            if profile:
                await trio.sleep(1.0)  # the server holds results for --quiet s (> 1 s)
                report_profile(before, tracemalloc.take_snapshot(), n)
                tracemalloc.stop()
            got = 0
            for i in range(n):
                result = await futures[i].result()
                futures[i] = None
                if i == 0:
                    marks.mark("first")
                got += len(result.sequences)
                del result
            marks.mark("last")
            assert got == n

    trio.run(main)
    return marks


def report_profile(before: Any, after: Any, n: int) -> None:
    """Print the allocation sites that grew most while ``n`` samples are pending."""
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    print(f"tracemalloc: {total / n:.0f} B per pending sample over {n} (Python heap only)")
    for stat in stats[:12]:
        frames = [
            f"{f.filename.rsplit('site-packages/', 1)[-1].rsplit('/chaos/', 1)[-1]}:{f.lineno}"
            for f in stat.traceback
            if "tinker_actors" in f.filename or "httpx" in f.filename or "trio" in f.filename
        ][-3:]
        print(f"  {stat.size_diff / n:8.0f} B/sample {stat.count_diff:+8d} blocks  {frames}")


def child(client: str, n: int, url: str, profile: bool) -> int:
    import warnings

    warnings.simplefilter("ignore")
    with RssWatch() as watch:
        if client == "official":
            marks = run_official(n, url, watch)
        else:
            marks = run_ours(n, url, watch, profile)
    base = int(marks.t["base_rss"])
    in_flight = watch.peak(marks.t["submitted"], marks.t["first"])
    out = {
        "client": client,
        "n": n,
        "rss_base": base,
        "rss_in_flight": in_flight,
        "bytes_per_sample": (in_flight - base) / n,
        "rss_peak": max(rss for _, rss in watch.samples),
        "cpu": marks.cpu["last"] - marks.cpu["submit"],
        "cpu_submit": marks.cpu["submitted"] - marks.cpu["submit"],
        "wall_submit": marks.t["submitted"] - marks.t["submit"],
        "in_flight_window": marks.t["first"] - marks.t["submitted"],
        "wall": marks.t["last"] - marks.t["submit"],
    }
    out["cpu_per_sample_ms"] = 1000 * out["cpu"] / n
    print(json.dumps(out))
    return 0


# -- parent --------------------------------------------------------------------------------------


def run_child(client: str, n: int, url: str, pin: bool, profile: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", client, str(n), url]
    if profile:
        cmd.append("--profile")
    if pin:
        cmd = ["taskset", "-c", "1", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{client} n={n} failed:\n{done.stderr[-4000:]}")
    if profile:
        print("\n".join(done.stdout.strip().splitlines()[:-1]))
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, cpu) = plt.subplots(1, 2, figsize=(11, 4.5))
    styles = {"ours": "o", "official": "s"}
    lines = {"per-future": "-", "batched": "--"}
    for mode in MODES:
        for client in CLIENTS:
            rows = sorted(
                (r for r in results if r["client"] == client and r.get("mode") == mode),
                key=lambda r: r["n"],
            )
            if not rows:
                continue
            name = "tinker_actors" if client == "ours" else "official 0.38"
            style = styles[client] + lines[mode]
            label = f"{name}, {mode}"
            sizes = [r["n"] for r in rows]
            mem.plot(sizes, [r["bytes_per_sample"] / 1024 for r in rows], style, label=label)
            cpu.plot(sizes, [r["cpu_per_sample_ms"] for r in rows], style, label=label)
    mem.axhline(2, color="grey", linewidth=0.8, linestyle=":", label="goal: 2 KB")
    mem.set(xscale="log", yscale="log", xlabel="samples in flight", ylabel="KB per sample")
    mem.set_title("client memory per in-flight sample")
    cpu.set(xscale="log", yscale="log", xlabel="samples in flight", ylabel="CPU ms per sample")
    cpu.set_title("client CPU per sample (submit to last result)")
    for ax in (mem, cpu):
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--quiet", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=DOCS / "memory-per-sample.json")
    parser.add_argument("--png", type=Path, default=DOCS / "memory-per-sample.png")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--mode", choices=list(MODES), action="append")
    parser.add_argument(
        "--replot", action="store_true", help="redraw --png from --json without measuring"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("CLIENT", "N", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.quiet, args.batched)
    if args.child:
        client, n, url = args.child
        return child(client, int(n), url, args.profile)
    if args.replot:
        plot(json.loads(args.json.read_text())["results"], args.png)
        return 0
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    results: list[dict[str, Any]] = []
    for mode in args.mode or list(MODES):
        print(f"== {mode}: {MODES[mode]}")
        results += run_mode(mode, args, pin)
    args.json.write_text(json.dumps({"quiet": args.quiet, "results": results}, indent=1) + "\n")
    plot(results, args.png)
    print(f"wrote {args.json} and {args.png}")
    return 0


def run_mode(mode: str, args: argparse.Namespace, pin: bool) -> list[dict[str, Any]]:
    """Every (size, client) against one server in ``mode``; the profile last, if asked."""
    server_cmd = [sys.executable, __file__, "--serve", "--quiet", str(args.quiet)]
    if mode == "batched":
        server_cmd.append("--batched")
    if pin:
        server_cmd = ["taskset", "-c", "0", *server_cmd]
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True)
    results: list[dict[str, Any]] = []
    try:
        assert server.stdout is not None
        url = server.stdout.readline().rsplit(" at ", 1)[1].strip()
        print(f"server {url} (null backend, samples held {args.quiet} s after the last arrival)")
        print(
            f"{'client':9} {'N':>6} {'KB/sample':>10} {'CPU ms/sample':>14} {'base MB':>8}"
            f" {'in flight MB':>13} {'submit s':>9} {'wall s':>8}"
        )
        for n in args.sizes:
            for client in CLIENTS:
                r = run_child(client, n, url, pin)
                r["mode"] = mode
                results.append(r)
                print(
                    f"{client:9} {n:>6} {r['bytes_per_sample'] / 1024:>10.2f}"
                    f" {r['cpu_per_sample_ms']:>14.3f} {r['rss_base'] / 2**20:>8.1f}"
                    f" {r['rss_in_flight'] / 2**20:>13.1f} {r['wall_submit']:>9.2f}"
                    f" {r['wall']:>8.1f}",
                    flush=True,
                )
        if args.profile:  # tracemalloc is slow: profile at 1,000 at most
            run_child("ours", min(max(args.sizes), 1000), url, pin, profile=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
