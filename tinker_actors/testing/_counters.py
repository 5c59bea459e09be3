"""The local server's counters, read as facts a test can assert: each step applied once, in order.

The server counts, per training model, every operation it *applied* (ran against the model,
not just received: retries of one request under the same idempotency key, or of the same
``seq_id`` with the same content, are deduplicated and not applied again), with its ``seq_id``
and its kind, in the order they were applied. A training loop that is correct under faults
leaves a model whose applied operations are exactly its steps, each once, in order; a loop
that resubmits a step after an error (a new request, so the server cannot know it is a repeat)
leaves an extra ``forward_backward`` that :meth:`ServerCounters.assert_steps_applied_once`
reports, naming the step::

    counters = server.counters()
    counters.assert_steps_applied_once(steps=10)                 # forward_backward, optim_step
    counters.assert_steps_applied_once(steps=10, step=("forward_backward",))
    assert counters.applied("sample") == 20
    assert counters.injected("503") > 0                          # the faults really happened
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_STEP", "ModelCounters", "ServerCounters", "StepOrderError", "kind_name"]

#: The operations of one supervised step, in order.
DEFAULT_STEP: Final = ("forward_backward", "optim_step")


class StepOrderError(AssertionError):
    """A model's applied operations are not the expected steps, each once and in order."""


def kind_name(kind: str) -> str:
    """The server's name of an operation kind: ``forward_backward`` -> ``ForwardBackward``."""
    if "_" not in kind and kind[:1].isupper():
        return kind
    return "".join(part.capitalize() for part in kind.split("_"))


@dataclass(frozen=True)
class ModelCounters:
    """What one training model received and applied, in the order applied."""

    model_id: str
    live: bool
    received: int
    applied: int
    deduplicated: int
    failed: int
    applied_seq_ids: tuple[int, ...]
    applied_kinds: tuple[str, ...]

    def count(self, kind: str) -> int:
        """How many operations of ``kind`` (``forward_backward`` or ``ForwardBackward``) applied."""
        name = kind_name(kind)
        return sum(1 for k in self.applied_kinds if k == name)

    def assert_steps_applied_once(self, steps: int, *, step: Sequence[str] = DEFAULT_STEP) -> None:
        """Check that exactly ``steps`` steps were applied, each once, in order, none failed.

        Args:
            steps: how many steps the loop ran.
            step: the operation kinds of one step, in order; other kinds (create, save,
                load) are ignored.

        Raises:
            StepOrderError: which step differs and how (a repeat, a loss, an inversion).
        """
        kinds = [kind_name(k) for k in step]
        if not kinds:
            raise ValueError("step must name at least one operation kind")
        seq = list(self.applied_seq_ids)
        if seq != sorted(set(seq)):
            raise StepOrderError(
                f"model {self.model_id}: seq_ids were applied out of order or twice: {seq}"
            )
        if self.failed:
            raise StepOrderError(
                f"model {self.model_id}: {self.failed} operation(s) failed on the server"
            )
        ops = [k for k in self.applied_kinds if k in kinds]
        expected = kinds * steps
        if ops == expected:
            return
        if len(ops) > len(expected) and ops[: len(expected)] == expected:
            extra = (len(ops) - len(expected)) / len(kinds)
            raise StepOrderError(
                f"model {self.model_id}: the loop ran {steps} step(s) of {' + '.join(kinds)}, "
                f"but the server applied {extra:g} more: a step was applied more than once (a "
                f"loop that resubmits after an error?). Applied kinds: {list(self.applied_kinds)}"
            )
        first = next(
            (i for i, (a, b) in enumerate(zip(ops, expected, strict=False)) if a != b),
            min(len(ops), len(expected)),
        )
        at = first // len(kinds)
        got = ops[at * len(kinds) : (at + 1) * len(kinds)]
        counts = ", ".join(f"{k} x{ops.count(k)}" for k in dict.fromkeys(kinds))
        if len(ops) > len(expected) or (len(ops) == len(expected) and got.count(got[0]) > 1):
            why = "a step was applied more than once (a loop that resubmits after an error?)"
        elif len(ops) < len(expected):
            why = "a step is missing (lost, or the loop stopped early)"
        else:
            why = "operations were applied out of order"
        raise StepOrderError(
            f"model {self.model_id}: expected {steps} step(s) of {' + '.join(kinds)}, each once "
            f"and in order; the server applied {counts}. At step {at}: expected "
            f"{kinds}, applied {got}: {why}. Applied kinds: {list(self.applied_kinds)}"
        )


