"""Execute a fault plan: seeded per-request decisions, counters, and the ASGI middleware.

:class:`FaultEngine` turns a :class:`~tinker_actors.local.FaultPlan` into one
:class:`FaultDecision` per request (delay first? answer in the server's place?) and counts
everything it injects. :class:`FaultInjector` is a pure ASGI middleware that performs those
decisions in front of the local server's app, under trio:

* HTTP requests are decided on arrival; other scopes (``lifespan``, ``websocket``) pass through;
* the delay is a ``trio.sleep`` (so tests on a ``MockClock`` see exactly the planned latency);
* a status fault is answered with a JSON body (``content-type: application/json``) or, with
  ``empty_body``, nothing at all and ``content-length: 0``, plus the ``retry-after``,
  ``retry-after-ms`` and ``x-should-retry`` headers the rule asks for and
  ``x-injected-fault: rule=<index>``;
* for ``retrieve_future`` under a ``try_again`` rule the body is read to find the
  ``request_id`` and replayed, byte for byte, to the app when the request passes;
* an injected refusal with a body (400, 404, 422) stands for the server refusing what it read,
  so the body is read and handed to ``on_refused`` before the answer: the local server then
  consumes a training request's ``seq_id`` as a real refusal does (:mod:`._refusals`), and the
  model's next request is not left waiting behind a hole.

Example::

    app = FaultInjector(server_app, FaultPlan.from_flags(["*:429|503|408@0.2,retry_after=1"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=url) as c:
        ...
    app.statistics().as_dict()  # {"requests": ..., "replaced": ..., "by_kind": {...}, ...}
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from tinker_actors.local._faults import FaultPlan, FaultRule, Latency

__all__ = [
    "FaultDecision",
    "FaultEngine",
    "FaultInjector",
    "FaultStatistics",
    "InjectedResponse",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Told of an injected refusal: the request's scope, its body and the injected status.
OnRefused = Callable[[Scope, bytes, int], None]
#: Injected statuses that stand for the server refusing a request it read.
_REFUSALS = frozenset({400, 404, 422})

# try_again answers are remembered per request_id; bound the memory of a long-running server
_MAX_TRACKED_FUTURES = 65536


@dataclass(frozen=True, slots=True)
class InjectedResponse:
    """A response the injector sends in the server's place."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do with one request.

    Attributes:
        delay: seconds to sleep first (the sum of every firing rule's latency).
        response: the answer to send instead of calling the app, or None to pass through.
        kind: ``"pass"``, ``"try_again"``, the status as text (``"429"``), or ``"400_empty"``
            for an empty-body status.
        rule: index of the rule that answered, or None when the request passed.
        latency_rules: indices of the rules whose latency went into ``delay``.
    """

    delay: float = 0.0
    response: InjectedResponse | None = None
    kind: str = "pass"
    rule: int | None = None
    latency_rules: tuple[int, ...] = ()


@dataclass(frozen=True)
class FaultStatistics:
    """A snapshot of the engine's counters since the plan was set or the counters reset.

    ``requests == passed + replaced``; ``by_kind`` counts ``pass``, ``try_again``, ``latency``
    and each injected status (``"429"``, ``"400_empty"``, ...); ``by_rule`` counts firings per
    rule index (a status rule with latency fires once).
    """

    requests: int = 0
    passed: int = 0
    replaced: int = 0
    delayed: int = 0
    by_kind: Mapping[str, int] = field(default_factory=dict)
    by_rule: Mapping[int, int] = field(default_factory=dict)

    @property
    def injected(self) -> int:
        """Faults injected: replaced responses plus latency applications."""
        return self.replaced + self.delayed

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as plain data (what a control endpoint would serve)."""
        return {
            "requests": self.requests,
            "passed": self.passed,
            "replaced": self.replaced,
            "delayed": self.delayed,
            "injected": self.injected,
            "by_kind": dict(self.by_kind),
            "by_rule": dict(self.by_rule),
        }


@dataclass
class _RuleState:
    index: int
    rule: FaultRule
    seen: int = 0  # matching requests (try_again: distinct futures) that reached the rule
    fired: int = 0
    held: int = 0  # try_again: futures selected
    # try_again: request_id -> try_again answers given so far, or -1 when not selected
    futures: OrderedDict[str, int] = field(default_factory=OrderedDict)


def _header_number(value: float) -> bytes:
    return (str(int(value)) if float(value).is_integer() else repr(float(value))).encode()


class FaultEngine:
    """Execute a :class:`FaultPlan`: decide each request, count what was injected.

    Decisions are synchronous, so under trio each is atomic; one ``random.Random(plan.seed)``
    feeds every draw, in rule order, only when a draw is needed.
    """

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.set_plan(plan if plan is not None else FaultPlan())

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self._plan

    def set_plan(self, plan: FaultPlan) -> FaultStatistics:
        """Replace the plan: reseed, restart every rule, zero the counters.

        Returns:
            The final counters of the plan being replaced.
        """
        if not isinstance(plan, FaultPlan):
            raise TypeError(f"set_plan expects a FaultPlan, got {type(plan).__name__}")
        previous = self.statistics() if hasattr(self, "_plan") else FaultStatistics()
        self._plan = plan
        self._rng = random.Random(plan.seed)
        self._rules = [_RuleState(i, rule) for i, rule in enumerate(plan.rules)]
        self._body_paths: dict[tuple[str, str], bool] = {}
        self.reset_counters()
        return previous

    def reset_counters(self) -> None:
        """Zero the counters (rule progress, ``count`` and ``after`` state are kept)."""
        self._requests = self._passed = self._replaced = self._delayed = 0
        self._by_kind: Counter[str] = Counter()
        self._by_rule = dict.fromkeys(range(len(self._rules)), 0)

    def statistics(self) -> FaultStatistics:
        """Return a snapshot of the counters."""
        return FaultStatistics(
            requests=self._requests,
            passed=self._passed,
            replaced=self._replaced,
            delayed=self._delayed,
            by_kind=dict(self._by_kind),
            by_rule=dict(self._by_rule),
        )

    def needs_request_id(self, method: str, path: str) -> bool:
        """Return whether deciding this request needs its body's ``request_id`` (try_again)."""
        key = (method, path)
        cached = self._body_paths.get(key)
        if cached is None:
            cached = any(
                s.rule.try_again_polls > 0 and s.rule.matches(method, path) for s in self._rules
            )
            if len(self._body_paths) < 1024:  # paths with ids are unbounded; cache a few
                self._body_paths[key] = cached
        return cached

    def decide(self, method: str, path: str, request_id: str | None = None) -> FaultDecision:
        """Decide one request and count the outcome.

        Args:
            method: the HTTP method.
            path: the request path, e.g. ``/api/v1/asample``.
            request_id: for ``retrieve_future``, the body's ``request_id`` (try_again rules
                skip requests without one).
        """
        self._requests += 1
        delay = 0.0
        latency_rules: list[int] = []
        for state in self._rules:
            rule = state.rule
            if not rule.matches(method, path):
                continue
            if rule.try_again_polls > 0:
                if request_id is None or not self._step_try_again(state, request_id):
                    continue
                status: int | None = None
            else:
                fired, status = self._step(state)
                if not fired:
                    continue
            self._by_rule[state.index] += 1
            if rule.latency is not None:
                delay += self._sample(rule.latency)
                latency_rules.append(state.index)
                self._delayed += 1
                self._by_kind["latency"] += 1
            if status is None and rule.try_again_polls == 0:
                continue  # latency-only: keep evaluating so latency composes with faults
            if status is None:
                response, kind = self._try_again(rule, request_id or ""), "try_again"
            else:
                response = self._status_response(state, status)
                kind = f"{status}_empty" if rule.empty_body else str(status)
            self._replaced += 1
            self._by_kind[kind] += 1
            return FaultDecision(delay, response, kind, state.index, tuple(latency_rules))
        self._passed += 1
        self._by_kind["pass"] += 1
        return FaultDecision(delay, None, "pass", None, tuple(latency_rules))

    def _sample(self, latency: float | Latency) -> float:
        if isinstance(latency, Latency):
            return latency.sample(self._rng)
        return float(latency)

    def _step(self, state: _RuleState) -> tuple[bool, int | None]:
        """Advance a non-try_again rule by one matching request; return (fired, status)."""
        rule = state.rule
        position = state.seen
        state.seen += 1
        if position < rule.after or (rule.count is not None and state.fired >= rule.count):
            return False, None
        if rule.sequence is not None:
            offset = position - rule.after
            item = rule.sequence[offset] if offset < len(rule.sequence) else "pass"
            if item == "pass":
                return False, None
            state.fired += 1
            return True, item
        if rule.probability < 1.0 and self._rng.random() >= rule.probability:
            return False, None
        state.fired += 1
        if rule.choices is not None:
            codes = list(rule.choices)
            return True, self._rng.choices(codes, weights=[rule.choices[c] for c in codes])[0]
        return True, rule.status

    def _step_try_again(self, state: _RuleState, request_id: str) -> bool:
        """Advance a try_again rule by one poll; ``after``/``count``/``probability`` pick futures."""
        rule = state.rule
        polls = state.futures.get(request_id)
        if polls is None:
            position = state.seen
            state.seen += 1
            selected = (
                position >= rule.after
                and (rule.count is None or state.held < rule.count)
                and (rule.probability >= 1.0 or self._rng.random() < rule.probability)
            )
            polls = 0 if selected else -1
            state.held += selected
            state.futures[request_id] = polls
            if len(state.futures) > _MAX_TRACKED_FUTURES:
                state.futures.popitem(last=False)
        if polls < 0 or polls >= rule.try_again_polls:
            return False
        state.futures[request_id] = polls + 1
        state.fired += 1
        return True

    @staticmethod
    def _try_again(rule: FaultRule, request_id: str) -> InjectedResponse:
        payload: dict[str, str] = {
            "type": "try_again",
            "request_id": request_id,
            "queue_state": rule.queue_state,
        }
        if rule.queue_state_reason is not None:
            payload["queue_state_reason"] = rule.queue_state_reason
        body = msgspec.json.encode(payload)
        headers = (
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        )
        return InjectedResponse(200, headers, body)

    @staticmethod
    def _status_response(state: _RuleState, status: int) -> InjectedResponse:
        rule = state.rule
        headers: list[tuple[bytes, bytes]] = []
        if rule.empty_body:
            body = b""
        else:
            payload = rule.body
            if payload is None:
                payload = {"detail": f"injected fault: {status} by rule {state.index}"}
            body = msgspec.json.encode(payload)
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        if isinstance(rule.retry_after, str):
            headers.append((b"retry-after", rule.retry_after.encode("ascii")))
        elif rule.retry_after is not None:
            headers.append((b"retry-after", _header_number(rule.retry_after)))
        if rule.retry_after_ms is not None:
            headers.append((b"retry-after-ms", _header_number(rule.retry_after_ms)))
        if rule.should_retry is not None:
            headers.append((b"x-should-retry", b"true" if rule.should_retry else b"false"))
        headers.append((b"x-injected-fault", f"rule={state.index}".encode()))
        return InjectedResponse(status, tuple(headers), body)


class _RequestIdBody(msgspec.Struct):
    request_id: str


_request_id_decoder = msgspec.json.Decoder(_RequestIdBody)


def _request_id(body: bytes) -> str | None:
    try:
        return _request_id_decoder.decode(body).request_id
    except msgspec.DecodeError:
        return None  # not JSON or no request_id: try_again rules skip the request


class FaultInjector:
    """Wrap an ASGI app and inject the faults a :class:`FaultPlan` describes.

    Args:
        app: the ASGI app to protect (the local server's starlette app).
        plan: the plan, or a :class:`FaultEngine` to share; None injects nothing.
        on_refused: called with an injected refusal's scope, body and status (see above).
    """

    def __init__(
        self,
        app: ASGIApp,
        plan: FaultPlan | FaultEngine | None = None,
        *,
        on_refused: OnRefused | None = None,
    ) -> None:
        self.app = app
        self.engine = plan if isinstance(plan, FaultEngine) else FaultEngine(plan)
        self.on_refused = on_refused

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self.engine.plan

    def set_plan(self, plan: FaultPlan) -> FaultStatistics:
        """Replace the plan (reseeds, zeroes counters); return the old plan's final counters."""
        return self.engine.set_plan(plan)

    def statistics(self) -> FaultStatistics:
        """Return a snapshot of what was injected."""
        return self.engine.statistics()

    def reset_counters(self) -> None:
        """Zero the counters."""
        self.engine.reset_counters()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        request_id = None
        body: bytes | None = None
        if self.engine.needs_request_id(method, path):
            body = await _read_body(receive)
            if body is None:
                return  # the client went away before sending its body: nobody to answer
            request_id = _request_id(body)
            receive = _replay(body, receive)
        decision = self.engine.decide(method, path, request_id)
        if decision.delay > 0:
            await trio.sleep(decision.delay)
        if decision.response is None:
            await self.app(scope, receive, send)
            return
        response = decision.response
        if self.on_refused is not None and response.status in _REFUSALS and response.body:
            if body is None:
                body = await _read_body(receive)
            if body is not None:
                self.on_refused(scope, body, response.status)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": list(response.headers),
            }
        )
        await send({"type": "http.response.body", "body": response.body, "more_body": False})


async def _read_body(receive: Receive) -> bytes | None:
    """Return the whole request body, or None when the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive() that yields the already-read body once, then defers to ``receive``."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
