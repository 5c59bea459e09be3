"""``tinker.lib.retry_handler``: where 0.38 code imports ``RetryConfig`` from."""

from __future__ import annotations

from tinker_actors.backoff import RetryConfig as RetryConfig

__all__ = ["RetryConfig"]