@dataclass(frozen=True)
class ServerCounters:
    """A snapshot of ``GET /_local/counters``: totals, per-model order, injected faults."""

    totals: Mapping[str, int]
    models: Mapping[str, ModelCounters]
    faults: Mapping[str, Any]
    connection_faults: Mapping[str, int] | None = None
    lost_answers: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerCounters:
        """Read the counters' JSON form (``server.counters()`` or ``/_local/counters``)."""
        models = {
            model_id: ModelCounters(
                model_id=model_id,
                live=bool(m.get("live")),
                received=int(m.get("received", 0)),
                applied=int(m.get("applied", 0)),
                deduplicated=int(m.get("deduplicated", 0)),
                failed=int(m.get("failed", 0)),
                applied_seq_ids=tuple(int(s) for s in m.get("applied_seq_ids", ())),
                applied_kinds=tuple(str(k) for k in m.get("applied_kinds", ())),
            )
            for model_id, m in dict(data.get("models", {})).items()
        }
        return cls(
            totals={str(k): int(v) for k, v in dict(data.get("totals", {})).items()},
            models=models,
            faults=dict(data.get("faults", {})),
            connection_faults=data.get("connection_faults"),
            lost_answers=dict(data.get("lost_answers", {})),
            raw=dict(data),
        )

    def applied(self, kind: str) -> int:
        """How many operations of ``kind`` the server applied, over every model and sampler."""
        return self.totals.get(f"applied:{kind_name(kind)}", 0)

    def received(self, kind: str) -> int:
        """How many requests of ``kind`` the server received (retries included)."""
        return self.totals.get(f"received:{kind_name(kind)}", 0)

    def injected(self, kind: str | None = None) -> int:
        """Faults injected: all of them, or one outcome (``"429"``, ``"503"``, ``"latency"``).

        Connection faults count too: ``"reset"``, ``"closed"``, ``"stalled"``.
        """
        if kind is None:
            total = int(self.faults.get("replaced", 0)) + int(self.faults.get("delayed", 0))
            return total + int((self.connection_faults or {}).get("injected", 0))
        if self.connection_faults and kind in ("reset", "closed", "stalled"):
            return int(self.connection_faults.get(kind, 0))
        return int(dict(self.faults.get("by_kind", {})).get(str(kind), 0))

    def lost(self, kind: str | None = None) -> int:
        """Answers lost after the work: all of them, or those of one status (``"502"``)."""
        if kind is None:
            return int(self.lost_answers.get("replaced", 0))
        return int(dict(self.lost_answers.get("by_kind", {})).get(str(kind), 0))

    def model(
        self, model_id: str | None = None, *, step: Sequence[str] = DEFAULT_STEP
    ) -> ModelCounters:
        """Return one model's counters: ``model_id``'s, or the only one that applied steps.

        Raises:
            StepOrderError: no model (or more than one, without ``model_id``) applied steps.
        """
        if model_id is not None:
            if model_id not in self.models:
                raise StepOrderError(
                    f"the server has no counters for model {model_id!r}; it knows "
                    f"{sorted(self.models)}"
                )
            return self.models[model_id]
        kinds = {kind_name(k) for k in step}
        training = [m for m in self.models.values() if kinds & set(m.applied_kinds)]
        if len(training) != 1:
            found = "no model" if not training else f"{len(training)} models"
            raise StepOrderError(
                f"{found} applied {' / '.join(sorted(kinds))} operations; pass model_id= "
                f"(the training client's model_id) to choose one of {sorted(self.models)}"
            )
        return training[0]

    def assert_steps_applied_once(
        self,
        steps: int,
        *,
        model_id: str | None = None,
        step: Sequence[str] = DEFAULT_STEP,
    ) -> ModelCounters:
        """Check one model applied exactly ``steps`` steps, each once, in order; return it.

        See :meth:`ModelCounters.assert_steps_applied_once`.
        """
        model = self.model(model_id, step=step)
        model.assert_steps_applied_once(steps, step=step)
        return model
