"""A sample's request, checked and built before anything is sent (no I/O, no trio).

:meth:`SamplingClient.prepare_sample` and ``prepare_compute_logprobs`` are pure so that a
blocking facade (:mod:`tinker_actors.compat`) can call them on the caller's thread and bad input
raises there, at once. They build a :class:`PreparedSample`: the checked ``SampleRequest`` (its
``seq_id`` still 0: the number is taken when the sample starts, see :func:`with_seq_id`), the
public method's name for telemetry, and the transform that turns the decoded result into what
the method returns.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from tinker_actors.clients._checks import check_sample_request
from tinker_actors.errors import APIResponseValidationError, InvalidInputError
from tinker_actors.types import ModelInput, SampleRequest, SampleResponse, SamplingParams

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "PreparedSample",
    "build_sample_request",
    "identity",
    "prompt_logprobs_of",
    "with_seq_id",
]


class PreparedSample(NamedTuple):
    """A checked sample or compute_logprobs request, ready for :meth:`SamplingClient.submit`."""

    request: SampleRequest
    method: str
    transform: Callable[[SampleResponse], Any]


def build_sample_request(
    sampler_id: str,
    record_stability: bool,
    prompt: ModelInput,
    num_samples: int,
    sampling_params: SamplingParams,
    *,
    prompt_logprobs: bool,
    prompt_logprobs_last_n: int | None,
    **extra: Any,
) -> SampleRequest:
    """The ``asample`` request for ``sampler_id`` (seq id 0), every argument checked.

    Raises:
        TypeError: a prompt or sampling params of the wrong type.
        InvalidInputError: a bad count, or what :func:`check_sample_request` refuses.
    """
    if not isinstance(prompt, ModelInput):
        raise TypeError(f"prompt must be a ModelInput, got {type(prompt).__name__}")
    if not isinstance(sampling_params, SamplingParams):
        raise TypeError(
            f"sampling_params must be a SamplingParams, got {type(sampling_params).__name__}"
        )
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise InvalidInputError(f"num_samples must be an int >= 1, got {num_samples!r}")
    request = SampleRequest(
        num_samples=num_samples,
        prompt=prompt,
        sampling_params=sampling_params,
        sampling_session_id=sampler_id,
        seq_id=0,
        # always sent, false included, as the official client does (wire parity)
        prompt_logprobs=bool(prompt_logprobs),
        prompt_logprobs_last_n=prompt_logprobs_last_n,
        record_stability_info=record_stability,
        **extra,
    )
    check_sample_request(request)
    return request


def with_seq_id(request: SampleRequest, seq_id: int) -> SampleRequest:
    """``request`` numbered ``seq_id``: a copy with the field set, not re-validated (what
    ``msgspec.structs.replace`` would redo is unaffected by a sequence number)."""
    numbered = copy.copy(request)
    msgspec.structs.force_setattr(numbered, "seq_id", seq_id)
    return numbered


def identity(result: SampleResponse) -> SampleResponse:
    """``sample``'s transform: the response as decoded."""
    return result


def prompt_logprobs_of(result: SampleResponse) -> list[float | None]:
    """``compute_logprobs``'s transform: the prompt's logprobs, which the server must send."""
    logprobs = result.prompt_logprobs
    if logprobs is None:
        raise APIResponseValidationError(
            "the server returned no prompt logprobs for compute_logprobs", status_code=200
        )
    return logprobs
