"""Helpers for testing code that talks to Tinker, against the local server."""

from __future__ import annotations

from tinker_actors.testing._server_thread import server_in_thread as server_in_thread

__all__ = ["server_in_thread"]
