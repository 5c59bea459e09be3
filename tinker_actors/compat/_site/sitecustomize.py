"""Installed on PYTHONPATH by `tinker-actors run`: `import tinker` loads tinker_actors.compat.

Python imports the first `sitecustomize` on sys.path at start-up; this one installs the
import switch and then runs the `sitecustomize` it shadows, if there is one.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _install() -> None:
    if os.environ.get("TINKER_ACTORS_COMPAT") != "1":
        return
    try:
        from tinker_actors.compat._switch import install
    except ImportError as exc:
        print(
            f"tinker-actors run: {sys.executable} cannot import tinker_actors ({exc}), so"
            " `import tinker` is not switched in this process; run it with the Python of the"
            " environment where tinker_actors is installed",
            file=sys.stderr,
        )
        return
    install()


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_install()
_chain()
