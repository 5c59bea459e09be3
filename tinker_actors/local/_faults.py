"""Scripted, seeded fault plans for the local Tinker server.

A :class:`FaultPlan` is data: a seed, an ordered list of :class:`FaultRule` s and an optional
``connection`` section for the TCP :class:`~tinker_actors.local.FaultProxy`. This module is
the model: fields, validation (every mistake is a :class:`FaultPlanError` naming the rule and
field) and loading from JSON, TOML, plain data or ``--fault`` flags. Executing a plan (the
seeded decisions and the counters) is :class:`~tinker_actors.local.FaultEngine`'s job, and
:class:`~tinker_actors.local.FaultInjector` performs its decisions over ASGI.

How a request is decided (rules in plan order):

* a rule *matches* when its ``endpoint`` pattern and ``method`` fit the request;
* a matching rule *fires* unless it is still skipping (``after``), has used up its ``count``,
  its ``sequence`` says ``"pass"`` (or has run out), or its ``probability`` roll fails;
* a firing latency-only rule adds its delay and evaluation goes on, so latency composes with
  status faults; the first firing rule that answers (a status or ``try_again``) ends it.

Every draw comes from one ``random.Random(seed)`` per engine, so the same plan and the same
order of requests give the same decisions. Under concurrency the order in which requests reach
the engine is the scheduler's, so reproduce a run by replaying requests in the same order.

Example::

    plan = FaultPlan.from_flags(["asample:429@0.2,retry_after=1", "retrieve_future:try_again=3"])
    plan = FaultPlan.from_file("faults.toml")
    plan.rules[0].probability  # 0.2
    plan.connection_faults()   # ConnectionFaults for FaultProxy, or None
"""

from __future__ import annotations

import fnmatch
import http
import math
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._fault_proxy import ConnectionFaults

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence

__all__ = [
    "KNOWN_ENDPOINTS",
    "ConnectionSection",
    "FaultPlan",
    "FaultPlanError",
    "FaultRule",
    "Latency",
    "endpoint_matches",
]

_API_PREFIX = "/api/v1/"
_RETRIEVE_FUTURE_PATH = _API_PREFIX + "retrieve_future"

#: First path segments of the API (protocol.md §3); a relative pattern must start with one
#: unless that segment is a glob. Absolute patterns ("/...") are not checked.
KNOWN_ENDPOINTS = frozenset(
    {
        "asample", "audit", "auth", "billing", "cancel_future", "checkpoints", "client",
        "copy_weights", "create_custom_loss", "create_model", "create_sampling_session",
        "create_session", "forward", "forward_backward", "get_info", "get_server_capabilities",
        "healthz", "join_sampling_session", "load_weights", "optim_step", "retrieve_future",
        "retrieve_futures", "samplers", "save_weights", "save_weights_external",
        "save_weights_for_sampler", "session_heartbeat", "sessions", "telemetry",
        "training_runs", "unload_model", "weights_info",
    }
)  # fmt: skip

_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
_PATTERN_CHARS = re.compile(r"^[A-Za-z0-9_.~:@*/-]+$")

QueueState = Literal["active", "paused_capacity", "paused_rate_limit"]


class FaultPlanError(InvalidInputError):
    """A fault plan (file, dict, flag or object) is invalid; the message names where and why."""


def _check_status(status: int, where: str) -> None:
    try:
        known = http.HTTPStatus(status) is not None
    except ValueError:
        known = False
    if not (500 <= status <= 599 or (400 <= status <= 499 and known)):
        raise FaultPlanError(
            f"{where}: {status} is not an HTTP error status to inject; use a 4xx such as "
            "400, 402, 408, 409, 410 or 429, or any 5xx"
        )


def _check_seconds(value: float, where: str) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise FaultPlanError(f"{where}: must be a finite number of seconds >= 0, got {value!r}")


