"""Results, REST responses, tinker:// paths and value semantics behave as in tinker.types 0.38.

The companion of ``test_types_behaviour.py`` (inputs: ModelInput, TensorData, Datum and
parameters), with the same approach: ``both`` runs a test against the official module and ours;
where ours deliberately differs, the test says so and checks our behaviour instead.
"""

from __future__ import annotations

import copy
import pickle
import types as pytypes
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

tinker = pytest.importorskip(
    "tinker", reason="the official SDK (tinker==0.38.0) is an interop-only peer"
)
import tinker.types as official  # noqa: E402

import tinker_actors.types as ours  # noqa: E402
from tinker_actors.errors import InvalidInputError  # noqa: E402

pytestmark = pytest.mark.interop

both = pytest.mark.parametrize("T", [official, ours], ids=["official", "ours"])


# -- responses -----------------------------------------------------------------------------------


@both
def test_sample_results(T: pytypes.ModuleType) -> None:
    seq = T.SampledSequence(
        "stop", "s-1", np.array([5, 6], dtype=np.int32), np.array([-0.5, -1.0], dtype=np.float32)
    )
    assert (seq.stop_reason, seq.sequence_id, seq.tokens, seq.logprobs) == (
        "stop",
        "s-1",
        [5, 6],
        [-0.5, -1.0],
    )
    assert seq.topk_logprobs is None
    bare = T.SampledSequence(stop_reason="length", sequence_id="s-2")
    assert (bare.tokens, bare.logprobs) == ([], None)
    response = T.SampleResponse([seq], np.array([np.nan, -0.25], dtype=np.float32))
    assert response.sequences[0].tokens == [5, 6]
    assert response.prompt_logprobs == [None, -0.25]
    assert response.prompt_cache_hit_tokens == 0
    assert response.topk_prompt_logprobs is None
    assert pickle.loads(pickle.dumps(response)).prompt_logprobs == [None, -0.25]


@both
def test_sample_results_built_from_lists(T: pytypes.ModuleType) -> None:
    # 0.38's list-based construction, which fakes of a sampling client use (tinker-cookbook's
    # own tests build every fake response this way): the lists come back exactly (0.1 stays
    # 0.1, not its float32), None marks a prompt position not computed
    topk = [[(3, -0.1), (4, -2.0)], None, [(9, -0.7)]]
    seq = T.SampledSequence(
        stop_reason="length",
        sequence_id="seq",
        _tokens_list=[7, 8, 9],
        _logprobs_list=[-0.1, -1.0, -2.0],
        _topk_logprobs_list=topk,
    )
    assert (seq.tokens, seq.logprobs, seq.topk_logprobs) == ([7, 8, 9], [-0.1, -1.0, -2.0], topk)
    response = T.SampleResponse(
        sequences=[seq],
        prompt_cache_hit_tokens=2,
        _prompt_logprobs_list=[None, -0.1],
        _topk_prompt_logprobs_list=[None, [(5, -0.1)]],
    )
    assert response.prompt_logprobs == [None, -0.1]
    assert response.topk_prompt_logprobs == [None, [(5, -0.1)]]
    assert response.sequences[0].tokens == [7, 8, 9]
    copied = pickle.loads(pickle.dumps(response))
    assert (copied.prompt_logprobs, copied.sequences[0].logprobs) == ([None, -0.1], seq.logprobs)


def test_sample_results_built_from_lists_have_arrays_too_unlike_0_38() -> None:
    # 0.38 leaves the *_np fields None when built from lists; ours fills them from the lists,
    # so code that reads the arrays works on a fake response too, and refuses what is not a
    # list of numbers with a typed error at construction, not at first use
    seq = ours.SampledSequence("stop", "s", _tokens_list=[1, 2], _logprobs_list=[-0.5, -0.25])
    assert seq.tokens_np.tolist() == [1, 2]
    assert seq.logprobs_np is not None
    assert seq.logprobs_np.dtype == np.float32
    response = ours.SampleResponse([seq], _prompt_logprobs_list=[None, -0.5])
    assert response.prompt_logprobs_np is not None
    assert np.isnan(response.prompt_logprobs_np[0])
    with pytest.raises(InvalidInputError, match="_tokens_list must be a list"):
        ours.SampledSequence("stop", "s", _tokens_list=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="_logprobs_list"):
        ours.SampledSequence("stop", "s", _logprobs_list=[[-0.5]])


