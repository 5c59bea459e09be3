"""``tinker.types`` of the official SDK 0.38: every name, backed by :mod:`tinker_actors.types`.

The data types are tinker_actors' own msgspec Structs; the ones 0.38 code relies on behave as
0.38's do (keyword construction, ``ModelInput.from_ints`` / ``to_ints`` / ``length``,
``TensorData.from_numpy`` / ``from_torch``, equality, pickling). Under the import switch the
official submodules (``tinker.types.tensor_data``, ``tinker.types.datum``...) resolve here too.
"""

from __future__ import annotations

from tinker_actors.types import *  # noqa: F403
from tinker_actors.types import __all__ as _names

# A package path (empty): under the import switch, submodule names such as
# tinker.types.tensor_data resolve to this module (see tinker_actors.compat._switch).
__path__: list[str] = []

__all__ = list(_names)