def _check_endpoint(pattern: str) -> None:
    if pattern == "*":
        return
    if not pattern or not _PATTERN_CHARS.match(pattern) or "//" in pattern:
        raise FaultPlanError(
            f"endpoint: {pattern!r} is not a pattern; use '*', a name after /api/v1/ such as "
            "'asample' or 'training_runs/*', or a full path starting with '/' ('*' is the only "
            "wildcard; no '?', '[', query strings or '//')"
        )
    if pattern.startswith("/"):
        return
    if pattern.startswith("api/"):
        raise FaultPlanError(
            f"endpoint: {pattern!r} mixes the two forms; write the part after /api/v1/ "
            f"({pattern.removeprefix('api/v1/')!r}) or a full path starting with '/'"
        )
    first = pattern.split("/", 1)[0]
    if "*" not in first and first not in KNOWN_ENDPOINTS:
        raise FaultPlanError(
            f"endpoint: unknown endpoint {first!r} (known: {', '.join(sorted(KNOWN_ENDPOINTS))}); "
            "write a full path starting with '/' for anything else"
        )


def endpoint_matches(pattern: str, path: str) -> bool:
    """Return whether an endpoint pattern matches a request path.

    ``*`` matches every path; a pattern starting with ``/`` is a glob on the whole path; any
    other pattern is a glob on the part after ``/api/v1/``. In globs ``*`` also matches ``/``.
    """
    if pattern == "*":
        return True
    if pattern.startswith("/"):
        return fnmatch.fnmatchcase(path, pattern)
    if not path.startswith(_API_PREFIX):
        return False
    return fnmatch.fnmatchcase(path[len(_API_PREFIX) :], pattern)


