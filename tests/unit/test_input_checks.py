"""Client-side input checks (issue 14): bad input raises a typed error before anything is sent.

Each check names the datum or field at fault, what was wrong and what to do. The end-to-end
proof that a TrainingClient survives every one of these is
``tests/integration/test_bad_input_recovery.py``.
"""

from __future__ import annotations

import json

import numpy as np

from tinker_actors.transport._request import encode_json
from tinker_actors.types import ModelInput, SampleRequest, SamplingParams, TensorData


def test_a_sample_request_with_target_prompt_logprobs_encodes_to_json() -> None:
    targets = TensorData(data=[4, -1, 5, 6], dtype="int64", shape=[2, 2])
    request = SampleRequest(
        prompt=ModelInput.from_ints([1, 2, 3]),
        sampling_params=SamplingParams(max_tokens=4),
        sampling_session_id="s",
        seq_id=1,
        target_prompt_logprobs=targets,
    )
    body = json.loads(encode_json(request, None))
    assert body["target_prompt_logprobs"] == targets.to_json()
    merged = json.loads(encode_json(request, {"extra": np.int64(7)}))
    assert merged["target_prompt_logprobs"] == targets.to_json()
    assert merged["extra"] == 7


def test_numpy_values_in_a_json_body_encode_as_numbers() -> None:
    body = json.loads(encode_json({"n": np.int64(3), "xs": np.arange(2)}, None))
    assert body == {"n": 3, "xs": [0, 1]}
