"""tinker_actors: a trio-native SDK for the Tinker fine-tuning API, built as supervised actors."""

from __future__ import annotations

from tinker_actors._open import open as open
from tinker_actors._runtime import Runtime as Runtime
from tinker_actors._version import __version__ as __version__
from tinker_actors.actors import FutureExpiredError as FutureExpiredError
from tinker_actors.actors import OperationCancelledError as OperationCancelledError
from tinker_actors.backoff import RetryConfig as RetryConfig
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
from tinker_actors.errors import TinkerError as TinkerError
from tinker_actors.errors import UnprocessableEntityError as UnprocessableEntityError
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
    "ConflictError",
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
    "RetryConfig",
    "Runtime",
    "SamplingClient",
    "ServiceClient",
    "SupervisorGaveUp",
    "TinkerError",
    "Tokenizer",
    "TokenizerUnavailableError",
    "TrainingClient",
    "TrainingOrderBrokenError",
    "UnprocessableEntityError",
    "__version__",
    "get_tokenizer",
    "open",
]
