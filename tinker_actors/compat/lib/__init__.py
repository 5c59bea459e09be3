"""``tinker.lib`` of the official SDK 0.38: the few deeper paths real code imports."""

from __future__ import annotations

from tinker_actors.compat.lib import public_interfaces as public_interfaces
from tinker_actors.compat.lib import retry_handler as retry_handler

__all__ = ["public_interfaces", "retry_handler"]