@both
def test_training_results(T: pytypes.ModuleType) -> None:
    logprobs = T.TensorData(data=[-0.5, -1.5], dtype="float32")
    out = T.ForwardBackwardOutput("ArrayRecord", [{"logprobs": logprobs}])
    assert out.metrics == {}
    assert out.loss_fn_outputs[0]["logprobs"].tolist() == [-0.5, -1.5]
    assert T.ForwardBackwardOutput("A", [], {"loss:sum": 1.0}).metrics == {"loss:sum": 1.0}
    assert T.OptimStepResponse().metrics is None
    assert T.OptimStepResponse(metrics={"grad_norm": 2.0}).metrics == {"grad_norm": 2.0}
    assert T.OptimStepResponse(metrics={"a": 1.0}) == T.OptimStepResponse(metrics={"a": 1.0})
    copied = copy.deepcopy(out)
    assert copied.loss_fn_outputs[0]["logprobs"].tolist() == [-0.5, -1.5]


T0 = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
CHECKPOINT = {
    "checkpoint_id": "weights/step-1",
    "checkpoint_type": "training",
    "time": T0,
    "tinker_path": "tinker://run/weights/step-1",
    "size_bytes": 10,
}


@both
def test_rest_responses(T: pytypes.ModuleType) -> None:
    ckpt = T.Checkpoint(**CHECKPOINT)
    assert (ckpt.public, ckpt.expires_at, ckpt.user_metadata) == (False, None, None)
    assert ckpt == T.Checkpoint(**CHECKPOINT)
    assert hash(ckpt) == hash(T.Checkpoint(**CHECKPOINT))
    run = T.TrainingRun(
        training_run_id="run",
        base_model="m",
        model_owner="o",
        is_lora=True,
        last_request_time=T0,
        last_checkpoint=ckpt,
    )
    assert (run.corrupted, run.lora_rank, run.last_checkpoint.checkpoint_id) == (
        False,
        None,
        "weights/step-1",
    )
    page = T.CheckpointsListResponse(checkpoints=[ckpt])
    assert page.cursor is None
    assert page.checkpoints[0].tinker_path.endswith("step-1")
    assert pickle.loads(pickle.dumps(run)) == run
    saved = T.SaveWeightsForSamplerResponse(path="tinker://run:train:0/sampler_weights/s 1")
    assert saved.get_console_url().endswith("/checkpoints/run%3Atrain%3A0/sampler_weights%2Fs%201")
    assert "mode=checkpoint" in saved.get_playground_url()


def test_console_urls_match_0_38() -> None:
    path = "tinker://r:train:0/weights/a b"
    assert ours.SaveWeightsResponse(path=path).get_console_url() == (
        official.SaveWeightsResponse(path=path).get_console_url()
    )
    sampler = "tinker://r/sampler_weights/x"
    assert ours.SaveWeightsForSamplerResponse(path=sampler).get_playground_url() == (
        official.SaveWeightsForSamplerResponse(path=sampler).get_playground_url()
    )


@both
def test_request_error_category_members(T: pytypes.ModuleType) -> None:
    assert T.RequestErrorCategory.User == "user"
    assert T.RequestErrorCategory.Server.value == "server"
    assert T.RequestErrorCategory("unknown") is T.RequestErrorCategory.Unknown


# -- tinker:// paths -----------------------------------------------------------------------------


PATHS = [
    "tinker://run:train:0/weights/step-10",
    "tinker://r/sampler_weights/s",
    "tinker://r/external_weights/e",
    "tinker:///weights/",
    "tinker://r/weights/",
    "tinker://r/weights",
    "tinker://r/weights/a/b",
    "tinker://r//a",
    "tinker://r/checkpoints/a",
    "tinker://",
    "Tinker://r/weights/a",
    " tinker://r/weights/a",
    "tinker://r/weights/a ",
    "tinker://r/weights/a?x=1#f",
    "s3://r/weights/a",
    "",
]


def _parse(T: pytypes.ModuleType, path: str) -> tuple[str, str, str, str] | str:
    try:
        p = T.ParsedCheckpointTinkerPath.from_tinker_path(path)
    except ValueError:
        return "refused"
    return (p.tinker_path, p.training_run_id, p.checkpoint_type, p.checkpoint_id)


@pytest.mark.parametrize("path", PATHS)
def test_parsed_checkpoint_path_matches_0_38(path: str) -> None:
    assert _parse(ours, path) == _parse(official, path)


