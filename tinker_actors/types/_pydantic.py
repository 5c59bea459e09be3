"""The pydantic methods that code written for 0.38's models calls, on our msgspec Structs.

0.38's data types (``SamplingParams``, ``ModelInput`` and its chunks, ``AdamParams``,
``LoraConfig``, the responses) are pydantic models, and code written for them serialises and
rebuilds them with pydantic's methods: a proxy that ships a prompt as
``prompt.model_dump(mode="json")`` and reads it back with ``ModelInput.model_validate(...)``,
a logger that writes ``response.model_dump_json()``, ``params.model_copy(update={...})``.
:class:`ModelMethods` gives every request and response Struct those methods with 0.38's
results:

* ``model_dump`` lists every field (an unset optional one as ``None``) and the type tag, nested
  Structs as dicts, tensors in their JSON form and bytes as base64 text (0.38's image chunk
  does the same); ``mode="json"`` also turns datetimes and enums into text.
  ``exclude_none``, ``exclude_defaults`` and top-level ``include`` / ``exclude`` behave as in
  pydantic. ``exclude_unset`` leaves out what holds its default: a Struct does not record which
  arguments it was given, so a field passed its default value is left out too (pydantic would
  keep it).
* ``model_dump_json`` is the JSON of ``model_dump(mode="json")``, compact unless ``indent``.
* ``model_validate`` takes the instance itself or a mapping; keys that are not fields are
  ignored, as by 0.38's models; numbers in text are accepted (``"3"`` for an int).
  ``model_validate_json`` reads JSON text. Both check as the constructor does and raise
  :class:`~tinker_actors.errors.InvalidInputError` (a ``ValueError``, as pydantic's error is)
  naming the type.
* ``model_copy(update=..., deep=...)`` returns a new instance, checked like the constructor.
* ``Model.model_fields`` maps each field name to msgspec's ``FieldInfo`` (its ``default`` and
  ``required`` read like pydantic's).
"""

from __future__ import annotations

import copy
import datetime
import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._tensor import TensorData, json_dec_hook, json_enc_hook

if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import Self

__all__ = ["ModelMethods"]

_Mode = Literal["python", "json"]
_FIELDS_CACHE: dict[type, tuple[msgspec.structs.FieldInfo, ...]] = {}
_MODEL_FIELDS: dict[type, dict[str, msgspec.structs.FieldInfo]] = {}


class _Options(msgspec.Struct, frozen=True):
    mode: _Mode
    exclude_none: bool
    exclude_defaults: bool


class _ModelFields:
    """``Model.model_fields``: field name -> msgspec ``FieldInfo``, in declaration order, then
    the type tag (a field of 0.38's models, a msgspec tag here) with the tag as its default.
    Built once per class; each read gets its own copy."""

    def __get__(self, obj: object, owner: type) -> dict[str, msgspec.structs.FieldInfo]:
        found = _MODEL_FIELDS.get(owner)
        if found is None:
            found = {f.name: f for f in _fields(owner)}
            config = owner.__struct_config__  # type: ignore[attr-defined]
            if config.tag_field is not None and config.tag is not None:
                found[config.tag_field] = msgspec.structs.FieldInfo(
                    name=config.tag_field,
                    encode_name=config.tag_field,
                    type=str,
                    default=config.tag,
                )
            _MODEL_FIELDS[owner] = found
        return dict(found)


def _fields(cls: type) -> tuple[msgspec.structs.FieldInfo, ...]:
    found = _FIELDS_CACHE.get(cls)
    if found is None:
        found = msgspec.structs.fields(cls)
        _FIELDS_CACHE[cls] = found
    return found


