"""validate_forward_inputs: the local server's checks of a forward/forward_backward batch."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.local._backend import BackendInputError, validate_forward_inputs
from tinker_actors.types import Datum, ModelInput, TensorData


def datum(tokens: list[int]) -> Datum:
    return Datum(
        model_input=ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": TensorData.from_numpy(np.arange(len(tokens)))},
    )


def check(data: list[Datum], **kwargs: object) -> None:
    validate_forward_inputs(data, "cross_entropy", vocab_size=100, context_length=8, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tokens", "match"),
    [
        ([1, 100], r"datum 0: token ids must be in \[0, 100\); got 1..100"),
        ([-1, 5], r"got -1..5"),
        # the largest id a ModelInput can hold (ids beyond int32 are refused on construction)
        ([1, 2**31 - 1], r"got 1..2147483647"),
        (list(range(9)), "9 tokens exceed the model's context of 8"),
    ],
)
def test_token_ids_and_lengths_are_checked(tokens: list[int], match: str) -> None:
    with pytest.raises(BackendInputError, match=match):
        check([datum(tokens)])


def test_known_bounds_replace_the_scan() -> None:
    data = [datum([1, 2]), datum([3, 4])]
    check(data, token_bounds=[(1, 2), (3, 4)])
    # the caller's bounds are what is checked (the decoder computed them from the same ids)
    with pytest.raises(BackendInputError, match=r"datum 1: .* got 3..400"):
        check(data, token_bounds=[(1, 2), (3, 400)])
    with pytest.raises(ValueError, match="token_bounds has 1 entries for 2 datums"):
        check(data, token_bounds=[(1, 2)])
