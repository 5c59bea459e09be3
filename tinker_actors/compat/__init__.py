"""The official ``tinker`` 0.38 surface, run on tinker_actors' runtime.

Code written for the official SDK moves here by changing one import, or none::

    import tinker_actors.compat as tinker          # or: tinker-actors run -- python train.py

    service = tinker.ServiceClient()
    training = service.create_lora_training_client(base_model="Qwen/Qwen3-8B").result()
    fb = training.forward_backward(data, "cross_entropy")
    opt = training.optim_step(tinker.AdamParams(learning_rate=1e-4))
    fb.result(); opt.result()

Same names, signatures and calling styles as 0.38: blocking ``.result()``, ``await future``
from asyncio (including loops created per step with ``asyncio.run`` and a notebook's running
loop), the deprecated ``*_async`` twins, and futures of clients usable as clients. Underneath,
one trio runtime per process, on its own thread, runs the same supervised actor tree as
``tinker_actors.open()``; this package only adapts calling conventions (see
:mod:`tinker_actors.compat._process` and :mod:`tinker_actors.compat._host`). Data types are
tinker_actors' (:mod:`tinker_actors.compat.types`); exceptions keep the official names.

``tinker-actors run -- CMD ...`` (or ``python -m tinker_actors.compat script.py ...``) runs a
program in which ``import tinker`` resolves here; see docs/compat.md for what is covered.
"""

from __future__ import annotations

import httpx as _httpx

from tinker_actors._open import open as _open  # noqa: F401  (keeps the SDK importable first)
from tinker_actors._version import PROTOCOL_VERSION as _PROTOCOL_VERSION
from tinker_actors.backoff import RetryConfig as RetryConfig
from tinker_actors.compat import auth as auth
from tinker_actors.compat import lib as lib
from tinker_actors.compat import types as types
from tinker_actors.compat._custom_loss import LossHandle as LossHandle
from tinker_actors.compat._future import APIFuture as APIFuture
from tinker_actors.compat._logging import setup_logging as _setup_logging
from tinker_actors.compat._process import ForkedRuntimeError as ForkedRuntimeError
from tinker_actors.compat._process import RuntimeClosedError as RuntimeClosedError
from tinker_actors.compat._rest import AdminClient as AdminClient
from tinker_actors.compat._rest import RestClient as RestClient
from tinker_actors.compat._sampling import SamplingClient as SamplingClient
from tinker_actors.compat._service import ServiceClient as ServiceClient
from tinker_actors.compat._training import (
    BackcompatSamplingClientFuture as BackcompatSamplingClientFuture,
)
from tinker_actors.compat._training import (
    BackcompatTrainingClientFuture as BackcompatTrainingClientFuture,
)
from tinker_actors.compat._training import TrainingClient as TrainingClient
from tinker_actors.compat._types import ExperimentalWarning as ExperimentalWarning
from tinker_actors.compat._types import PerDatumLossFn as PerDatumLossFn
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
from tinker_actors.transport import RequestOptions as RequestOptions

#: The official SDK version whose surface and protocol this package implements.
__version__ = _PROTOCOL_VERSION
__title__ = "tinker"

#: httpx's Timeout, as 0.38 re-exports it.
Timeout = _httpx.Timeout

# The data types 0.38 re-exports at the top level (those the types module has).
_TOP_LEVEL_TYPES = (
    "AdamOptimizerConfig",
    "AdamParams",
    "Checkpoint",
    "CheckpointType",
    "Datum",
    "DimuonOptimizerConfig",
    "DimuonParams",
    "DmelChunk",
    "EncodedTextChunk",
    "ForwardBackwardOutput",
    "LoraConfig",
    "ModelID",
    "ModelInput",
    "ModelInputChunk",
    "OptimParams",
    "OptimStepRequest",
    "OptimStepResponse",
    "ParsedCheckpointTinkerPath",
    "PromptProvenanceSpan",
    "SampleRequest",
    "SampleResponse",
    "SampledProvenanceSpan",
    "SampledSequence",
    "SamplingParams",
    "StopReason",
    "TensorData",
    "TensorDtype",
    "TrainingRun",
)
globals().update({name: getattr(types, name) for name in _TOP_LEVEL_TYPES if hasattr(types, name)})

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIFuture",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AdminClient",
    "AuthenticationError",
    "BackcompatSamplingClientFuture",
    "BackcompatTrainingClientFuture",
    "BadRequestError",
    "BillingError",
    "ConflictError",
    "ExperimentalWarning",
    "ForkedRuntimeError",
    "InternalServerError",
    "InvalidInputError",
    "LossHandle",
    "NotFoundError",
    "PerDatumLossFn",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestFailedError",
    "RequestOptions",
    "RestClient",
    "RetryConfig",
    "RuntimeClosedError",
    "SamplingClient",
    "ServiceClient",
    "Timeout",
    "TinkerError",
    "TrainingClient",
    "UnprocessableEntityError",
    "__title__",
    "__version__",
    "auth",
    "lib",
    "types",
    *(name for name in _TOP_LEVEL_TYPES if hasattr(types, name)),
]

_setup_logging()
