"""Lost answers: the server does the work, then the client gets a fault instead of the answer.

The local server's fault plans answer *instead of* the server: the request never reaches it, so
a retry or a resubmission is always safe. On a real service the worst faults come *after* the
work: a gateway answers 502 or 504 once the backend accepted the request, a connection drops
while the answer is on its way. The client cannot tell the two apart, and a loop that reacts
to such an error by submitting the step again trains on it twice.

:class:`LostAnswers` is an ASGI middleware that sits between the local server's fault injector
and its API: a request that one of its rules picks is handled by the server as usual (its
answer discarded), then answered with the rule's status. It takes a
:class:`~tinker_actors.local.FaultPlan` (the same rule syntax, so ``count``, ``after``,
``probability``, ``sequence``, ``choices``, ``should_retry``, ``retry_after`` and ``latency``
all work) except ``try_again`` and connection faults, which have no meaning after the work::

    "forward_backward:502,count=1"                     the first forward_backward's answer lost
    "optim_step:504@0.1,should_retry=false"            10 % lost, and the client told not to retry
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from tinker_actors.local import FaultInjector, FaultPlan, FaultPlanError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LostAnswers", "check_lost_plan"]


def check_lost_plan(plan: FaultPlan) -> FaultPlan:
    """Return ``plan`` if every rule can apply after the work.

    Raises:
        FaultPlanError: a ``try_again`` rule, or a connection section.
    """
    if plan.connection_faults() is not None:
        raise FaultPlanError(
            "a lost-answer plan cannot have connection faults; put them in the ordinary plan"
        )
    for index, rule in enumerate(plan.rules):
        if rule.try_again_polls:
            raise FaultPlanError(
                f"lost-answer rule {index} ({rule.endpoint}) uses try_again, which answers "
                "instead of the server; put it in the ordinary plan"
            )
    return plan


class LostAnswers:
    """Let the app handle a picked request, then answer with the rule's fault.

    Args:
        app: the ASGI app (the local server's API).
        plan: which answers to lose (None: none).
    """

    def __init__(self, app: ASGIApp, plan: FaultPlan | None = None) -> None:
        self.app = app
        # The decision engine is the fault injector's own, so the rules mean the same thing.
        self._injector = FaultInjector(app, check_lost_plan(plan or FaultPlan()))

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self._injector.plan

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the plan (reseeds, restarts every rule, zeroes the statistics)."""
        self._injector.set_plan(check_lost_plan(plan))

    def statistics(self) -> dict[str, Any]:
        """What was decided: ``requests``, ``passed``, ``replaced`` (lost), ``by_kind``..."""
        return self._injector.statistics().as_dict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request: pass it, or do it and lose its answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = self._injector.engine.decide(scope["method"], scope["path"])
        if decision.response is None:
            if decision.delay > 0:
                await trio.sleep(decision.delay)
            await self.app(scope, receive, send)
            return

        async def discard(message: Message) -> None:
            return None

        await self.app(scope, receive, discard)  # the server does the work...
        if decision.delay > 0:
            await trio.sleep(decision.delay)
        response = decision.response  # ...and the client hears only the fault
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [*response.headers, (b"x-lost-answer", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": response.body, "more_body": False})
