"""Inputs and the meter shared by every client of bench/workloads.py (see its docstring)."""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import threading
import time
from typing import Any

import numpy as np

KEY = "tml-bench-workloads"
# both have 8,192-token contexts (1,024 and 2,048 until 2026-12-06, when the sizes were set)
TINY, SMALL = "local/tiny", "local/small"


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
