"""The chaos harness: a seeded fault plan, a mixed workload through ``tinker_actors.open()``,
and the invariants read off the local server's counters.

A :class:`ChaosPlan` is plain data (JSON round-trips), so a failing plan replays exactly::

    python tests/chaos/chaos_support.py '<the plan JSON printed by the failing test>'

Layers of faults, all on trio's virtual clock and in process (no sockets):

* status faults: the local server's own :class:`~tinker_actors.local.FaultInjector` rules
  (429 with Retry-After, 5xx, 408, 409 on retried saves, 402, 410, empty 400s, ``try_again``);
* connection faults: :class:`ChaosTransport`, an httpx transport in front of the in-process
  app, which resets a request before the server sees it, closes without an answer, stalls
  until the client's read timeout fires, or lets the server apply the request and then loses
  the answer (the fault that tests idempotency) with seeded probabilities;
* a server restart on the same ``data_dir``: every request in flight is dropped, the first
  server closes and a second one opens on the same directory (sessions, runs and checkpoints
  survive; loaded models and pending futures do not).

The workload (:func:`run_workload`) trains a LoRA model with pipelined forward_backward +
optim_step, saves and loads state, refreshes a sampler from the trained weights and samples in
bursts from two samplers, concurrently. Every operation's outcome is recorded; the
invariants (:func:`check_invariants`) are:

* every operation completes or raises a documented error type (never anything else, never a
  hang: the whole run is under ``trio.fail_after``);
* per training model, the server applied each operation at most once and in ``seq_id`` order;
  one that completed was applied exactly once, as the kind the client asked for;
* plans without lossy faults (410 on futures, restart) complete every operation;
* after ``open()`` exits, no trio task and no file descriptor is left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import trio
import trio.testing

import tinker_actors as ta
from tinker_actors.actors._completions import CompletionPollingError
from tinker_actors.actors._poll import FutureExpiredError
from tinker_actors.clients._training_actor import TrainingOrderBrokenError
from tinker_actors.errors import APIError, RequestFailedError
from tinker_actors.local import FaultPlan, LocalServer, open_local_server
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir
from tinker_actors.types import (
    AdamParams,
    ClientConfigResponse,
    Datum,
    ModelInput,
    SamplingParams,
)

__all__ = [
    "DOCUMENTED_ERRORS",
    "ChaosPlan",
    "ChaosTransport",
    "Outcome",
    "check_invariants",
    "fd_count",
    "replay",
    "run_plan",
    "run_workload",
    "task_count",
]

KEY = "tml-chaos-0123456789"
BASE = "http://chaos.local"
STEPS = 3
SAMPLES = 5
#: Virtual seconds the whole workload may take (the SDK's own budgets are far inside it:
#: retries give up within minutes, stuck detection after 7,200 s).
BUDGET = 30_000.0

#: What an operation may raise under faults (docs/sdk.md, errors.py): API errors after retries,
#: a future that failed or expired on the server, an order broken by an unsendable seq_id.
DOCUMENTED_ERRORS: tuple[type[BaseException], ...] = (
    APIError,
    RequestFailedError,
    FutureExpiredError,
    CompletionPollingError,
    TrainingOrderBrokenError,
)


@dataclasses.dataclass(frozen=True)
class ChaosPlan:
    """One chaos run: fault rules, connection faults, a restart point, all seeded.

    Attributes:
        seed: seeds the server's fault engine and the transport's connection faults.
        rules: FaultPlan rules as plain data (docs/local-server.md, "Rule fields").
        reset / close / stall / drop_response: per-request probabilities of connection faults.
        stall_seconds: how long a stall lasts before the connection closes.
        restart_after: restart the server after this many training operations settled
            (None: no restart).
        billing_window: the server's ``billing_exception_max_pause_duration_sec`` flag (None:
            its default, 3600 s). A client pauses through 402s for that long from the first
            one of an incident, across all endpoints (as the official client does).
    """

    seed: int = 0
    rules: tuple[dict[str, Any], ...] = ()
    reset: float = 0.0
    close: float = 0.0
    stall: float = 0.0
    drop_response: float = 0.0
    stall_seconds: float = 90.0
    restart_after: int | None = None
    billing_window: int | None = None

    @property
    def lossy(self) -> bool:
        """Whether some operations may legitimately fail (their result is gone)."""
        return self.restart_after is not None or any(_lossy_rule(r) for r in self.rules)

    def fault_plan(self, *, lossy: bool = True) -> FaultPlan:
        """The server's plan; without ``lossy``, the rules whose failures are final left out."""
        rules = [dict(r) for r in self.rules if lossy or not _lossy_rule(r)]
        return FaultPlan.from_dict({"seed": self.seed, "rules": rules})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ChaosPlan:
        data = json.loads(text)
        data["rules"] = tuple(data.get("rules", ()))
        return cls(**data)


