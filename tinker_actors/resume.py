"""A training loop that outlives the loss of its model: checkpoint, and resume from the last one.

Over a week-long run the service may restart (the model is gone: ``NotFoundError``), a request
may fail to submit after every retry (the client refuses what follows:
``TrainingOrderBrokenError``), a future may be forgotten (``FutureExpiredError``), a step may
fail on the server (``RequestFailedError``), or the client's own actor may crash on a bug
(``ActorExited``, whose ``reason`` is the exception). None of these is the loop's fault, and each
leaves the same way out: load the last saved state, optimizer included, into a new training
client and go on from that checkpoint's step. :func:`train_resumably` is that loop::

    async def step(training: TrainingClient, step: int) -> float:
        fb = await training.forward_backward(batch(step), "cross_entropy")
        optim = await training.optim_step(AdamParams(learning_rate=1e-4))
        output, _ = await fb.result(), await optim.result()
        return output.metrics["loss:sum"]

    async with tinker_actors.open() as runtime:
        training = await runtime.create_lora_training_client(base_model=..., rank=32)
        run = await train_resumably(runtime, training, step, steps=10_000,
                                    policy=ResumePolicy(checkpoint_every=100))
        sampler = await run.training.save_weights_and_get_sampling_client()

The contract with ``step_fn``: step ``k`` does one whole step of training (it waits for its
results) and depends only on ``k`` (the batch is the ``k``-th), so running it again after a
resume repeats exactly what the lost model had done since the checkpoint. Steps the lost model
ran after the checkpoint are run again on the new one; every step of the final model ran once.
Its return value is kept in :attr:`ResumableRun.results`, one per step of the final model.

State is saved as ``checkpoint_name.format(step=k)`` after every ``checkpoint_every`` steps and
after the last; one is saved before the first step too, so there is always a state to go back
to. A process that died can start again from its last checkpoint: create the client with
``create_training_client_from_state_with_optimizer(path)`` and pass ``start_step``.

What is not resumed: bad input (``InvalidInputError``: running it again fails again),
authentication, permission and billing refusals, a lost session (``SessionLostError``: the
runtime cannot make clients any more; open a new one and start from the last checkpoint),
and any exception of ``step_fn``'s own. Those propagate at once, with the run's progress in
the exception's notes. ``max_attempts`` resumes in a row without a new checkpoint raise
:class:`ResumeGaveUpError`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import trio

from tinker_actors.actors import FutureExpiredError
from tinker_actors.backoff import exponential_delay
from tinker_actors.clients import TrainingOrderBrokenError
from tinker_actors.errors import (
    APIConnectionError,
    APIError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    RateLimitError,
    RequestFailedError,
    SessionLostError,
    TinkerError,
)
from tinker_actors.supervisors import ActorExited

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.clients import ServiceClient, TrainingClient

__all__ = ["ResumableRun", "Resume", "ResumeGaveUpError", "ResumePolicy", "train_resumably"]

T = TypeVar("T")
logger = logging.getLogger("tinker_actors.resume")

#: Errors after which the model or the client cannot go on, but a new client from the last
#: checkpoint can. Connection errors and 5xx reach the loop only after the SDK's own retries.
RESUMABLE: Final[tuple[type[BaseException], ...]] = (
    NotFoundError,
    TrainingOrderBrokenError,
    FutureExpiredError,
    RequestFailedError,
    InternalServerError,
    RateLimitError,
    APIConnectionError,
    ActorExited,
)


@dataclass(frozen=True)
class ResumePolicy:
    """How often to checkpoint, and how to resume (see the module doc)."""

    checkpoint_every: int = 100
    """Save the state after every this many steps (and after the last)."""
    checkpoint_name: str = "step-{step:06d}"
    """The name of each saved state; ``{step}`` is the number of steps done."""
    ttl_seconds: int | None = None
    """How long the service keeps each saved state (None: the service's default)."""
    max_attempts: int = 5
    """Resumes in a row, without a new checkpoint saved in between, before giving up."""
    delay: float = 1.0
    """Seconds to wait before the first resume attempt; doubled per attempt in a row."""
    max_delay: float = 60.0
    """The longest wait between attempts."""

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise InvalidInputError(
                f"checkpoint_every must be an integer >= 1, got {self.checkpoint_every!r}"
            )
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidInputError(
                f"max_attempts must be an integer >= 1, got {self.max_attempts!r}"
            )
        for name in ("delay", "max_delay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
        try:
            self.checkpoint_name.format(step=0)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise InvalidInputError(
                f"checkpoint_name must be a format string with only {{step}} in it, got "
                f"{self.checkpoint_name!r} ({exc!r})"
            ) from None
        if self.ttl_seconds is not None and (
            not isinstance(self.ttl_seconds, int) or self.ttl_seconds < 1
        ):
            raise InvalidInputError(
                f"ttl_seconds must be None or an integer >= 1, got {self.ttl_seconds!r}"
            )


@dataclass(frozen=True)
class Resume:
    """One resume: the step that failed, the error, and the checkpoint gone back to."""

    failed_step: int
    error: BaseException
    checkpoint_step: int
    checkpoint_path: str
    model_id: str
    """The new training client's model."""


@dataclass
class ResumableRun(Generic[T]):
    """Where a :func:`train_resumably` run stands; returned when it is done."""

    training: TrainingClient
    """The training client of the final model (a new one after each resume)."""
    step: int
    """Steps done on the final model's line of checkpoints."""
    results: list[T] = field(default_factory=list)
    """``step_fn``'s value per step, index ``step - start_step`` (re-run steps replaced)."""
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    """``(step, tinker path)`` of every state saved, oldest first."""
    resumes: list[Resume] = field(default_factory=list)
    """Every resume, in order."""


class ResumeGaveUpError(TinkerError):
    """Resuming failed ``max_attempts`` times in a row without a new checkpoint saved.

    Attributes:
        run: the run as it stood (its client, checkpoints and resumes); None once pickled
            (a live client does not cross processes).
        step: the step the run stood at.
        checkpoints: ``(step, tinker path)`` of every state saved, oldest first.
        attempts: the resumes tried in a row.
    """

    __slots__ = ("_run",)

    def __init__(self, run: ResumableRun[Any], attempts: int) -> None:
        last = run.checkpoints[-1] if run.checkpoints else None
        super().__init__(
            f"gave up after {attempts} resumes in a row at step {run.step}; the last checkpoint "
            f"is {last[1] if last else 'none'} (step {last[0] if last else '-'}): start a new "
            "run from it with create_training_client_from_state_with_optimizer"
        )
        self._run: ResumableRun[Any] | None = run
        self.step = run.step
        self.checkpoints = list(run.checkpoints)
        self.attempts = attempts

    @property
    def run(self) -> ResumableRun[Any] | None:
        return getattr(self, "_run", None)


async def train_resumably(
    service: ServiceClient,
    training: TrainingClient,
    step_fn: Callable[[TrainingClient, int], Awaitable[T]],
    *,
    steps: int,
    start_step: int = 0,
    policy: ResumePolicy | None = None,
    on_resume: Callable[[Resume], None] | None = None,
) -> ResumableRun[T]:
    """Run ``step_fn(training, k)`` for ``k`` in ``[start_step, steps)``, resuming from the last
    checkpoint when the model or client is lost (see the module doc).

    Args:
        service: what creates the new training clients (the runtime).
        training: the client to start with, holding the state of ``start_step`` steps.
        step_fn: one whole training step; its value is kept per step.
        steps: the step to stop at.
        start_step: the number of steps ``training`` has already done.
        policy: checkpoints and resume attempts (default :class:`ResumePolicy()`).
        on_resume: called after each resume, before the steps run again.

    Raises:
        InvalidInputError: bad arguments, before anything is sent.
        ResumeGaveUpError: ``max_attempts`` resumes in a row without progress.
    """
    policy = policy if policy is not None else ResumePolicy()
    if not isinstance(steps, int) or not isinstance(start_step, int) or start_step < 0:
        raise InvalidInputError(
            f"steps and start_step must be integers with 0 <= start_step, got steps={steps!r}, "
            f"start_step={start_step!r}"
        )
    if start_step > steps:
        raise InvalidInputError(f"start_step ({start_step}) is past steps ({steps})")
    run: ResumableRun[T] = ResumableRun(training=training, step=start_step)
    attempts = 0
    lost: tuple[int, BaseException] | None = None  # (failed step, error) awaiting a resume
    while True:
        try:
            if lost is not None:
                await _resume(service, run, policy, *lost, attempts, on_resume)
                lost = None
            if not run.checkpoints:
                await _save(run, policy)  # something to go back to before the first step
            while run.step < steps:
                result = await step_fn(run.training, run.step)
                del run.results[run.step - start_step :]
                run.results.append(result)
                run.step += 1
                if run.step % policy.checkpoint_every == 0 or run.step == steps:
                    await _save(run, policy)
                    attempts = 0
            return run
        except RESUMABLE as error:
            if not _resumable(error) or not run.checkpoints:
                _note(error, run)
                raise
            attempts += 1
            if attempts > policy.max_attempts:
                raise ResumeGaveUpError(run, attempts - 1) from error
            lost = (lost[0] if lost is not None else run.step, error)
        except BaseException as error:
            if isinstance(error, APIError | InvalidInputError):
                _note(error, run)
            raise


def _resumable(error: BaseException) -> bool:
    # a lost session cannot make clients; a failure the server blames on the request would
    # fail again; a client's actor that crashed (a bug) is left behind with its client, but
    # one that was closed or shut down is not resumed
    if isinstance(error, SessionLostError):
        return False
    if isinstance(error, ActorExited):
        return isinstance(error.reason, Exception)
    return not (isinstance(error, RequestFailedError) and error.category == "user")


async def _save(run: ResumableRun[Any], policy: ResumePolicy) -> None:
    name = policy.checkpoint_name.format(step=run.step)
    future = await run.training.save_state(name, ttl_seconds=policy.ttl_seconds, overwrite=True)
    run.checkpoints.append((run.step, (await future.result()).path))


async def _resume(
    service: ServiceClient,
    run: ResumableRun[Any],
    policy: ResumePolicy,
    failed: int,
    error: BaseException,
    attempts: int,
    on_resume: Callable[[Resume], None] | None,
) -> None:
    """Wait, then point ``run`` at a new client loaded from its last checkpoint (raises what
    creating the client raises; the caller counts that as another attempt)."""
    checkpoint_step, path = run.checkpoints[-1]
    wait = exponential_delay(attempts - 1, base=policy.delay, cap=policy.max_delay)
    logger.warning(
        "step %d failed (%s: %s); resuming from %s (step %d) in %.1f s, attempt %d of %d",
        failed,
        type(error).__name__,
        error,
        path,
        checkpoint_step,
        wait,
        attempts,
        policy.max_attempts,
    )
    await trio.sleep(wait)
    run.training = await service.create_training_client_from_state_with_optimizer(path)
    run.step = checkpoint_step
    resume = Resume(failed, error, checkpoint_step, path, run.training.model_id)
    run.resumes.append(resume)
    if on_resume is not None:
        on_resume(resume)


def _note(error: BaseException, run: ResumableRun[Any]) -> None:
    last = run.checkpoints[-1] if run.checkpoints else None
    where = f"{last[1]} (step {last[0]})" if last else "none saved"
    error.add_note(f"train_resumably stopped at step {run.step}; last checkpoint: {where}")
