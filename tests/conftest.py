"""Shared fixtures. Tests are deterministic: virtual time, in-process transports, loopback only."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def rng() -> random.Random:
    """A seeded random source for code that takes injected randomness."""
    return random.Random(1234)
