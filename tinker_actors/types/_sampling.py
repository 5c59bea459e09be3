"""Sampling requests: what to sample and how (``POST /api/v1/asample``).

A :class:`SampleRequest` names a sampling session (``sampling_session_id`` + ``seq_id``), a
prompt and :class:`SamplingParams`. Numeric options that have a default are always sent;
``seed``, ``stop``, ``prompt_logprobs_last_n`` and the legacy addressing fields are sent only
when set::

    >>> import msgspec
    >>> msgspec.json.encode(SamplingParams(max_tokens=5, stop=["\\n"]))
    b'{"max_tokens":5,"stop":["\\\\n"],"temperature":1.0,"top_k":-1,"top_p":1.0}'

``stop`` is a string, a list of strings or a list of token ids: unset keeps the implicit end-of-sequence stop,
``[]`` disables every stop including EOS. ``target_prompt_logprobs`` is a
:class:`~tinker_actors.types.TensorData`, so encoders/decoders of a SampleRequest need the
hooks from :mod:`tinker_actors.types._tensor`. The result is a
:class:`~tinker_actors.types.SampleResponse` (protobuf on the wire).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from msgspec import UNSET, UnsetType
from msgspec.structs import force_setattr

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct
from tinker_actors.types._model_input import ModelInput
from tinker_actors.types._tensor import TensorData
from tinker_actors.types._values import as_float, as_int

__all__ = ["SEQ_IDS_PER_CLONE", "SampleRequest", "SamplingParams"]

#: A cloned sampling client numbers its samples from ``clone_id * SEQ_IDS_PER_CLONE`` (protocol
#: §8.5), so the server recovers the clone as ``seq_id // SEQ_IDS_PER_CLONE``.
SEQ_IDS_PER_CLONE: Final = 1_000_000_000


class SamplingParams(RequestStruct, kw_only=True, frozen=True):
    """How to sample: length, randomness and stop conditions."""

    max_tokens: int | UnsetType | None = UNSET
    """Maximum number of tokens to generate."""
    seed: int | UnsetType | None = UNSET
    """Random seed for reproducible generation."""
    stop: str | Sequence[str | int] | UnsetType | None = UNSET
    """Stop strings or stop token ids (not both); unset keeps the implicit EOS stop, ``[]``
    disables every stop including EOS."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_k: int = -1
    """Sample among the k most likely tokens; -1 for no limit."""
    top_p: float = 1.0
    """Nucleus sampling probability mass."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # Numbers are normalised as 0.38's pydantic model does (2.0 -> 2, 0 -> 0.0); anything
        # that would change a value (1.5 tokens) or reach the wire as null (NaN) is refused.
        max_tokens = _int_field(self, "max_tokens", self.max_tokens)
        _int_field(self, "seed", self.seed)
        _int_field(self, "top_k", self.top_k)
        stop = self.stop
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            checked_float = as_float(value, f"SamplingParams.{name}")
            if type(value) is not float:
                force_setattr(self, name, checked_float)
        if (
            isinstance(stop, Sequence)
            and not isinstance(stop, str)
            and not (
                all(isinstance(s, str) for s in stop)
                or all(isinstance(s, int) and not isinstance(s, bool) for s in stop)
            )
        ):
            raise InvalidInputError(
                f"stop must be a string, a list of strings or a list of token ids, got {stop!r}; "
                "do not mix strings and token ids"
            )
        if type(stop) is list:  # a list of its own, as 0.38 copies it: the caller's may change
            force_setattr(self, "stop", list(stop))
        if isinstance(max_tokens, int) and max_tokens < 0:
            raise InvalidInputError(f"max_tokens must be >= 0, got {max_tokens}")
        if self.temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k != -1 and self.top_k < 1:
            raise InvalidInputError(f"top_k must be -1 (no limit) or >= 1, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p}")


def _int_field(params: SamplingParams, name: str, value: object) -> int | None:
    """``value`` (the field ``name`` as read) as an int, stored back when it was not one."""
    if value is None or type(value) is int:
        return value
    checked = as_int(value, f"SamplingParams.{name}")
    force_setattr(params, name, checked)
    return checked


class SampleRequest(RequestStruct, kw_only=True, frozen=True):
    """Ask for ``num_samples`` completions of ``prompt``; the result is a SampleResponse."""

    num_samples: int = 1
    """Number of independent samples."""
    prompt: ModelInput
    """What to complete."""
    sampling_params: SamplingParams
    """How to sample."""
    base_model: str | UnsetType | None = UNSET
    """Legacy addressing: the base model to sample (0.38 sends ``sampling_session_id``)."""
    model_path: str | UnsetType | None = UNSET
    """Legacy addressing: a ``tinker://`` sampler checkpoint."""
    sampling_session_id: str | UnsetType | None = UNSET
    """The sampling session to sample in (always sent by 0.38 clients)."""
    seq_id: int | UnsetType | None = UNSET
    """The request's number within the sampling session (protocol §8.5)."""
    prompt_logprobs: bool | UnsetType | None = UNSET
    """Also return the log-probability of every prompt token."""
    topk_prompt_logprobs: int = 0
    """Return the top-k log-probabilities at every prompt position (0 = none)."""
    topk_sample_logprobs: int = 0
    """Return the top-k log-probabilities at every sampled position (0 = none)."""
    target_prompt_logprobs: TensorData | UnsetType | None = UNSET
    """int64 ``[len(prompt) - 1, K]`` token ids whose prompt log-probabilities to return; cell
    ``[i, j]`` is scored at prompt position ``i + 1``; ``-1`` requests nothing. May be CSR."""
    prompt_alt_tokens_k: int = 0
    """Draw this many alternative tokens at every prompt position after the first (0 = none)."""
    prompt_logprobs_last_n: int | UnsetType | None = UNSET
    """Score only the last N prompt tokens (1 to ``len(prompt) - 1``); needs ``prompt_logprobs``."""
    record_stability_info: bool | UnsetType | None = UNSET
    """Record per-sequence stability information for StableReinforce training."""
    type: Literal["sample"] = "sample"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples < 1:
            raise InvalidInputError(f"num_samples must be >= 1, got {self.num_samples}")
        for name in ("topk_prompt_logprobs", "topk_sample_logprobs", "prompt_alt_tokens_k"):
            value = getattr(self, name)
            if value < 0:
                raise InvalidInputError(f"{name} must be >= 0 (0 turns it off), got {value}")
        last_n = self.prompt_logprobs_last_n
        if isinstance(last_n, int):
            if self.prompt_logprobs is not True:
                raise InvalidInputError(
                    "prompt_logprobs_last_n needs prompt_logprobs=True; set it, or leave "
                    "prompt_logprobs_last_n unset"
                )
            max_n = self.prompt.length - 1
            if not 1 <= last_n <= max_n:
                raise InvalidInputError(
                    f"prompt_logprobs_last_n must be between 1 and len(prompt) - 1 = {max_n}, "
                    f"got {last_n}"
                )
