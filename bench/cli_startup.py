"""Start-up time of ``tinker-actors --help`` (the issue asks for under 0.3 s), beside bare Python.

Each round runs ``python -c pass`` (the interpreter's own start-up, the floor) and the
installed ``tinker-actors --help`` console script as fresh processes, interleaved, and reports
the median and the best wall time of each, and the median CPU time (user + system), which
other load on a shared machine disturbs less than the wall time. It also checks, in one more process, that ``--help``
imported none of the heavy modules (trio, httpx, msgspec, numpy, rich, torch).

Usage: ``python bench/cli_startup.py [--rounds 20]``. Not a test.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("trio", "httpx", "msgspec", "numpy", "rich", "torch", "starlette")


def timed(argv: list[str]) -> tuple[float, float]:
    """Run ``argv``; return its wall time and its CPU time (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    script = shutil.which("tinker-actors")
    if script is None:
        raise SystemExit("tinker-actors is not installed in this environment (pip install -e .)")
    bare: list[tuple[float, float]] = []
    cli: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        bare.append(timed([sys.executable, "-c", "pass"]))
        cli.append(timed([script, "--help"]))
    probe = (
        "import sys\nfrom tinker_actors.cli import main\nmain(['--help'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.splitlines()[-1]
    print(f"rounds: {args.rounds}")
    for label, runs in (("python -c pass", bare), ("tinker-actors --help", cli)):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{label:<22} wall median {statistics.median(walls):.3f} s, best {min(walls):.3f} s;"
            f" cpu median {statistics.median(cpus):.3f} s"
        )
    print(f"heavy modules imported by --help: {loaded}")


if __name__ == "__main__":
    main()
