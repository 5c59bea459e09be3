"""The compact ``--fault`` syntax: one rule per flag value (grammar in docs/local-server.md).

Examples: ``asample:429@0.2,retry_after=1``, ``*:429|503*2@0.2``,
``retrieve_future:try_again=3``, ``*:latency=uniform(0.01,0.05)``, ``seed=7``,
``connection:reset=0.05``. Errors name the flag's position and the field at fault.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from tinker_actors.local._faults import ConnectionSection, FaultPlan, FaultPlanError, FaultRule

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["plan_from_flags"]

# ----------------------------------------------------------------------------------------------
# Compact CLI syntax: one rule per --fault value (grammar in docs/local-server.md)


def _split_items(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (``uniform(0.1,0.2)`` stays whole)."""
    items: list[str] = []
    depth = start = 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def _number(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FaultPlanError(f"{key}: {text!r} is not a number") from None


def _integer(text: str, key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FaultPlanError(f"{key}: {text!r} is not an integer") from None


def _boolean(text: str, key: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise FaultPlanError(f"{key}: {text!r} is not true or false")


def _codes(text: str, key: str) -> dict[int, float]:
    """Parse ``429`` or ``429|503*2|408`` (status, optional ``*weight``)."""
    choices: dict[int, float] = {}
    for part in text.split("|"):
        code, star, weight = part.partition("*")
        choices[_integer(code.strip(), key)] = _number(weight, key) if star else 1.0
    return choices


def _latency(text: str) -> float | dict[str, Any]:
    """Parse ``0.05``, ``fixed(0.05)``, ``uniform(0.01,0.05)`` or ``exponential(0.1)``."""
    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
    if match is None:
        return _number(text, "latency")
    name = {"exp": "exponential"}.get(match.group(1), match.group(1))
    args = [_number(arg.strip(), "latency") for arg in match.group(2).split(",")]
    expected = {"fixed": 1, "uniform": 2, "exponential": 1}.get(name)
    if expected is None:
        raise FaultPlanError(
            f"latency: unknown distribution {name!r}; use fixed(s), uniform(low,high) or "
            "exponential(mean)"
        )
    if len(args) != expected:
        raise FaultPlanError(f"latency: {name} takes {expected} argument(s), got {len(args)}")
    return {name: args if name == "uniform" else args[0]}


def _sequence(text: str) -> list[int | str]:
    return [
        "pass" if item.strip() == "pass" else _integer(item.strip(), "sequence")
        for item in text.split("/")
    ]


_RULE_KEYS: dict[str, tuple[str, Any]] = {
    "p": ("probability", _number),
    "probability": ("probability", _number),
    "count": ("count", _integer),
    "after": ("after", _integer),
    "status": ("status", _integer),
    "choices": ("choices", _codes),
    "seq": ("sequence", lambda v, k: _sequence(v)),
    "sequence": ("sequence", lambda v, k: _sequence(v)),
    "retry_after": ("retry_after", lambda v, k: _number(v, k) if _is_number(v) else v),
    "retry_after_ms": ("retry_after_ms", _number),
    "should_retry": ("should_retry", _boolean),
    "empty_body": ("empty_body", _boolean),
    "detail": ("body", lambda v, k: {"detail": v}),
    "latency": ("latency", lambda v, k: _latency(v)),
    "try_again": ("try_again_polls", _integer),
    "try_again_polls": ("try_again_polls", _integer),
    "queue_state": ("queue_state", lambda v, k: v),
    "queue_state_reason": ("queue_state_reason", lambda v, k: v),
    "method": ("method", lambda v, k: v),
}

_CONNECTION_KEYS: dict[str, Any] = {
    "reset": _number,
    "close": _number,
    "stall": _number,
    "stall_seconds": _number,
    "delay_seconds": _number,
    "seed": _integer,
    "drop_response": _number,
}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _key_values(items: list[str], keys: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq and key in ("empty", "empty_body"):
            key, value = "empty_body", "true"
        elif not eq:
            raise FaultPlanError(f"{item!r}: expected KEY=VALUE")
        if key not in keys:
            raise FaultPlanError(f"unknown option {key!r} (options: {', '.join(sorted(keys))})")
        spec = keys[key]
        name, parse = spec if isinstance(spec, tuple) else (key, spec)
        if name in out:
            raise FaultPlanError(f"{name}: given twice")
        out[name] = parse(value, name)
    return out


def _rule_from_flag(spec: str) -> FaultRule:
    endpoint, sep, rest = spec.partition(":")
    if not sep or not endpoint.strip() or not rest.strip():
        raise FaultPlanError("expected ENDPOINT:ACTION[,OPTION...], e.g. 'asample:429@0.2'")
    items = _split_items(rest)
    if any(not item for item in items):
        raise FaultPlanError("empty item between commas")
    data: dict[str, Any] = {"endpoint": endpoint.strip()}
    first = items[0]
    if "=" not in first and first not in ("empty", "empty_body"):
        # the leading action: STATUS[|STATUS[*W]...][@PROBABILITY]
        codes, at, probability = first.partition("@")
        choices = _codes(codes, "status")
        if len(choices) == 1 and next(iter(choices.values())) == 1.0:
            data["status"] = next(iter(choices))
        else:
            data["choices"] = choices
        if at:
            data["probability"] = _number(probability, "probability")
        items = items[1:]
    for key, value in _key_values(items, _RULE_KEYS).items():
        if key in data:
            raise FaultPlanError(f"{key}: given twice")
        data[key] = value
    try:
        return msgspec.convert(data, FaultRule, str_keys=True)
    except msgspec.ValidationError as exc:
        message, _, _ = str(exc).rpartition(" - at `")
        raise FaultPlanError(message or str(exc)) from None


def plan_from_flags(flags: Sequence[str], *, seed: int | None) -> FaultPlan:
    specs: list[str] = []
    tokens = iter(flags)
    for token in tokens:
        if token == "--fault":
            value = next(tokens, None)
            if value is None:
                raise FaultPlanError("--fault needs a value, e.g. --fault 'asample:429@0.2'")
            specs.append(value)
        elif token.startswith("--fault="):
            specs.append(token.removeprefix("--fault="))
        elif token.startswith("-"):
            raise FaultPlanError(f"unknown flag {token!r}; only --fault SPEC is understood")
        else:
            specs.append(token)
    rules: list[FaultRule] = []
    connection: ConnectionSection | None = None
    for index, spec in enumerate(specs):
        try:
            text = spec.strip()
            if text.startswith("seed="):
                given = _integer(text.removeprefix("seed=").strip(), "seed")
                if seed is not None and seed != given:
                    raise FaultPlanError(f"seed: given twice ({seed} and {given})")
                seed = given
            elif text.startswith("connection:"):
                if connection is not None:
                    raise FaultPlanError("connection: give one connection spec")
                values = _key_values(
                    _split_items(text.removeprefix("connection:")), _CONNECTION_KEYS
                )
                connection = ConnectionSection(**values)
            else:
                rules.append(_rule_from_flag(text))
        except FaultPlanError as exc:
            raise FaultPlanError(f"invalid --fault #{index} {spec!r}: {exc}") from None
    return FaultPlan(seed=seed or 0, rules=tuple(rules), connection=connection)