def _lossy_rule(rule: dict[str, Any]) -> bool:
    """A 410 (an expired future) or a 402 without end fails operations for good, by design."""
    return rule.get("status") == 410 or (rule.get("status") == 402 and "count" not in rule)


# -- connection faults and restarts, in process --------------------------------------------------


class ServerDown(Exception):
    """Raised inside a request the restart dropped."""


class ChaosTransport(httpx.AsyncBaseTransport):
    """An httpx transport to an in-process ASGI app that injects connection faults.

    Decisions come from one ``random.Random(seed)``. ``app`` is looked up per request, so a
    restart can swap the server; :meth:`drop_all` cancels every request in flight (each gets
    ``httpx.ReadError``, as when the server process dies) and refuses new ones with
    ``httpx.ConnectError`` until :meth:`bring_up`.
    """

    def __init__(self, plan: ChaosPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed ^ 0x5EED)
        self.app: Any = None
        self.down = False
        self.in_flight: set[trio.CancelScope] = set()
        self.stats: dict[str, int] = {
            "requests": 0,
            "reset": 0,
            "closed": 0,
            "stalled": 0,
            "dropped": 0,
            "refused": 0,
            "cut": 0,
        }

    def drop_all(self) -> None:
        self.down = True
        for scope in self.in_flight:
            scope.cancel()

    def bring_up(self, app: Any) -> None:
        self.app = app
        self.down = False

    def _pick(self, path: str) -> str | None:
        if path.startswith("/_local/"):
            return None
        p = self.plan
        roll = self.rng.random()
        for name, chance in (
            ("reset", p.reset),
            ("close", p.close),
            ("stall", p.stall),
            ("drop_response", p.drop_response),
        ):
            if roll < chance:
                return name
            roll -= chance
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.stats["requests"] += 1
        if self.down or self.app is None:
            self.stats["refused"] += 1
            raise httpx.ConnectError("connection refused (server restarting)", request=request)
        fault = self._pick(request.url.path)
        if fault == "reset":
            self.stats["reset"] += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        if fault == "close":
            self.stats["closed"] += 1
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if fault == "stall":
            self.stats["stalled"] += 1
            read = (request.extensions.get("timeout") or {}).get("read")
            if read is not None and read < self.plan.stall_seconds:
                await trio.sleep(read)
                raise httpx.ReadTimeout("read timed out (stalled server)", request=request)
            await trio.sleep(self.plan.stall_seconds)
            raise httpx.RemoteProtocolError("stalled server closed the connection", request=request)
        inner = httpx.ASGITransport(app=self.app)
        with trio.CancelScope() as scope:
            self.in_flight.add(scope)
            try:
                response = await inner.handle_async_request(request)
                body = await response.aread()
            finally:
                self.in_flight.discard(scope)
        if scope.cancelled_caught:
            self.stats["cut"] += 1
            raise httpx.ReadError("connection dropped (server went away)", request=request)
        if fault == "drop_response":  # the server applied it; the answer is lost
            self.stats["dropped"] += 1
            raise httpx.ReadError("connection reset by peer (answer lost)", request=request)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            request=request,
            extensions=response.extensions,
        )


