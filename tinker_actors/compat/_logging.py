"""``TINKER_LOG``, as the official SDK reads it: ``info`` or ``debug`` turns on logging.

Importing the compat package sets httpx's logger to WARNING (the service uses 4xx answers for
backpressure, which look alarming in httpx's INFO lines) and, when ``TINKER_LOG`` is ``info``
or ``debug``, configures basic logging at that level for the ``tinker``, ``tinker_actors``
and ``httpx`` loggers.
"""

from __future__ import annotations

import logging
import os

__all__ = ["setup_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


def setup_logging() -> None:
    """Apply ``TINKER_LOG`` (``info`` / ``debug``; anything else leaves logging alone)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    level = _LEVELS.get(os.environ.get("TINKER_LOG", "").strip().lower())
    if level is None:
        return
    logging.basicConfig(
        format="[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    for name in ("tinker", "tinker_actors", "httpx"):
        logging.getLogger(name).setLevel(level)
