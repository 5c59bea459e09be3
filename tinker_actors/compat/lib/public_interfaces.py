"""``tinker.lib.public_interfaces`` (and its submodules, under the import switch).

Code such as ``from tinker.lib.public_interfaces import APIFuture`` or
``from tinker.lib.public_interfaces.rest_client import RestClient`` finds the compat classes.
"""

from __future__ import annotations

from tinker_actors.compat._custom_loss import LossHandle as LossHandle
from tinker_actors.compat._future import APIFuture as APIFuture
from tinker_actors.compat._future import APIFuture as AwaitableConcurrentFuture
from tinker_actors.compat._rest import AdminClient as AdminClient
from tinker_actors.compat._rest import RestClient as RestClient
from tinker_actors.compat._sampling import SamplingClient as SamplingClient
from tinker_actors.compat._service import ServiceClient as ServiceClient
from tinker_actors.compat._switch import INTERFACE_MODULES, submodules_as_self
from tinker_actors.compat._training import (
    BackcompatSamplingClientFuture as BackcompatSamplingClientFuture,
)
from tinker_actors.compat._training import (
    BackcompatTrainingClientFuture as BackcompatTrainingClientFuture,
)
from tinker_actors.compat._training import TrainingClient as TrainingClient
from tinker_actors.compat._types import PerDatumLossFn as PerDatumLossFn

# A package path (empty): under the import switch, submodule names such as
# tinker.lib.public_interfaces.rest_client resolve to this module (see tinker_actors.compat._switch).
__path__: list[str] = []

__all__ = [
    "APIFuture",
    "AdminClient",
    "AwaitableConcurrentFuture",
    "BackcompatSamplingClientFuture",
    "BackcompatTrainingClientFuture",
    "LossHandle",
    "PerDatumLossFn",
    "RestClient",
    "SamplingClient",
    "ServiceClient",
    "TrainingClient",
]


# 0.38's submodules read as attributes (tinker.lib.public_interfaces.api_future.APIFuture)
__getattr__ = submodules_as_self(__name__, INTERFACE_MODULES)
