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
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
import numpy as np

from tinker_actors.clients._checks import check_sample_request
from tinker_actors.errors import APIResponseValidationError, InvalidInputError
from tinker_actors.types import (
    ModelInput,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    TensorData,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "PreparedSample",
    "build_sample_request",
    "identity",
    "prompt_logprobs_of",
    "sample_transform",
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
    _check_targets(request)
    return request


def _check_targets(request: SampleRequest) -> None:
    """Refuse a ``target_prompt_logprobs`` the server would: int64 ids (or -1), ``[len(prompt)
    - 1, K]`` (the rows unchecked when an image chunk leaves the length unknown)."""
    target = request.target_prompt_logprobs
    if target is None or not isinstance(target, TensorData):
        return
    if target.dtype != "int64":
        raise InvalidInputError(
            f"target_prompt_logprobs must hold int64 token ids, got {target.dtype}; build it "
            "with TensorData.from_torch_sparse(ids, pad_value=-1) from an integer tensor"
        )
    shape = target.dims
    try:
        rows: int | None = max(request.prompt.length - 1, 0)
    except InvalidInputError:
        rows = None
    if shape is None or len(shape) != 2 or (rows is not None and shape[0] != rows):
        expected = f"[{rows}, K]" if rows is not None else "[len(prompt) - 1, K]"
        got = "1-D" if shape is None else f"shape {list(shape)}"
        raise InvalidInputError(
            f"target_prompt_logprobs must be [len(prompt) - 1, K] = {expected} (row i scores "
            f"prompt position i + 1), got {got}"
        )
    if target.array.size and int(target.array.min()) < -1:
        raise InvalidInputError(
            f"target_prompt_logprobs ids must be >= 0, or -1 for no request; got "
            f"{int(target.array.min())}"
        )


def sample_transform(request: SampleRequest) -> Callable[[SampleResponse], SampleResponse]:
    """``sample``'s transform: the response as decoded, checked for the prompt extras the
    request asked for (a server that predates one ignores it and answers without)."""
    asked_targets = isinstance(request.target_prompt_logprobs, TensorData)
    last_n = request.prompt_logprobs_last_n
    last_n = last_n if isinstance(last_n, int) else None
    if not asked_targets and request.prompt_alt_tokens_k == 0 and last_n is None:
        return identity
    return partial(_with_extras, asked_targets, request.prompt_alt_tokens_k, last_n)


def _with_extras(
    targets: bool, alt_k: int, last_n: int | None, result: SampleResponse
) -> SampleResponse:
    missing = []
    if targets and result.target_prompt_logprobs is None:
        missing.append("target_prompt_logprobs")
    if alt_k > 0 and result.prompt_alt_tokens is None:
        missing.append(f"prompt_alt_tokens (prompt_alt_tokens_k={alt_k})")
    logprobs = result.prompt_logprobs_np
    if (
        last_n is not None
        and logprobs is not None
        and not np.isnan(logprobs[: max(logprobs.size - last_n, 0)]).all()
    ):
        missing.append(f"prompt_logprobs_last_n={last_n} (it scored earlier positions)")
    if missing:
        raise APIResponseValidationError(
            f"the server did not honour {', '.join(missing)}; it may predate tinker 0.38",
            status_code=200,
        )
    return result


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
