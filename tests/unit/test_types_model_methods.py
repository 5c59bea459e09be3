"""The pydantic methods on our types: refusals and the documented approximations."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    AdamParams,
    EncodedTextChunk,
    ModelInput,
    SampleRequest,
    SamplingParams,
    TensorData,
)


def test_bad_input_is_refused_with_a_typed_error_naming_the_type() -> None:
    with pytest.raises(InvalidInputError, match=r"SamplingParams.*max_tokens"):
        SamplingParams.model_validate({"max_tokens": [1]})
    with pytest.raises(InvalidInputError, match="max_tokens must be >= 0"):
        SamplingParams.model_validate({"max_tokens": -1})
    with pytest.raises(InvalidInputError, match="takes a mapping"):
        SamplingParams.model_validate([("max_tokens", 3)])
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        SamplingParams.model_validate_json("{max_tokens: 3")
    with pytest.raises(InvalidInputError, match="mode must be"):
        SamplingParams().model_dump(mode="yaml")  # type: ignore[arg-type]
    # an update is checked as a constructor argument is; the original is untouched
    params = SamplingParams(max_tokens=3)
    with pytest.raises(InvalidInputError, match="top_p"):
        params.model_copy(update={"top_p": 2.0})
    assert params.top_p == 1.0


def test_exclude_unset_leaves_out_what_holds_its_default() -> None:
    # a Struct does not record which arguments it was given: a default passed explicitly is
    # left out too (pydantic would keep learning_rate=1e-4 here)
    assert AdamParams(beta1=0.8).model_dump(exclude_unset=True) == {"beta1": 0.8}
    assert AdamParams(learning_rate=1e-4).model_dump(exclude_unset=True) == {}
    chunk = EncodedTextChunk(tokens=[1])
    assert chunk.model_dump(exclude_unset=True) == {"tokens": [1]}
    assert chunk.model_dump() == {"tokens": [1], "type": "encoded_text"}


def test_nested_tensors_and_requests_dump_and_rebuild() -> None:
    prompt = ModelInput.from_ints([1, 2, 3])
    targets = TensorData.from_numpy(np.array([[2, -1], [3, 1]], "int64"))
    request = SampleRequest(
        prompt=prompt,
        sampling_params=SamplingParams(max_tokens=2),
        sampling_session_id="s",
        seq_id=1,
        prompt_logprobs=True,
        target_prompt_logprobs=targets,
    )
    dumped = request.model_dump(mode="json")
    assert dumped["target_prompt_logprobs"] == {
        "data": [2, -1, 3, 1],
        "dtype": "int64",
        "shape": [2, 2],
    }
    assert dumped["base_model"] is None
    assert dumped["type"] == "sample"
    assert SampleRequest.model_validate(dumped) == request
    assert SampleRequest.model_validate_json(request.model_dump_json()) == request
