"""0.38's two prompt-scoring extras of a sample request, as both backends answer them.

* ``target_prompt_logprobs``: an int64 ``[len(prompt) - 1, K]`` tensor of token ids, dense or
  CSR; cell ``[i, j]`` asks for the logprob of that id at prompt position ``i + 1`` (the
  distribution the model predicts after position ``i``); ``-1`` asks for nothing. The answer
  is a float32 tensor of the same shape *and layout* (CSR in, the same CSR out), ``0.0`` where
  nothing was asked.
* ``prompt_alt_tokens_k``: ``k`` independent draws, with replacement and at the request's
  temperature, from the distribution at every prompt position after the first, with the
  model's logprob of each: two dense ``[len(prompt) - 1, k]`` tensors.

A backend computes a dense ``[len(prompt) - 1, K]`` matrix of logprobs for :func:`target_ids`;
:func:`answer_targets` puts it back in the request's layout. :func:`check_targets` is what
the server refuses before it accepts a request (and what a backend checks again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinker_actors.local._backend import BackendInputError
from tinker_actors.types import PromptAltTokens, TensorData

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["alt_tokens", "answer_targets", "check_targets", "target_ids"]

#: The id of a cell that asks for nothing.
NO_TARGET = -1


def check_targets(target: TensorData, prompt_length: int, vocab_size: int, max_k: int) -> None:
    """Refuse a ``target_prompt_logprobs`` tensor that cannot be answered.

    Raises:
        BackendInputError: the wrong dtype or shape, too many columns, or an id outside
            ``[-1, vocab_size)``; the message says which and what is expected.
    """
    if target.dtype != "int64":
        raise BackendInputError(
            f"target_prompt_logprobs must hold int64 token ids, got {target.dtype}"
        )
    shape = target.dims
    rows = max(prompt_length - 1, 0)
    if shape is None or len(shape) != 2 or shape[0] != rows:
        got = "1-D" if shape is None else f"shape {list(shape)}"
        raise BackendInputError(
            f"target_prompt_logprobs must be [len(prompt) - 1, K] = [{rows}, K] for this "
            f"{prompt_length}-token prompt, got {got}"
        )
    if shape[1] > max_k:
        raise BackendInputError(
            f"target_prompt_logprobs has {shape[1]} columns; at most {max_k} token ids a position"
        )
    values = target.array
    if values.size and (int(values.min()) < NO_TARGET or int(values.max()) >= vocab_size):
        raise BackendInputError(
            f"target_prompt_logprobs ids must be in [0, {vocab_size}), or -1 for no request; "
            f"got {int(values.min())}..{int(values.max())}"
        )


def target_ids(target: TensorData) -> npt.NDArray[np.int64]:
    """The requested ids as a dense ``[len(prompt) - 1, K]`` array, ``-1`` where none."""
    return np.asarray(target.to_numpy(pad_value=NO_TARGET), dtype=np.int64)


def answer_targets(target: TensorData, logprobs: npt.NDArray[np.float32]) -> TensorData:
    """The answer to ``target`` from the dense ``logprobs`` of :func:`target_ids`' cells: the
    request's shape and layout, ``0.0`` in every cell that asked for nothing."""
    # the stored cells: every cell of a dense tensor, the listed ones of a CSR tensor
    crow, col = target.crow_array, target.col_array
    if crow is None or col is None:
        picked = logprobs
    else:
        picked = logprobs[np.repeat(np.arange(logprobs.shape[0]), np.diff(crow)), col]
    answer = np.where(target.array == NO_TARGET, np.float32(0.0), picked).astype(np.float32)
    if crow is None or col is None:
        return TensorData.from_numpy(answer)
    return TensorData(
        data=answer,
        dtype="float32",
        shape=list(logprobs.shape),
        sparse_crow_indices=crow,
        sparse_col_indices=col,
    )


def alt_tokens(tokens: npt.NDArray[np.int64], logprobs: npt.NDArray[np.float32]) -> PromptAltTokens:
    """Wrap ``[len(prompt) - 1, k]`` draws and their logprobs for a response."""
    return PromptAltTokens(
        tokens=TensorData.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)),
        logprobs=TensorData.from_numpy(np.ascontiguousarray(logprobs, dtype=np.float32)),
    )
