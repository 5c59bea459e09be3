"""Small names of the 0.38 surface that are not data types: warnings and type aliases."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

__all__ = ["ExperimentalWarning", "PerDatumLossFn"]

PerDatumLossFn: TypeAlias = Callable[..., tuple[Any, Mapping[str, Any]]]
"""A per-datum custom loss: ``(logprobs, *loss_fn_inputs) -> (loss, metrics)``."""


class ExperimentalWarning(FutureWarning):
    """Emitted by APIs that may change or go away in any release (as in 0.38)."""
