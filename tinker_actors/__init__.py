"""tinker_actors: a trio-native SDK for the Tinker fine-tuning API, built as supervised actors.

PYTEST_DONT_REWRITE: ``tinker-actors run`` imports this package at start-up, so pytest finds
it already imported as the package of a pytest plugin (``tinker_actors.testing``) and would
warn that it cannot rewrite it, which ends a test run whose warnings are errors. Nothing in
this module asserts; the marker changes nothing else.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Final

from tinker_actors._version import __version__ as __version__

if TYPE_CHECKING:
    from tinker_actors._open import open as open
    from tinker_actors._runtime import Runtime as Runtime
    from tinker_actors.actors import FutureExpiredError as FutureExpiredError
    from tinker_actors.actors import OperationCancelledError as OperationCancelledError
    from tinker_actors.backoff import RetryConfig as RetryConfig
    from tinker_actors.checkpoint_download import (
        CheckpointDownloadError as CheckpointDownloadError,
    )
    from tinker_actors.checkpoint_download import DownloadedCheckpoint as DownloadedCheckpoint
    from tinker_actors.checkpoint_download import DownloadProgress as DownloadProgress
    from tinker_actors.checkpoint_download import UnsafeArchiveError as UnsafeArchiveError
    from tinker_actors.checkpoint_download import download_checkpoint as download_checkpoint
    from tinker_actors.clients import AdminClient as AdminClient
    from tinker_actors.clients import APIFuture as APIFuture
    from tinker_actors.clients import RestClient as RestClient
    from tinker_actors.clients import SamplingClient as SamplingClient
    from tinker_actors.clients import ServiceClient as ServiceClient
    from tinker_actors.clients import TrainingClient as TrainingClient
    from tinker_actors.clients import TrainingOrderBrokenError as TrainingOrderBrokenError
    from tinker_actors.errors import APIConnectionError as APIConnectionError
    from tinker_actors.errors import APIError as APIError
    from tinker_actors.errors import APIResponseValidationError as APIResponseValidationError
    from tinker_actors.errors import APIStatusError as APIStatusError
    from tinker_actors.errors import APITimeoutError as APITimeoutError
    from tinker_actors.errors import AuthenticationError as AuthenticationError
    from tinker_actors.errors import BadRequestError as BadRequestError
    from tinker_actors.errors import BillingError as BillingError
    from tinker_actors.errors import ConflictError as ConflictError
    from tinker_actors.errors import InternalServerError as InternalServerError
    from tinker_actors.errors import InvalidInputError as InvalidInputError
    from tinker_actors.errors import NotFoundError as NotFoundError
    from tinker_actors.errors import PermissionDeniedError as PermissionDeniedError
    from tinker_actors.errors import RateLimitError as RateLimitError
    from tinker_actors.errors import RequestFailedError as RequestFailedError
    from tinker_actors.errors import SessionLostError as SessionLostError
    from tinker_actors.errors import TinkerError as TinkerError
    from tinker_actors.errors import UnprocessableEntityError as UnprocessableEntityError
    from tinker_actors.resume import ResumableRun as ResumableRun
    from tinker_actors.resume import ResumeGaveUpError as ResumeGaveUpError
    from tinker_actors.resume import ResumePolicy as ResumePolicy
    from tinker_actors.resume import train_resumably as train_resumably
    from tinker_actors.supervisors import ActorExited as ActorExited
    from tinker_actors.supervisors import MailboxFull as MailboxFull
    from tinker_actors.supervisors import SupervisorGaveUp as SupervisorGaveUp
    from tinker_actors.tokenizer import Tokenizer as Tokenizer
    from tinker_actors.tokenizer import TokenizerUnavailableError as TokenizerUnavailableError
    from tinker_actors.tokenizer import get_tokenizer as get_tokenizer


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIFuture",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "ActorExited",
    "AdminClient",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "CheckpointDownloadError",
    "ConflictError",
    "DownloadProgress",
    "DownloadedCheckpoint",
    "FutureExpiredError",
    "InternalServerError",
    "InvalidInputError",
    "MailboxFull",
    "NotFoundError",
    "OperationCancelledError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestFailedError",
    "RestClient",
    "ResumableRun",
    "ResumeGaveUpError",
    "ResumePolicy",
    "RetryConfig",
    "Runtime",
    "SamplingClient",
    "ServiceClient",
    "SessionLostError",
    "SupervisorGaveUp",
    "TinkerError",
    "Tokenizer",
    "TokenizerUnavailableError",
    "TrainingClient",
    "TrainingOrderBrokenError",
    "UnprocessableEntityError",
    "UnsafeArchiveError",
    "__version__",
    "download_checkpoint",
    "get_tokenizer",
    "open",
    "train_resumably",
]

# The public names load on first use (PEP 562): `import tinker_actors.cli` (the command line,
# whose --help must start fast) and the pytest plugin in tinker_actors.testing import this
# package first, and must not pay for trio, httpx and msgspec until a name is used.
_LAZY: Final[dict[str, str]] = {
    "ActorExited": "tinker_actors.supervisors",
    "AdminClient": "tinker_actors.clients",
    "APIConnectionError": "tinker_actors.errors",
    "APIError": "tinker_actors.errors",
    "APIFuture": "tinker_actors.clients",
    "APIResponseValidationError": "tinker_actors.errors",
    "APIStatusError": "tinker_actors.errors",
    "APITimeoutError": "tinker_actors.errors",
    "AuthenticationError": "tinker_actors.errors",
    "BadRequestError": "tinker_actors.errors",
    "BillingError": "tinker_actors.errors",
    "CheckpointDownloadError": "tinker_actors.checkpoint_download",
    "ConflictError": "tinker_actors.errors",
    "download_checkpoint": "tinker_actors.checkpoint_download",
    "DownloadedCheckpoint": "tinker_actors.checkpoint_download",
    "DownloadProgress": "tinker_actors.checkpoint_download",
    "FutureExpiredError": "tinker_actors.actors",
    "get_tokenizer": "tinker_actors.tokenizer",
    "InternalServerError": "tinker_actors.errors",
    "InvalidInputError": "tinker_actors.errors",
    "MailboxFull": "tinker_actors.supervisors",
    "NotFoundError": "tinker_actors.errors",
    "open": "tinker_actors._open",
    "OperationCancelledError": "tinker_actors.actors",
    "PermissionDeniedError": "tinker_actors.errors",
    "RateLimitError": "tinker_actors.errors",
    "RequestFailedError": "tinker_actors.errors",
    "ResumableRun": "tinker_actors.resume",
    "ResumeGaveUpError": "tinker_actors.resume",
    "ResumePolicy": "tinker_actors.resume",
    "RestClient": "tinker_actors.clients",
    "RetryConfig": "tinker_actors.backoff",
    "Runtime": "tinker_actors._runtime",
    "SamplingClient": "tinker_actors.clients",
    "ServiceClient": "tinker_actors.clients",
    "SessionLostError": "tinker_actors.errors",
    "SupervisorGaveUp": "tinker_actors.supervisors",
    "TinkerError": "tinker_actors.errors",
    "Tokenizer": "tinker_actors.tokenizer",
    "TokenizerUnavailableError": "tinker_actors.tokenizer",
    "TrainingClient": "tinker_actors.clients",
    "train_resumably": "tinker_actors.resume",
    "TrainingOrderBrokenError": "tinker_actors.clients",
    "UnprocessableEntityError": "tinker_actors.errors",
    "UnsafeArchiveError": "tinker_actors.checkpoint_download",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # the eager package made `import tinker_actors; tinker_actors.types.Datum` work
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
