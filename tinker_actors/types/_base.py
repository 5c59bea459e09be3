"""The two JSON conventions every wire Struct follows: requests and responses.

The conventions are documented once, in :mod:`tinker_actors.types._model_input`; these bases
apply them so each Struct does not repeat them.

Requests ("send defaults, drop nulls"). The official SDK serialises request bodies with
``exclude_none=True`` and *without* ``exclude_unset``, so a field holding its default is sent
(``"type": "sample"``, ``"overwrite": false``) and an absent optional field is not sent at all.
In msgspec that is ``omit_defaults=False`` plus :data:`msgspec.UNSET` as the default of every
optional field, typed ``T | UnsetType | None``: ``UNSET`` is never encoded, and
:class:`RequestStruct` turns ``None`` (from a caller, or a decoded ``null``) into ``UNSET`` in
every field whose default is ``UNSET``, so no ``null`` reaches the wire::

    >>> import msgspec  # CreateSamplingSessionRequest is in ._session
    >>> msgspec.json.encode(CreateSamplingSessionRequest(
    ...     session_id="s", sampling_session_seq_id=0, base_model="m", model_path=None))
    b'{"session_id":"s","sampling_session_seq_id":0,"base_model":"m","type":"create_sampling_session"}'

Requests reject unknown fields when *decoded* (``forbid_unknown_fields=True``): the local server
decodes request bodies with these Structs and must refuse malformed ones. Validation lives in
``__post_init__``, which msgspec also runs after decoding, so a bad body fails the same way
(``InvalidInputError`` when constructed, ``msgspec.ValidationError`` when decoded).

Responses ("be liberal in what you accept"). Unknown fields are ignored, so a server may add
fields freely; optional fields are ``T | None = None``. A response's literal ``type`` is a
msgspec tag (always written, checked when present) where the official model requires it; where
the official model allows ``null`` (the future results of saves and loads, ``get_info``) it is
an ordinary ``Literal[...] | None`` field that defaults to the literal, so it is still written.

Tagged unions are used exactly where the wire has a discriminator (``type``, ``event`` for
telemetry events, ``state`` for future completions); msgspec writes the tag first. The tag is
not a field, but it reads as an attribute (``status.type``) as it does on 0.38's models
(:func:`tag_attribute`). Every subclass repeats ``frozen=True`` (and ``kw_only=True``) because
type checkers and msgspec read those per class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET

from tinker_actors.types._pydantic import ModelMethods

__all__ = ["RequestStruct", "ResponseStruct"]


def tag_attribute(self: msgspec.Struct, name: str) -> object:
    """Answer a failed attribute lookup for the tag field with the class's tag.

    Installed as ``__getattr__`` (which Python calls only when normal lookup fails, so fields
    cost nothing extra) on the bases of tagged Structs, and hidden from type checkers so that
    a misspelt attribute is still a static error.

    Raises:
        AttributeError: ``name`` is not the tag field.
    """
    config = type(self).__struct_config__
    if name == config.tag_field and config.tag is not None:
        return config.tag
    raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class _UnsetReadsNone:
    """A request field's attribute that reads ``UNSET`` as ``None``, as 0.38's models do.

    It wraps the field's slot descriptor on the class, so only Python attribute reads go
    through it: msgspec's encoder, ``repr`` of the raw slots, ``__eq__``, ``replace`` and
    pickling read the slots directly, so ``UNSET`` still keeps the field off the wire while
    ``params.seed is None`` holds for code written against the official SDK.
    """

    __slots__ = ("slot",)

    def __init__(self, slot: Any) -> None:
        self.slot = slot

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self.slot
        value = self.slot.__get__(obj, owner)
        return None if value is UNSET else value

    def __set__(self, obj: object, value: object) -> None:
        self.slot.__set__(obj, value)

    def __delete__(self, obj: object) -> None:
        self.slot.__delete__(obj)


# Per concrete request class: the slot descriptors of the fields whose default is UNSET.
# Computed once, at the class's first instance, because msgspec only knows a class's fields
# after the class statement has finished; every instance (built, decoded, converted, replaced
# or unpickled) runs __post_init__ first, so no attribute is read before the fields are wrapped.
_UNSET_SLOTS: dict[type[msgspec.Struct], tuple[Any, ...]] = {}


def _unset_default_slots(cls: type[msgspec.Struct]) -> tuple[Any, ...]:
    slots = _UNSET_SLOTS.get(cls)
    if slots is None:
        fields = cls.__struct_fields__
        defaults = cls.__struct_defaults__
        with_defaults = fields[len(fields) - len(defaults) :]
        names = [n for n, d in zip(with_defaults, defaults, strict=True) if d is UNSET]
        slots = tuple(_wrap_unset_field(cls, name) for name in names)
        _UNSET_SLOTS[cls] = slots
    return slots


def _wrap_unset_field(cls: type[msgspec.Struct], name: str) -> Any:
    """Wrap field ``name`` where the MRO defines it (once); return its slot descriptor."""
    for klass in cls.__mro__:
        found = vars(klass).get(name)
        if isinstance(found, _UnsetReadsNone):
            return found.slot
        if found is not None:
            setattr(klass, name, _UnsetReadsNone(found))
            return found
    raise AttributeError(f"{cls.__name__} has no field {name!r}")  # pragma: no cover


class RequestStruct(msgspec.Struct, ModelMethods, frozen=True, forbid_unknown_fields=True):
    """Base of request bodies: defaults sent, unset fields omitted, unknown fields rejected.

    An unset optional field holds ``UNSET`` (never encoded) and reads as ``None``.
    Subclasses that validate in ``__post_init__`` call ``super().__post_init__()`` first.
    """

    if not TYPE_CHECKING:
        __getattr__ = tag_attribute

    def __post_init__(self) -> None:
        for slot in _unset_default_slots(type(self)):
            if slot.__get__(self) is None:
                msgspec.structs.force_setattr(self, slot.__name__, UNSET)

    def __repr__(self) -> str:
        # the fields as they read (an unset one as None), like 0.38's models
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__struct_fields__)
        return f"{type(self).__name__}({shown})"


class ResponseStruct(msgspec.Struct, ModelMethods, frozen=True):
    """Base of response bodies: unknown fields ignored."""

    if not TYPE_CHECKING:
        __getattr__ = tag_attribute