class Servers:
    """The local server(s) of one run: one, or two on the same data dir around a restart."""

    def __init__(self, plan: ChaosPlan, data_dir: Path, transport: ChaosTransport) -> None:
        self.plan = plan
        self.data_dir = data_dir
        self.transport = transport
        self.current: LocalServer | None = None
        self.history: list[dict[str, Any]] = []  # counters of each stopped server
        self.restart_now = trio.Event()
        self.restarted = trio.Event()
        self.stop = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the servers: open one, restart it once if asked, close it when told to stop."""
        generation = 0
        while True:
            # after the restart only recoverable faults, so the recovery itself must succeed
            faults = self.plan.fault_plan(lossy=generation == 0)
            flags = ClientConfigResponse()
            if self.plan.billing_window is not None:
                flags = ClientConfigResponse(
                    billing_exception_max_pause_duration_sec=self.plan.billing_window
                )
            async with open_local_server(
                data_dir=self.data_dir, faults=faults, client_config=flags
            ) as server:
                # The server builds (or reads) its tokenizer in a worker thread on the first
                # get_info. Under an autojump clock a thread is invisible: virtual time races
                # through heartbeats and retries while it runs (sessions expire, budgets run
                # out). So find it here, blocking the loop: no virtual time passes.
                core = server.engine.core
                spec = lookup_model("local/tiny")
                core._tokenizer_dirs[spec.name] = ensure_model_tokenizer_dir(
                    core.cache_dir / "tokenizers", spec
                )
                self.current = server
                self.transport.bring_up(server.app)
                if generation == 0:
                    task_status.started()
                else:
                    self.restarted.set()
                if generation == 0 and self.plan.restart_after is not None:
                    await self.restart_now.wait()
                else:
                    await self.stop.wait()
                self.transport.drop_all()  # every connection drops, as when the process dies
                self.history.append(server.counters())
                self.current = None
            if self.stop.is_set():
                return
            await trio.sleep(2.0)  # down for a while: new requests are refused
            generation += 1


# -- the workload --------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """One operation: where it ran, what it was, how it ended."""

    label: str
    model: str | None  # the training model's key ("train", "loaded") or None for samples
    kind: str
    index: int | None = None  # the operation's position in its model's order (its seq_id)
    error: BaseException | None = None
    done: bool = False

    def __repr__(self) -> str:
        ended = "ok" if self.done and self.error is None else repr(self.error)
        return f"{self.label}[{self.kind}#{self.index}]={ended}"


def lm_datum(offset: int) -> Datum:
    tokens = [(offset + 3 * i) % 2000 + 4 for i in range(9)]
    inputs: dict[str, Any] = {
        "target_tokens": np.array(tokens[1:], dtype=np.int64),
        "weights": np.ones(len(tokens) - 1, dtype=np.float32),
    }
    return Datum(model_input=ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)


class Workload:
    """Runs the mixed workload and records every operation's outcome."""

    def __init__(self, rt: ta.Runtime, servers: Servers) -> None:
        self.rt = rt
        self.servers = servers
        self.outcomes: list[Outcome] = []
        self.model_ids: dict[str, str] = {}
        self.next_index: dict[str, int] = {}
        self.settled_training = 0
        self.saved_path: str | None = None

    def _new(self, label: str, model: str | None, kind: str) -> Outcome:
        index = None
        if model is not None:
            index = self.next_index.get(model, 0)
            self.next_index[model] = index + 1
        outcome = Outcome(label, model, kind, index)
        self.outcomes.append(outcome)
        return outcome

    async def _settle(self, outcome: Outcome, waiting: Awaitable[Any]) -> Any:
        """Await an operation's end; record it (a cancellation is not an end)."""
        try:
            value = await waiting
        except DOCUMENTED_ERRORS as exc:
            outcome.error, value = exc, None
        outcome.done = True
        if outcome.model is not None:
            self.settled_training += 1
            plan = self.servers.plan
            if plan.restart_after is not None and self.settled_training >= plan.restart_after:
                self.servers.restart_now.set()
        return value

    async def submit(
        self, label: str, model: str, kind: str, call: Callable[[], Awaitable[Any]]
    ) -> tuple[Outcome, Any]:
        """First await: queue the operation; a refusal here settles it at once."""
        outcome = self._new(label, model, kind)
        try:
            future = await call()
        except DOCUMENTED_ERRORS as exc:
            outcome.error = exc
            outcome.done = True
            return outcome, None
        return outcome, future

    async def result(self, outcome: Outcome, future: Any) -> Any:
        if future is None:
            return None
        return await self._settle(outcome, future.result())

    async def train(self) -> None:
        created = self._new("create", "train", "CreateModel")
        tc = await self._settle(
            created, self.rt.create_lora_training_client("local/tiny", rank=4, seed=3)
        )
        if tc is None:
            return
        self.model_ids["train"] = tc.model_id
        pending = []
        for step in range(STEPS):
            pending.append(
                await self.submit(
                    f"fb{step}",
                    "train",
                    "ForwardBackward",
                    lambda s=step: tc.forward_backward(
                        [lm_datum(s), lm_datum(s + 7)], "cross_entropy"
                    ),
                )
            )
            pending.append(
                await self.submit(
                    f"opt{step}",
                    "train",
                    "OptimStep",
                    lambda: tc.optim_step(AdamParams(learning_rate=1e-3)),
                )
            )
        for outcome, future in pending:
            await self.result(outcome, future)
        saved_op, saved_f = await self.submit(
            "save", "train", "SaveWeights", lambda: tc.save_state("chaos-ckpt")
        )
        saved = await self.result(saved_op, saved_f)
        if saved is not None:
            self.saved_path = saved.path
            load_op, load_f = await self.submit(
                "load", "train", "LoadWeights", lambda: tc.load_state(saved.path)
            )
            await self.result(load_op, load_f)
        fb_op, fb_f = await self.submit(
            "fb-after-load",
            "train",
            "ForwardBackward",
            lambda: tc.forward_backward([lm_datum(40)], "cross_entropy"),
        )
        opt_op, opt_f = await self.submit(
            "opt-after-load",
            "train",
            "OptimStep",
            lambda: tc.optim_step(AdamParams(learning_rate=1e-3)),
        )
        await self.result(fb_op, fb_f)
        await self.result(opt_op, opt_f)
        # sampler refresh: new weights, a new sampler, a burst from it
        refresh = self._new("refresh", "train", "SaveWeightsForSampler")
        sampler = await self._settle(refresh, tc.save_weights_and_get_sampling_client())
        if sampler is not None:
            await self.burst("refreshed", sampler)

    async def burst(self, label: str, sampler: Any) -> None:
        params = SamplingParams(max_tokens=3)

        async def one(i: int) -> None:
            outcome = self._new(f"{label}-sample{i}", None, "Sample")
            try:
                future = await sampler.sample(ModelInput.from_ints([4 + i, 5, 6]), 1, params)
            except DOCUMENTED_ERRORS as exc:
                outcome.error, outcome.done = exc, True
                return
            result = await self._settle(outcome, future.result())
            if result is not None:
                assert len(result.sequences) == 1

        async with trio.open_nursery() as nursery:
            for i in range(SAMPLES):
                nursery.start_soon(one, i)

    async def sample_base(self) -> None:
        opened = self._new("base-sampler", None, "CreateSamplingSession")
        sampler = await self._settle(
            opened, self.rt.create_sampling_client(base_model="local/tiny")
        )
        if sampler is not None:
            await self.burst("base", sampler)

    async def run(self) -> None:
        """Train (with saves, a load and a sampler refresh) and sample, concurrently."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.train)
            nursery.start_soon(self.sample_base)

    async def after_restart(self) -> None:
        """After a restart: a new model from the saved checkpoint trains a step and samples."""
        path = self.saved_path
        if path is None:  # nothing was saved before the restart: start a new model
            loaded = self._new("fresh", "loaded", "CreateModel")
            making = self.rt.create_lora_training_client("local/tiny", rank=4)
        else:
            loaded = self._new("from-state", "loaded", "LoadWeights")
            making = self.rt.create_training_client_from_state(path)
        tc = await self._settle(loaded, making)
        assert tc is not None, loaded
        self.model_ids["loaded"] = tc.model_id
        fb_op, fb_f = await self.submit(
            "loaded-fb",
            "loaded",
            "ForwardBackward",
            lambda: tc.forward_backward([lm_datum(50)], "cross_entropy"),
        )
        await self.result(fb_op, fb_f)
        assert fb_op.error is None, fb_op


async def run_workload(rt: ta.Runtime, servers: Servers) -> Workload:
    work = Workload(rt, servers)
    await work.run()
    return work


# -- leaks ---------------------------------------------------------------------------------------


def task_names() -> list[str]:
    """The names of every trio task now alive in this run, the local server's left out.

    The server's tasks (a model's sequencer, a connection's handler) live and end on the
    server's schedule; what must not outlive ``open()`` is the SDK's.
    """

    def walk(task: trio.lowlevel.Task) -> list[str]:
        if task.name.startswith("tinker_actors.local.") or task.name.endswith("Servers.run"):
            return []
        names = [task.name]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                names += walk(child)
        return names

    return sorted(walk(trio.lowlevel.current_root_task()))


def task_count() -> int:
    return len(task_names())


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_fd_count(limit: int, patience: float = 2.0) -> int:
    """The process's open file descriptors, given up to ``patience`` real seconds to fall to
    ``limit``.

    The servers run in this process, and a worker thread of theirs that the run abandoned (a
    stalled request the client gave up on) can still hold a file open for a moment after the
    client is done: seen once in CI as 19 -> 20, never on replay. A leak stays, so waiting
    does not hide one. Real time: under the autojump clock a thread's progress is invisible.
    """
    count = fd_count()
    deadline = time.monotonic() + patience
    while count > limit and time.monotonic() < deadline:
        time.sleep(0.02)
        count = fd_count()
    return count


# -- a run and its invariants --------------------------------------------------------------------


@dataclasses.dataclass
class RunReport:
    plan: ChaosPlan
    outcomes: list[Outcome]
    model_ids: dict[str, str]
    counters: list[dict[str, Any]]  # one per server, in order
    transport: dict[str, int]
    tasks: tuple[list[str], list[str]]
    fds: tuple[int, int]


async def run_plan(plan: ChaosPlan, data_dir: Path) -> RunReport:
    """Run the workload under ``plan``; return what happened (checked by check_invariants).

    Raises:
        AssertionError: the run outlived its budget; the message has the operations still
            pending and where every task was waiting.
    """
    transport = ChaosTransport(plan)
    servers = Servers(plan, data_dir, transport)
    hung: list[str] = []
    work: Workload | None = None

    async def watchdog(budget: trio.CancelScope) -> None:
        await trio.sleep(BUDGET)
        hung.append(dump_tasks())  # before the cancellation unwinds what was stuck
        budget.cancel()

    async with trio.open_nursery() as nursery:
        await nursery.start(servers.run)
        tasks_before, fds_before = task_names(), fd_count()
        try:
            with trio.CancelScope() as budget:
                async with trio.open_nursery() as guard:
                    guard.start_soon(watchdog, budget)
                    async with ta.open(
                        http_transport=transport, base_url=BASE, api_key=KEY, telemetry=False
                    ) as rt:
                        work = Workload(rt, servers)
                        await work.run()
                        if plan.restart_after is not None:
                            servers.restart_now.set()  # the workload may end before the point
                            await servers.restarted.wait()
                            await work.after_restart()
                    guard.cancel_scope.cancel()
        except BaseException as exc:
            if not hung:
                raise
            # what the cancellation raised (ActorExited of a cancelled supervisor...) is only
            # a consequence: report the hang itself
            pending = [o for o in work.outcomes if not o.done] if work is not None else []
            raise AssertionError(hang_report(plan, pending, transport, hung)) from exc
        tasks_after, fds_after = task_names(), settled_fd_count(fds_before)
        servers.stop.set()
    if hung or work is None:
        pending = [o for o in work.outcomes if not o.done] if work is not None else []
        raise AssertionError(hang_report(plan, pending, transport, hung))
    return RunReport(
        plan=plan,
        outcomes=work.outcomes,
        model_ids=work.model_ids,
        counters=servers.history,
        transport=dict(transport.stats),
        tasks=(tasks_before, tasks_after),
        fds=(fds_before, fds_after),
    )


def hang_report(
    plan: ChaosPlan, pending: list[Outcome], transport: ChaosTransport, dumps: list[str]
) -> str:
    return (
        f"the run outlived its budget of {BUDGET:g} virtual seconds\nplan {plan.to_json()}\n"
        f"pending {pending}\ntransport {transport.stats}\ntasks:\n{''.join(dumps)}"
    )


def dump_tasks() -> str:
    """Every trio task, indented by nursery, with the chain of frames it waits in."""

    def frames(coro: Any) -> str:
        out = []
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                name = frame.f_code.co_filename.rsplit("/", 1)[-1]
                out.append(f"{name}:{frame.f_lineno}:{frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return " > ".join(f for f in out if not f.startswith(("_run.py", "_traps.py")))

    def walk(task: trio.lowlevel.Task, depth: int) -> list[str]:
        lines = [f"{'  ' * depth}{task.name}: {frames(task.coro)}\n"]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                lines += walk(child, depth + 1)
        return lines

    return "".join(walk(trio.lowlevel.current_root_task(), 0))


def check_invariants(report: RunReport) -> None:
    """Assert the chaos invariants on one run (see the module docstring)."""
    plan, outcomes = report.plan, report.outcomes
    where = f"plan {plan.to_json()}\noutcomes {outcomes}\ntransport {report.transport}"
    assert all(o.done for o in outcomes), f"an operation never settled\n{where}"
    for o in outcomes:
        if o.error is not None:
            assert isinstance(o.error, DOCUMENTED_ERRORS), f"{o!r}: undocumented error\n{where}"
    if not plan.lossy:
        failed = [o for o in outcomes if o.error is not None]
        assert not failed, f"operations failed under a recoverable plan: {failed}\n{where}"
    # per model: at most once, in order; what completed was applied exactly once, as asked
    for key, model_id in report.model_ids.items():
        applied: list[tuple[int, str]] = []
        for counters in report.counters:
            model = counters["models"].get(model_id)
            if model is not None:
                applied += list(zip(model["applied_seq_ids"], model["applied_kinds"], strict=True))
        seq = [s for s, _ in applied]
        assert seq == sorted(set(seq)), f"{key}: applied twice or out of order: {applied}\n{where}"
        by_seq = dict(applied)
        ops = {o.index: o for o in outcomes if o.model == key}
        for s, kind in applied:
            assert s in ops, f"{key}: seq_id {s} applied but never submitted\n{where}"
            assert ops[s].kind == kind, f"{key}: seq_id {s} applied as {kind}: {ops[s]!r}\n{where}"
        for o in ops.values():
            if o.error is None:
                assert by_seq.get(o.index) == o.kind, f"{o!r} completed, not applied\n{where}"
    samples_ok = sum(1 for o in outcomes if o.kind == "Sample" and o.error is None)
    samples_applied = sum(c["totals"].get("applied:Sample", 0) for c in report.counters)
    assert samples_applied >= samples_ok, where
    if not plan.lossy:
        assert samples_applied == samples_ok == 2 * SAMPLES, f"samples {samples_applied}\n{where}"
    before, after = report.tasks
    left = sorted((Counter(after) - Counter(before)).elements())
    assert not left, f"tasks left after open(): {left}\n{where}"
    before, after = report.fds
    assert after <= before, f"file descriptors left after open(): {before} -> {after}\n{where}"


def replay(plan: ChaosPlan, data_dir: Path) -> RunReport:
    """Run one plan on the virtual clock, check it, and return its report."""
    report = trio.run(run_plan, plan, data_dir, clock=trio.testing.MockClock(autojump_threshold=0))
    check_invariants(report)
    return report


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        done = replay(ChaosPlan.from_json(sys.argv[1]), Path(tmp))
        print(done.outcomes)
        print(done.transport)
