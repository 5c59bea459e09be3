"""The stdlib dataclass protocol on the Structs that are frozen dataclasses in 0.38.

0.38 declares ``Datum``, the provenance spans and the forward/backward request and output
types as frozen dataclasses, and code written for it uses the ``dataclasses`` functions on
them: tinker-cookbook 0.6.1's RL loop calls ``dataclasses.replace`` on a ``Datum`` (to drop its
``mask`` input) and on provenance spans (to shift them by one position). Here those types are
msgspec Structs, which ``dataclasses`` does not recognise; :func:`dataclass_protocol` gives such
a class the two attributes the module reads (``__dataclass_fields__``, ``__dataclass_params__``),
taken from a dataclass with the same fields and defaults. Then ``dataclasses.replace`` (which
builds a new instance through the class, so ``__post_init__`` checks the new values),
``fields``, ``asdict``, ``astuple`` and ``is_dataclass`` work as on 0.38's types. msgspec's own
encoding, decoding and ``msgspec.structs.replace`` are unaffected: msgspec takes a Struct for a
Struct before it looks for dataclass attributes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import msgspec

# An internal helper: nothing here is re-exported by tinker_actors.types.
__all__: list[str] = []

S = TypeVar("S", bound=type[msgspec.Struct])


def dataclass_protocol(cls: S) -> S:
    """Make the frozen Struct class ``cls`` a dataclass to the ``dataclasses`` module."""
    specs: list[tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            spec = dataclasses.field(default=f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            spec = dataclasses.field(default_factory=f.default_factory)
        else:
            spec = dataclasses.field()
        specs.append((f.name, f.type, spec))
    shape = dataclasses.make_dataclass(cls.__name__, specs, frozen=True, kw_only=True)
    cls.__dataclass_fields__ = shape.__dataclass_fields__  # type: ignore[attr-defined]
    cls.__dataclass_params__ = shape.__dataclass_params__  # type: ignore[attr-defined]
    return cls