class Latency(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A latency distribution in seconds: exactly one of ``fixed``, ``uniform`` or ``exponential``.

    ``uniform`` is ``(low, high)``; ``exponential`` is the mean.
    """

    fixed: float | None = None
    uniform: tuple[float, float] | None = None
    exponential: float | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("fixed", "uniform", "exponential") if getattr(self, n) is not None]
        if len(given) != 1:
            raise FaultPlanError(
                "latency: give exactly one of fixed, uniform or exponential, "
                f"got {', '.join(given) or 'none'}"
            )
        if self.fixed is not None:
            _check_seconds(self.fixed, "latency.fixed")
        if self.exponential is not None:
            _check_seconds(self.exponential, "latency.exponential")
        if self.uniform is not None:
            low, high = self.uniform
            _check_seconds(low, "latency.uniform")
            _check_seconds(high, "latency.uniform")
            if low > high:
                raise FaultPlanError(f"latency.uniform: low {low} is above high {high}")

    def sample(self, rng: random.Random) -> float:
        """Draw one delay in seconds."""
        if self.fixed is not None:
            return self.fixed
        if self.uniform is not None:
            return rng.uniform(*self.uniform)
        mean = self.exponential or 0.0
        return rng.expovariate(1.0 / mean) if mean > 0 else 0.0


class FaultRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One rule of a fault plan; see docs/local-server.md for every field's meaning.

    A rule does exactly one of: answer ``status`` / a weighted pick from ``choices`` / the next
    entry of ``sequence``; answer ``try_again`` for the first ``try_again_polls`` polls of each
    future (retrieve_future only); or, with none of those, only add ``latency``.
    """

    endpoint: str = "*"
    method: str | None = None
    probability: float = 1.0
    count: int | None = None
    after: int = 0
    sequence: tuple[int | Literal["pass"], ...] | None = None
    status: int | None = None
    choices: dict[int, float] | None = None
    retry_after: float | str | None = None
    retry_after_ms: float | None = None
    should_retry: bool | None = None
    empty_body: bool = False
    body: Any = None
    latency: float | Latency | None = None
    try_again_polls: int = 0
    queue_state: QueueState = "active"
    queue_state_reason: str | None = None

    def __post_init__(self) -> None:
        _check_endpoint(self.endpoint)
        if self.method is not None and self.method.upper() not in _METHODS:
            raise FaultPlanError(
                f"method: {self.method!r} is not one of {', '.join(sorted(_METHODS))}"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise FaultPlanError(f"probability: must be in [0, 1], got {self.probability!r}")
        if self.count is not None and self.count < 0:
            raise FaultPlanError(f"count: must be >= 0, got {self.count}")
        if self.after < 0:
            raise FaultPlanError(f"after: must be >= 0, got {self.after}")
        if self.try_again_polls < 0:
            raise FaultPlanError(f"try_again_polls: must be >= 0, got {self.try_again_polls}")
        actions = [
            name
            for name, on in (
                ("status", self.status is not None),
                ("choices", self.choices is not None),
                ("sequence", self.sequence is not None),
                ("try_again_polls", self.try_again_polls > 0),
            )
            if on
        ]
        if len(actions) > 1:
            raise FaultPlanError(f"{' and '.join(actions)}: a rule takes only one of them")
        if not actions and self.latency is None:
            raise FaultPlanError(
                "rule does nothing: set status, choices, sequence, try_again_polls or latency"
            )
        self._check_action()
        self._check_response_options(
            answers_status=bool(actions) and actions[0] != "try_again_polls"
        )
        if self.latency is not None and not isinstance(self.latency, Latency):
            if isinstance(self.latency, bool) or not isinstance(self.latency, float | int):
                raise FaultPlanError(
                    f"latency: give seconds or a Latency distribution, got {self.latency!r}"
                )
            _check_seconds(self.latency, "latency")

    def _check_action(self) -> None:
        if self.status is not None:
            _check_status(self.status, "status")
        if self.choices is not None:
            if not self.choices:
                raise FaultPlanError("choices: give at least one status")
            for status, weight in self.choices.items():
                _check_status(status, "choices")
                if not (math.isfinite(weight) and weight >= 0):
                    raise FaultPlanError(f"choices: weight of {status} must be >= 0, got {weight}")
            if sum(self.choices.values()) <= 0:
                raise FaultPlanError("choices: the weights must not all be 0")
        if self.sequence is not None:
            if not self.sequence:
                raise FaultPlanError("sequence: give at least one entry")
            for item in self.sequence:
                if item != "pass":
                    _check_status(item, "sequence")
            if self.probability != 1.0:
                raise FaultPlanError(
                    "probability: a sequence fixes each request's outcome; drop probability "
                    "(use 'pass' entries instead)"
                )
        if self.try_again_polls > 0:
            if not endpoint_matches(self.endpoint, _RETRIEVE_FUTURE_PATH):
                raise FaultPlanError(
                    f"try_again_polls: applies to retrieve_future only, and endpoint "
                    f"{self.endpoint!r} never matches {_RETRIEVE_FUTURE_PATH}"
                )
        elif self.queue_state != "active" or self.queue_state_reason is not None:
            raise FaultPlanError("queue_state: only meaningful with try_again_polls")

    def _check_response_options(self, *, answers_status: bool) -> None:
        options = [
            name
            for name, on in (
                ("retry_after", self.retry_after is not None),
                ("retry_after_ms", self.retry_after_ms is not None),
                ("should_retry", self.should_retry is not None),
                ("empty_body", self.empty_body),
                ("body", self.body is not None),
            )
            if on
        ]
        if options and not answers_status:
            raise FaultPlanError(
                f"{options[0]}: only meaningful on a status fault (status, choices or sequence)"
            )
        if isinstance(self.retry_after, str):
            if not self.retry_after or any(c in self.retry_after for c in "\r\n"):
                raise FaultPlanError("retry_after: a header value must be non-empty, one line")
            if not self.retry_after.isascii():
                raise FaultPlanError(f"retry_after: {self.retry_after!r} is not ASCII")
        elif self.retry_after is not None:
            _check_seconds(self.retry_after, "retry_after")
        if self.retry_after_ms is not None:
            _check_seconds(self.retry_after_ms, "retry_after_ms")
        if self.empty_body and self.body is not None:
            raise FaultPlanError("body: an empty_body fault has no body; drop one of them")
        if self.body is not None:
            try:
                msgspec.json.encode(self.body)
            except (TypeError, ValueError) as exc:
                raise FaultPlanError(f"body: not JSON-encodable ({exc})") from exc

    def matches(self, method: str, path: str) -> bool:
        """Return whether this rule applies to a request (before counting or rolling)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.try_again_polls > 0 and path != _RETRIEVE_FUTURE_PATH:
            return False
        return endpoint_matches(self.endpoint, path)


class ConnectionSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Connection-level faults for :class:`~tinker_actors.local.FaultProxy` (probabilities).

    ``seed`` defaults to the plan's seed.
    """

    reset: float = 0.0
    close: float = 0.0
    stall: float = 0.0
    stall_seconds: float = 60.0
    delay_seconds: float = 0.0
    seed: int | None = None
    #: the response is lost after the server applied the request (see FaultProxy)
    drop_response: float = 0.0

    def __post_init__(self) -> None:
        try:
            self.to_connection_faults(0)
        except ValueError as exc:
            raise FaultPlanError(str(exc)) from exc

    def to_connection_faults(self, default_seed: int) -> ConnectionFaults:
        """Build the proxy's :class:`ConnectionFaults`, using ``default_seed`` unless seeded."""
        return ConnectionFaults(
            reset=self.reset,
            close=self.close,
            stall=self.stall,
            stall_seconds=self.stall_seconds,
            delay_seconds=self.delay_seconds,
            seed=self.seed if self.seed is not None else default_seed,
            drop_response=self.drop_response,
        )


def _plan_error(exc: msgspec.MsgspecError, source: str) -> FaultPlanError:
    """Turn msgspec's "<msg> - at `$.rules[0].x`" into "invalid fault plan at rules[0].x: msg"."""
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        return FaultPlanError(f"invalid fault plan ({source}): {text}")
    location = where.rstrip("`").removeprefix("$").removeprefix(".") or "top level"
    return FaultPlanError(f"invalid fault plan ({source}) at {location}: {message}")


class FaultPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A seeded, ordered list of fault rules plus optional connection-level faults."""

    seed: int = 0
    rules: tuple[FaultRule, ...] = ()
    connection: ConnectionSection | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "dict") -> FaultPlan:
        """Build a plan from plain data (as parsed from JSON or TOML)."""
        try:
            return msgspec.convert(data, cls, str_keys=True)
        except msgspec.ValidationError as exc:
            raise _plan_error(exc, source) from None

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "JSON") -> FaultPlan:
        """Build a plan from a JSON document."""
        try:
            return msgspec.json.decode(text, type=cls)
        except msgspec.MsgspecError as exc:
            raise _plan_error(exc, source) from None

    @classmethod
    def from_toml(cls, text: str, *, source: str = "TOML") -> FaultPlan:
        """Build a plan from a TOML document (``[[rules]]`` tables, optional ``[connection]``)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FaultPlanError(f"invalid fault plan ({source}): {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> FaultPlan:
        """Load a plan from a ``.json`` or ``.toml`` file."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise FaultPlanError(f"fault plan {path}: use a .json or .toml file, not {suffix!r}")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FaultPlanError(f"cannot read fault plan {path}: {exc}") from exc
        if suffix == ".json":
            return cls.from_json(text, source=str(path))
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_flags(cls, flags: Sequence[str], *, seed: int | None = None) -> FaultPlan:
        """Build a plan from ``--fault`` values (syntax in docs/local-server.md).

        Items may be bare specs (``"asample:429@0.2"``) or argv-style (``"--fault", spec`` or
        ``"--fault=spec"``).
        """
        from tinker_actors.local._fault_flags import plan_from_flags

        return plan_from_flags(flags, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as plain data that :meth:`from_dict` turns back into an equal plan."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data

    def connection_faults(self) -> ConnectionFaults | None:
        """Return the proxy's :class:`ConnectionFaults`, or None when the plan has none."""
        if self.connection is None:
            return None
        return self.connection.to_connection_faults(self.seed)
