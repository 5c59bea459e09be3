"""Start-up time of ``tinker-actors --help`` (the issue asks for under 0.3 s), beside bare Python.

Each round runs ``python -c pass`` (the interpreter's own start-up, the floor) and the
installed ``tinker-actors --help`` console script as fresh processes, interleaved, and reports
the median and the best wall time of each. It also checks, in one more process, that ``--help``
imported none of the heavy modules (trio, httpx, msgspec, numpy, rich, torch).

Usage: ``python bench/cli_startup.py [--rounds 20]``. Not a test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("trio", "httpx", "msgspec", "numpy", "rich", "torch", "starlette")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    script = shutil.which("tinker-actors")
    if script is None:
        raise SystemExit("tinker-actors is not installed in this environment (pip install -e .)")
    bare: list[float] = []
    cli: list[float] = []
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
    print(f"python -c pass         median {statistics.median(bare):.3f} s  best {min(bare):.3f} s")
    print(f"tinker-actors --help   median {statistics.median(cli):.3f} s  best {min(cli):.3f} s")
    print(f"heavy modules imported by --help: {loaded}")


if __name__ == "__main__":
    main()
