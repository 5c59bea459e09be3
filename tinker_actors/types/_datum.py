"""Datum: one training example — the model input plus the tensors its loss reads.

``loss_fn_inputs`` maps names to :class:`TensorData`. For convenience you may pass numpy arrays,
torch tensors or (for the well-known keys) plain lists; they are converted on construction::

    >>> d = Datum(model_input=ModelInput.from_ints([1, 2, 3]),
    ...           loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [0, 1, 1]})
    >>> d.loss_fn_inputs["target_tokens"].dtype, d.loss_fn_inputs["weights"].dtype
    ('int64', 'float32')

The well-known keys have a wire dtype: ``target_tokens`` → int64; ``weights``,
``advantages``, ``logprobs``, ``clip_low_threshold``, ``clip_high_threshold``,
``sequence_ratio_mask`` → float32. Plain lists, numpy arrays and torch tensors under these keys
are converted to it, so float token ids (``np.array([1., 2.])``) are sent as int64 and integer
weights as float32, where 0.38 sends them in the array's own kind and the server refuses them.
A conversion that would change a value is refused with ``InvalidInputError`` naming the value:
a fraction, NaN or infinity among ``target_tokens`` (0.38 truncates ``[1.5]`` to ``[1]``
silently), a bool, a float beyond float32. Other keys need a TensorData or an array with a dtype;
arrays keep their own kind (floats → float32, integers → int64). An explicit TensorData is kept
as given. 2-D torch tensors under ``target_tokens`` and ``weights`` are stored sparse (CSR) when
that is smaller.

Provenance spans (0.38) say where runs of tokens came from: a prompt
(:class:`PromptProvenanceSpan`) or a sampled sequence (:class:`SampledProvenanceSpan`). They
come in pairs — ``model_input_spans`` tile the model input, ``loss_fn_input_spans`` tile
``target_tokens`` — and travel only in the protobuf forward_backward request.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec
import numpy as np

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._dataclass import dataclass_protocol
from tinker_actors.types._model_input import ModelInput
from tinker_actors.types._tensor import TensorData, TensorDtype, torch_to_numpy
from tinker_actors.types._tensor_checks import NUMPY_DTYPE, keyed_array

__all__ = [
    "Datum",
    "LossFnConfig",
    "LossFnInputs",
    "LossFnType",
    "PromptProvenanceSpan",
    "ProvenanceSpan",
    "ProvenanceSpans",
    "SampledProvenanceSpan",
]

LossFnType: TypeAlias = Literal[
    "cross_entropy",
    "importance_sampling",
    "ppo",
    "cispo",
    "dro",
    "gspo",
    "stable_reinforce",
    "custom",
]
"""Built-in server-side losses (``"custom"`` needs ``loss_fn_config={"loss_id": ...}``)."""

LossFnConfig: TypeAlias = dict[str, float | str]
"""Loss hyper-parameters, e.g. PPO clip thresholds; strings are accepted since 0.38."""

KEY_DTYPES: Final[dict[str, TensorDtype]] = {
    "target_tokens": "int64",
    "weights": "float32",
    "advantages": "float32",
    "logprobs": "float32",
    "clip_low_threshold": "float32",
    "clip_high_threshold": "float32",
    "sequence_ratio_mask": "float32",
}
_SPARSE_KEYS: Final = frozenset({"target_tokens", "weights"})


class _Span(
    msgspec.Struct, tag_field="type", kw_only=True, frozen=True, forbid_unknown_fields=True
):
    sequence_id: str
    """``SampledSequence.sequence_id`` of the sequence (or of the request) the run comes from."""

    offset: int = 0
    """Position of the run's first token within that source."""

    length: int
    """Number of tokens in the run."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.sequence_id, str) or not self.sequence_id:
            raise InvalidInputError(f"{name}.sequence_id must be a non-empty string")
        if self.offset < 0 or self.length < 0:
            raise InvalidInputError(
                f"{name}: offset and length must be >= 0, got offset={self.offset}, "
                f"length={self.length}"
            )


@dataclass_protocol
class PromptProvenanceSpan(_Span, tag="prompt_tokens", frozen=True):
    """A run of tokens that were positions ``[offset, offset+length)`` of a sampling prompt."""


@dataclass_protocol
class SampledProvenanceSpan(_Span, tag="sampled_tokens", frozen=True):
    """A run of tokens that were positions ``[offset, offset+length)`` of a sampled sequence."""


ProvenanceSpan: TypeAlias = PromptProvenanceSpan | SampledProvenanceSpan
"""Where one run of a Datum field came from."""

ProvenanceSpans: TypeAlias = list[ProvenanceSpan]
"""Consecutive runs tiling one Datum field; see :meth:`Datum.with_provenance`."""

LossFnInputs: TypeAlias = dict[str, TensorData]
"""The tensors a loss function reads, by name (``target_tokens``, ``weights``, ...)."""


@dataclass_protocol
class Datum(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One example: ``model_input`` and the named tensors the loss function reads.

    Positional arguments are accepted in 0.38's order (``Datum(model_input, loss_fn_inputs)``).

    Raises:
        InvalidInputError: a value cannot become a wire tensor without changing a value, or
            spans are not given as a pair.
        TypeError: a value is of an unsupported kind.
    """

    model_input: ModelInput
    """The tokens (and images) the model reads."""

    loss_fn_inputs: LossFnInputs = msgspec.field(default_factory=dict)
    """Tensors for the loss, aligned so that position i of model_input predicts target i."""

    model_input_spans: ProvenanceSpans | None = None
    """Runs tiling ``model_input`` (lengths sum to its length); set with ``with_provenance``."""

    loss_fn_input_spans: ProvenanceSpans | None = None
    """Runs tiling ``loss_fn_inputs["target_tokens"]``; set with ``with_provenance``."""

    def __post_init__(self) -> None:
        if not isinstance(self.model_input, ModelInput):
            raise TypeError(
                f"Datum.model_input must be a ModelInput, got {type(self.model_input).__name__}"
            )
        if not isinstance(self.loss_fn_inputs, dict):
            raise TypeError("Datum.loss_fn_inputs must be a dict of name -> tensor")
        converted = {key: to_tensor_data(key, value) for key, value in self.loss_fn_inputs.items()}
        msgspec.structs.force_setattr(self, "loss_fn_inputs", converted)
        if (self.model_input_spans is None) != (self.loss_fn_input_spans is None):
            raise InvalidInputError(
                "Datum: provenance comes as a pair; set both model_input_spans and "
                "loss_fn_input_spans, or neither"
            )
        for name in ("model_input_spans", "loss_fn_input_spans"):
            spans = getattr(self, name)
            if spans is None:
                continue
            # a list of its own, as 0.38 copies it: the caller's may be reused
            msgspec.structs.force_setattr(self, name, spans := list(spans))
            for span in spans:
                if not isinstance(span, PromptProvenanceSpan | SampledProvenanceSpan):
                    raise TypeError(
                        f"Datum.{name} entries must be PromptProvenanceSpan or "
                        f"SampledProvenanceSpan, got {type(span).__name__}"
                    )

    def with_provenance(
        self, model_input: list[ProvenanceSpan], loss_fn_inputs: list[ProvenanceSpan]
    ) -> Datum:
        """Return a copy carrying provenance spans, after checking that they tile their fields.

        Raises:
            InvalidInputError: span lengths do not add up to the field's length.
        """
        _check_tiling("model_input", model_input, self.model_input.length)
        target = self.loss_fn_inputs.get("target_tokens")
        if target is not None and target.shape is not None and len(target.shape) == 1:
            _check_tiling("loss_fn_inputs", loss_fn_inputs, target.shape[0])
        elif target is not None and target.shape is None:
            _check_tiling("loss_fn_inputs", loss_fn_inputs, target.numel)
        # replace runs __post_init__, which takes lists of the spans of its own
        return msgspec.structs.replace(
            self, model_input_spans=model_input, loss_fn_input_spans=loss_fn_inputs
        )