class ModelMethods:
    """pydantic's ``model_*`` methods for a Struct (see the module doc)."""

    __slots__ = ()

    model_fields: Any = _ModelFields()

    def model_dump(
        self,
        *,
        mode: _Mode = "python",
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        round_trip: bool = False,
        warnings: bool | str = True,
    ) -> dict[str, Any]:
        """Return the fields as a dict (``mode="json"``: only JSON types)."""
        if mode not in ("python", "json"):
            raise InvalidInputError(f"model_dump mode must be 'python' or 'json', got {mode!r}")
        options = _Options(mode, exclude_none, exclude_defaults or exclude_unset)
        dumped = _struct(self, options)
        if include is not None:
            dumped = {k: v for k, v in dumped.items() if k in include}
        if exclude is not None:
            dumped = {k: v for k, v in dumped.items() if k not in exclude}
        return dumped

    def model_dump_json(
        self,
        *,
        indent: int | None = None,
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        by_alias: bool | None = None,
        exclude_unset: bool = False,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        round_trip: bool = False,
        warnings: bool | str = True,
    ) -> str:
        """Return :meth:`model_dump` (``mode="json"``) as JSON text."""
        dumped = self.model_dump(
            mode="json",
            include=include,
            exclude=exclude,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
        )
        text = msgspec.json.encode(dumped)
        if indent is not None:
            text = msgspec.json.format(text, indent=indent)
        return text.decode()

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
    ) -> Self:
        """Build an instance from a mapping of its fields (or return ``obj`` if it is one)."""
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping):
            raise InvalidInputError(
                f"{cls.__name__}.model_validate takes a mapping of its fields, got "
                f"{type(obj).__name__}"
            )
        names = cls.model_fields
        known = {k: v for k, v in obj.items() if k in names}
        try:
            return msgspec.convert(known, cls, strict=bool(strict), dec_hook=json_dec_hook)
        except msgspec.ValidationError as exc:
            raise InvalidInputError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def model_validate_json(
        cls,
        json_data: str | bytes | bytearray,
        *,
        strict: bool | None = None,
        context: Any | None = None,
    ) -> Self:
        """Build an instance from JSON text."""
        try:
            decoded = msgspec.json.decode(json_data)
        except msgspec.DecodeError as exc:
            raise InvalidInputError(f"{cls.__name__}: not valid JSON ({exc})") from None
        return cls.model_validate(decoded, strict=strict)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Return a copy, with the fields in ``update`` replaced (checked as when built)."""
        base = copy.deepcopy(self) if deep else self
        if not update:
            return copy.copy(base)
        names = {f.name for f in _fields(type(self))}
        changes = {k: v for k, v in update.items() if k in names}
        return msgspec.structs.replace(base, **changes)  # type: ignore[type-var]


def _struct(struct: Any, options: _Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = type(struct)
    for info in _fields(cls):
        value = getattr(struct, info.name)
        if value is msgspec.UNSET:
            value = None
        if options.exclude_none and value is None:
            continue
        if options.exclude_defaults and _is_default(value, info):
            continue
        out[info.name] = _value(value, options)
    config = cls.__struct_config__
    if config.tag_field is not None and config.tag is not None and not options.exclude_defaults:
        out[config.tag_field] = config.tag
    return out


def _is_default(value: object, info: msgspec.structs.FieldInfo) -> bool:
    if info.required:
        return False
    if info.default_factory is not msgspec.NODEFAULT:
        default = info.default_factory()
    else:
        default = None if info.default is msgspec.UNSET else info.default
    if value is None or default is None:
        return value is default
    if isinstance(value, np.ndarray | TensorData) or type(value) is not type(default):
        return False
    return bool(value == default)


def _value(value: object, options: _Options) -> Any:
    if isinstance(value, enum.Enum):  # StrEnum: kept in python mode, its text in json mode
        return value.value if options.mode == "json" else value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ModelMethods):
        return _struct(value, options)
    if isinstance(value, list | tuple):
        return [_value(v, options) for v in value]
    if isinstance(value, dict):
        return {k: _value(v, options) for k, v in value.items()}
    if options.mode == "python" and isinstance(value, datetime.datetime | datetime.date):
        return value
    return msgspec.to_builtins(value, enc_hook=json_enc_hook)
