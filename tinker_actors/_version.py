"""Versions: ours (``__version__``) and the official protocol's we implement.

``__version__`` names this package (``User-Agent``, the CLI's ``--version``). The service keys
feature flags and compatibility on the *official* SDK version a client reports (``x-sdk-version``,
``sdk_version`` in the bootstrap and telemetry bodies), so those carry
:data:`PROTOCOL_VERSION`: the official ``tinker`` release whose wire protocol this package
implements (a test in ``tests/interop`` compares it with the installed official package).
"""

__version__ = "0.1.0"

#: The official tinker SDK release whose wire protocol we speak (protocol.md is written against it).
PROTOCOL_VERSION = "0.38.0"