def _check_tiling(what: str, spans: list[ProvenanceSpan], expected: int) -> None:
    total = sum(span.length for span in spans)
    if total != expected:
        raise InvalidInputError(
            f"with_provenance: {what} spans cover {total} positions but the field has "
            f"{expected}; the runs must tile it exactly"
        )


def to_tensor_data(key: str, value: object) -> TensorData:
    """Convert one ``loss_fn_inputs`` value to a TensorData, in its key's dtype when known.

    Raises:
        InvalidInputError: non-numeric data, ragged lists, a plain list under a key whose
            dtype is not known, or a conversion that would change a value (named).
        TypeError: an unsupported kind of value.
    """
    field = f"loss_fn_inputs[{key!r}]"
    if isinstance(value, TensorData):
        return value
    dtype = KEY_DTYPES.get(key)
    if isinstance(value, np.ndarray):
        array = value
    elif type(value).__module__.startswith("torch"):
        array = torch_to_numpy(value, field)
        if key in _SPARSE_KEYS and array.ndim == 2:
            if dtype is not None and array.dtype.kind in "iuf":
                array = keyed_array(array, dtype, field)
            return TensorData.from_numpy(array, sparse=True, field=field)
    elif isinstance(value, list | tuple):
        if dtype is None:
            raise InvalidInputError(
                f"{field}: a plain list has no dtype; pass a TensorData "
                "(TensorData(data=..., dtype='int64' or 'float32')) or a numpy array with a "
                f"dtype (lists are accepted only for {sorted(KEY_DTYPES)})"
            )
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise InvalidInputError(
                f"{field}: must be a rectangular numeric array; ragged nested lists are not "
                "supported"
            ) from exc
        if array.size and array.dtype.kind not in "iuf":
            raise InvalidInputError(
                f"{field}: holds {array.dtype} values; it needs numbers ({dtype})"
            )
        if not array.size:
            array = array.astype(NUMPY_DTYPE[dtype])
    else:
        raise TypeError(
            f"{field}: unsupported value of type {type(value).__name__}; pass a TensorData, a "
            "numpy array, a torch tensor or a list of numbers"
        )
    if dtype is not None and array.dtype.kind in "iuf":
        array = keyed_array(array, dtype, field)
    return TensorData.from_numpy(array, field=field)
