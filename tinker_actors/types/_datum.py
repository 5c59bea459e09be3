"""Datum: one training example — the model input plus the tensors its loss reads.

``loss_fn_inputs`` maps names to :class:`TensorData`. For convenience you may pass numpy arrays,
torch tensors or (for the well-known keys) plain lists; they are converted on construction::

    >>> d = Datum(model_input=ModelInput.from_ints([1, 2, 3]),
    ...           loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [0, 1, 1]})
    >>> d.loss_fn_inputs["target_tokens"].dtype, d.loss_fn_inputs["weights"].dtype
    ('int64', 'float32')

Plain lists take their dtype from the key: ``target_tokens`` → int64; ``weights``,
``advantages``, ``logprobs``, ``clip_low_threshold``, ``clip_high_threshold``,
``sequence_ratio_mask`` → float32. Any other key needs a TensorData or an array with a dtype.
Arrays keep their own dtype, converted to int64/float32 with a warning when needed. 2-D torch
tensors under ``target_tokens`` and ``weights`` are stored sparse (CSR) when that is smaller.

Provenance spans (0.38) say where runs of tokens came from: a prompt
(:class:`PromptProvenanceSpan`) or a sampled sequence (:class:`SampledProvenanceSpan`). They
come in pairs — ``model_input_spans`` tile the model input, ``loss_fn_input_spans`` tile
``target_tokens`` — and travel only in the protobuf forward_backward request.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

import msgspec
import numpy as np

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._model_input import ModelInput, none_to_unset
from tinker_actors.types._tensor import TensorData, TensorDtype

__all__ = [
    "Datum",
    "LossFnConfig",
    "LossFnType",
    "PromptProvenanceSpan",
    "ProvenanceSpan",
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


class PromptProvenanceSpan(_Span, tag="prompt_tokens", frozen=True):
    """A run of tokens that were positions ``[offset, offset+length)`` of a sampling prompt."""


class SampledProvenanceSpan(_Span, tag="sampled_tokens", frozen=True):
    """A run of tokens that were positions ``[offset, offset+length)`` of a sampled sequence."""


ProvenanceSpan: TypeAlias = PromptProvenanceSpan | SampledProvenanceSpan
"""Where one run of a Datum field came from."""


class Datum(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One example: ``model_input`` and the named tensors the loss function reads.

    Raises:
        InvalidInputError: a value cannot become a wire tensor, or spans are not given as a pair.
        TypeError: a value is of an unsupported kind.
    """

    model_input: ModelInput
    """The tokens (and images) the model reads."""

    loss_fn_inputs: dict[str, TensorData] = msgspec.field(default_factory=dict)
    """Tensors for the loss, aligned so that position i of model_input predicts target i."""

    model_input_spans: list[ProvenanceSpan] | msgspec.UnsetType | None = msgspec.UNSET
    """Runs tiling ``model_input`` (lengths sum to its length); set with ``with_provenance``."""

    loss_fn_input_spans: list[ProvenanceSpan] | msgspec.UnsetType | None = msgspec.UNSET
    """Runs tiling ``loss_fn_inputs["target_tokens"]``; set with ``with_provenance``."""

    def __post_init__(self) -> None:
        none_to_unset(self, "model_input_spans", "loss_fn_input_spans")
        if not isinstance(self.model_input, ModelInput):
            raise TypeError(
                f"Datum.model_input must be a ModelInput, got {type(self.model_input).__name__}"
            )
        if not isinstance(self.loss_fn_inputs, dict):
            raise TypeError("Datum.loss_fn_inputs must be a dict of name -> tensor")
        converted = {key: to_tensor_data(key, value) for key, value in self.loss_fn_inputs.items()}
        msgspec.structs.force_setattr(self, "loss_fn_inputs", converted)
        if (self.model_input_spans is msgspec.UNSET) != (self.loss_fn_input_spans is msgspec.UNSET):
            raise InvalidInputError(
                "Datum: provenance comes as a pair; set both model_input_spans and "
                "loss_fn_input_spans, or neither"
            )
        for name in ("model_input_spans", "loss_fn_input_spans"):
            spans = getattr(self, name)
            if isinstance(spans, list):
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
        return msgspec.structs.replace(
            self, model_input_spans=list(model_input), loss_fn_input_spans=list(loss_fn_inputs)
        )


def _check_tiling(what: str, spans: list[ProvenanceSpan], expected: int) -> None:
    total = sum(span.length for span in spans)
    if total != expected:
        raise InvalidInputError(
            f"with_provenance: {what} spans cover {total} positions but the field has "
            f"{expected}; the runs must tile it exactly"
        )


def to_tensor_data(key: str, value: object) -> TensorData:
    """Convert one ``loss_fn_inputs`` value to a TensorData, using the key for plain lists.

    Raises:
        InvalidInputError: non-numeric data, ragged lists, or a plain list under a key whose
            dtype is not known.
        TypeError: an unsupported kind of value.
    """
    field = f"loss_fn_inputs[{key!r}]"
    if isinstance(value, TensorData):
        return value
    if isinstance(value, np.ndarray):
        return TensorData.from_numpy(value, field=field)
    if type(value).__module__.startswith("torch"):
        shaped: Any = value
        sparse = key in _SPARSE_KEYS and getattr(shaped, "ndim", 0) == 2
        return TensorData.from_torch(value, sparse=sparse, field=field)
    if isinstance(value, list | tuple):
        dtype = KEY_DTYPES.get(key)
        if dtype is None:
            raise InvalidInputError(
                f"{field}: a plain list has no dtype; pass a TensorData "
                "(TensorData(data=..., dtype='int64' or 'float32')) or a numpy array with a dtype "
                f"(lists are accepted only for {sorted(KEY_DTYPES)})"
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
        return TensorData(data=array, dtype=dtype, shape=list(array.shape), field=field)
    raise TypeError(
        f"{field}: unsupported value of type {type(value).__name__}; pass a TensorData, a numpy "
        "array, a torch tensor or a list of numbers"
    )
