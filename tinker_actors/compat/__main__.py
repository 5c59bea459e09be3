"""``python -m tinker_actors.compat script.py [args]``: run a program with ``import tinker``
resolving to tinker_actors.compat (``-m module [args]`` runs a module instead).

Child processes inherit the switch through the environment (see
:func:`tinker_actors.compat._switch.child_environment`).
"""

from __future__ import annotations

import os
import runpy
import sys

from tinker_actors.compat._switch import child_environment, install

_USAGE = "usage: python -m tinker_actors.compat SCRIPT [ARGS...] | -m MODULE [ARGS...]"


def main(argv: list[str]) -> int:
    """Install the switch and run ``argv`` as ``python`` would; return an exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    os.environ.update(child_environment())
    install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(_USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    script = argv[0]
    if not os.path.exists(script):
        print(f"tinker_actors.compat: can't open file {script!r}", file=sys.stderr)
        return 2
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
