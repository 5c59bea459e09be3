"""The protocol version we report is the official package's we implement (issue 14).

The service keys feature flags and compatibility on ``x-sdk-version`` / ``sdk_version``, so a
client that reported its own ``0.1.0`` would be taken for an ancient official release.
"""

from __future__ import annotations

import importlib.metadata

import pytest

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)

from tinker_actors._version import PROTOCOL_VERSION, __version__
from tinker_actors.transport._headers import base_headers

pytestmark = pytest.mark.interop


def test_protocol_version_is_the_installed_official_release() -> None:
    assert importlib.metadata.version("tinker") == PROTOCOL_VERSION


def test_headers_report_the_protocol_and_name_us() -> None:
    headers = base_headers()
    assert headers["X-Stainless-Package-Version"] == PROTOCOL_VERSION
    assert (
        headers["User-Agent"] == f"tinker-actors/{__version__} (tinker-protocol {PROTOCOL_VERSION})"
    )
