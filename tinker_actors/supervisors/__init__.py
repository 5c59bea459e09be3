"""The actor kernel: mailboxes, actors, replies, supervisors, registry. No Tinker knowledge.

Vocabulary (design.md §3):

Actor         a task with private state handling messages from its Mailbox one at a time
Mailbox       bounded trio memory channel in front of an actor
ActorRef      typed handle: ``call`` (await a Reply; the caller owns the timeout), ``cast``
Reply         one-shot slot carrying a value or an exception to exactly one caller
ChildSpec     id + start function and args + Restart + shutdown grace
Restart       PERMANENT / TRANSIENT / TEMPORARY
Strategy      ONE_FOR_ONE / ONE_FOR_ALL / REST_FOR_ONE
Supervisor    a nursery-owning task, the only place that catches its children's crashes
ActorExited   what callers get when the actor they address has exited; monitors get ``Down``
Registry      key -> ActorRef, starting the actor on first use

See docs/runtime.md for the tree, the strategies and how errors travel.
"""

from __future__ import annotations

from tinker_actors.supervisors._actor import Actor as Actor
from tinker_actors.supervisors._actor import ActorRef as ActorRef
from tinker_actors.supervisors._actor import ActorStatistics as ActorStatistics
from tinker_actors.supervisors._actor import Down as Down
from tinker_actors.supervisors._actor import run_actor as run_actor
from tinker_actors.supervisors._errors import ActorExited as ActorExited
from tinker_actors.supervisors._errors import MailboxFull as MailboxFull
from tinker_actors.supervisors._errors import SupervisorGaveUp as SupervisorGaveUp
from tinker_actors.supervisors._introspect import ActorInfo as ActorInfo
from tinker_actors.supervisors._introspect import CallInfo as CallInfo
from tinker_actors.supervisors._introspect import Census as Census
from tinker_actors.supervisors._introspect import RuntimeDump as RuntimeDump
from tinker_actors.supervisors._introspect import current_census as current_census
from tinker_actors.supervisors._introspect import track_actors as track_actors
from tinker_actors.supervisors._mailbox import DEFAULT_MAILBOX_SIZE as DEFAULT_MAILBOX_SIZE
from tinker_actors.supervisors._mailbox import Mailbox as Mailbox
from tinker_actors.supervisors._mailbox import MailboxStatistics as MailboxStatistics
from tinker_actors.supervisors._registry import Registry as Registry
from tinker_actors.supervisors._registry import RegistryStatistics as RegistryStatistics
from tinker_actors.supervisors._registry import registry_spec as registry_spec
from tinker_actors.supervisors._registry import run_registry as run_registry
from tinker_actors.supervisors._reply import Reply as Reply
from tinker_actors.supervisors._spec import ChildSpec as ChildSpec
from tinker_actors.supervisors._spec import Restart as Restart
from tinker_actors.supervisors._spec import Stoppable as Stoppable
from tinker_actors.supervisors._spec import Strategy as Strategy
from tinker_actors.supervisors._spec import actor_spec as actor_spec
from tinker_actors.supervisors._supervisor import run_supervisor as run_supervisor
from tinker_actors.supervisors._supervisor import supervisor_spec as supervisor_spec
from tinker_actors.supervisors._supervisor_ref import ChildInfo as ChildInfo
from tinker_actors.supervisors._supervisor_ref import SupervisorRef as SupervisorRef
from tinker_actors.supervisors._supervisor_ref import SupervisorStatistics as SupervisorStatistics
from tinker_actors.supervisors._util import NORMAL as NORMAL
from tinker_actors.supervisors._util import SHUTDOWN as SHUTDOWN
from tinker_actors.supervisors._util import ExitReason as ExitReason
from tinker_actors.supervisors._util import Normal as Normal
from tinker_actors.supervisors._util import Shutdown as Shutdown

__all__ = [
    "DEFAULT_MAILBOX_SIZE",
    "NORMAL",
    "SHUTDOWN",
    "Actor",
    "ActorExited",
    "ActorInfo",
    "ActorRef",
    "ActorStatistics",
    "CallInfo",
    "Census",
    "ChildInfo",
    "ChildSpec",
    "Down",
    "ExitReason",
    "Mailbox",
    "MailboxFull",
    "MailboxStatistics",
    "Normal",
    "Registry",
    "RegistryStatistics",
    "Reply",
    "Restart",
    "RuntimeDump",
    "Shutdown",
    "Stoppable",
    "Strategy",
    "SupervisorGaveUp",
    "SupervisorRef",
    "SupervisorStatistics",
    "actor_spec",
    "current_census",
    "registry_spec",
    "run_actor",
    "run_registry",
    "run_supervisor",
    "supervisor_spec",
    "track_actors",
]