@given(
    st.lists(
        st.sampled_from(["tinker://", "/", "r", ":", "weights", "sampler_weights", "x", ""]),
        max_size=8,
    ).map("".join)
)
def test_parsed_checkpoint_path_accepts_and_refuses_exactly_what_0_38_does(path: str) -> None:
    assert _parse(ours, path) == _parse(official, path)


def test_parsed_checkpoint_path_is_a_value() -> None:
    parsed = ours.ParsedCheckpointTinkerPath.from_tinker_path("tinker://r/weights/a")
    assert parsed == ours.ParsedCheckpointTinkerPath.from_tinker_path("tinker://r/weights/a")
    assert hash(parsed) == hash(
        ours.ParsedCheckpointTinkerPath.from_tinker_path("tinker://r/weights/a")
    )
    # TinkerPath (ours) shares the splitter but also refuses empty parts.
    with pytest.raises(InvalidInputError, match="must not be empty"):
        ours.TinkerPath.parse("tinker:///weights/a")


# -- value semantics -----------------------------------------------------------------------------


def _instances(T: pytypes.ModuleType) -> dict[str, Any]:
    """One instance of each type 0.38 code builds or receives, built alike in both."""
    mi = T.ModelInput.from_ints([1, 2, 3])
    tensor = T.TensorData(data=[1, 2, 3], dtype="int64")
    span = T.SampledProvenanceSpan(sequence_id="s", length=3)
    return {
        "ModelInput": mi,
        "EncodedTextChunk": T.EncodedTextChunk(tokens=[1, 2]),
        "ImageChunk": T.ImageChunk(data=b"x", format="png", expected_tokens=2),
        "ImageAssetPointerChunk": T.ImageAssetPointerChunk(format="png", location="s3://x"),
        "DmelChunk": T.DmelChunk(dmel=bytes([0, 1, 4])),
        "TensorData": tensor,
        "Datum": T.Datum(mi, {"target_tokens": tensor}),
        "Datum+spans": T.Datum(mi, {"target_tokens": tensor}).with_provenance([span], [span]),
        "SamplingParams": T.SamplingParams(max_tokens=5, seed=1),
        "AdamParams": T.AdamParams(learning_rate=1e-3),
        "DimuonParams": T.DimuonParams(learning_rate=1e-2),
        "LoraConfig": T.LoraConfig(rank=4),
        "PromptProvenanceSpan": T.PromptProvenanceSpan(sequence_id="p", length=1),
        "SampledProvenanceSpan": span,
        "ParsedCheckpointTinkerPath": T.ParsedCheckpointTinkerPath.from_tinker_path(
            "tinker://r/weights/a"
        ),
        "Checkpoint": T.Checkpoint(**CHECKPOINT),
        "OptimStepResponse": T.OptimStepResponse(metrics={"m": 1.0}),
        "ForwardBackwardOutput": T.ForwardBackwardOutput("ArrayRecord", [{"x": tensor}]),
        "SampledSequence": T.SampledSequence("stop", "s", np.array([1], dtype=np.int32)),
        "DimuonOptimizerConfig": T.DimuonOptimizerConfig(),
    }


NAMES = list(_instances(ours))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("name", NAMES)
def test_hashable_where_0_38_hashes_by_value(name: str) -> None:
    theirs, mine = _instances(official)[name], _instances(ours)[name]
    if name == "TensorData":  # 0.38 hashes by identity (eq=False); ours compares by value
        assert not _hashable(mine)
        return
    if name in {"SampledSequence", "ForwardBackwardOutput", "Datum", "Datum+spans"}:
        # 0.38's dataclasses hash their fields, which hold arrays, lists or dicts: unhashable.
        assert not _hashable(theirs)
    assert _hashable(mine) == _hashable(theirs)
    if _hashable(mine):
        assert hash(mine) == hash(_instances(ours)[name])


@pytest.mark.parametrize("name", NAMES)
def test_equal_when_built_alike_and_survives_pickle_and_copy(name: str) -> None:
    mine = _instances(ours)[name]
    again = _instances(ours)[name]
    assert mine == again  # by value, also where 0.38 compares arrays or TensorData by identity
    for copied in (pickle.loads(pickle.dumps(mine)), copy.copy(mine), copy.deepcopy(mine)):
        assert type(copied) is type(mine)
        assert copied == mine
    assert repr(mine).startswith(type(mine).__name__)
