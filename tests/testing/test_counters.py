"""ServerCounters: reading the local server's counters, and saying exactly what went wrong."""

from __future__ import annotations

from typing import Any

import pytest

from tinker_actors.testing import ServerCounters, StepOrderError
from tinker_actors.testing._counters import kind_name

FB, OS = "ForwardBackward", "OptimStep"


def counters(
    *kinds: str, failed: int = 0, seq: list[int] | None = None, extra: dict[str, Any] | None = None
) -> ServerCounters:
    applied = ["CreateModel", *kinds]
    models = {
        "s:train:0": {
            "live": True,
            "received": len(applied),
            "applied": len(applied),
            "deduplicated": 2,
            "failed": failed,
            "applied_seq_ids": seq if seq is not None else list(range(len(applied))),
            "applied_kinds": applied,
        },
        **(extra or {}),
    }
    return ServerCounters.from_dict(
        {
            "totals": {"applied:Sample": 3, "received:ForwardBackward": 5},
            "models": models,
            "faults": {"replaced": 4, "delayed": 1, "by_kind": {"503": 3, "429": 1, "pass": 9}},
            "connection_faults": {"reset": 2, "closed": 0, "stalled": 1, "injected": 3},
            "lost_answers": {"replaced": 2, "by_kind": {"502": 2}},
        }
    )


def test_kind_names() -> None:
    assert kind_name("forward_backward") == FB
    assert kind_name("ForwardBackward") == FB
    assert kind_name("sample") == "Sample"
    assert kind_name("save_weights_for_sampler") == "SaveWeightsForSampler"


def test_reading() -> None:
    c = counters(FB, OS)
    assert c.applied("sample") == 3
    assert c.received("forward_backward") == 5
    assert c.injected() == 4 + 1 + 3
    assert c.injected("503") == 3
    assert c.injected("reset") == 2
    assert c.injected("stalled") == 1
    assert c.lost() == 2
    assert c.lost("502") == 2
    model = c.model()
    assert model.count("forward_backward") == 1
    assert model.deduplicated == 2


def test_steps_applied_once_in_order() -> None:
    c = counters(FB, OS, FB, OS, "SaveWeights", FB, OS)
    assert c.assert_steps_applied_once(3).model_id == "s:train:0"
    c.assert_steps_applied_once(3, step=("forward_backward",))
    c.assert_steps_applied_once(3, model_id="s:train:0", step=(FB, OS))


def test_a_repeated_step_is_named() -> None:
    c = counters(FB, OS, FB, FB, OS, FB, OS)  # step 1's forward_backward resubmitted
    with pytest.raises(StepOrderError) as caught:
        c.assert_steps_applied_once(3)
    message = str(caught.value)
    assert "At step 1" in message
    assert "applied more than once" in message
    assert "ForwardBackward x4, OptimStep x3" in message


def test_a_whole_repeated_step() -> None:
    with pytest.raises(
        StepOrderError, match=r"ran 2 step.* applied 1 more: a step was applied more than once"
    ):
        counters(FB, OS, FB, OS, FB, OS).assert_steps_applied_once(2)


def test_a_missing_step() -> None:
    with pytest.raises(StepOrderError, match=r"At step 2: .* a step is missing"):
        counters(FB, OS, FB, OS).assert_steps_applied_once(3)


def test_out_of_order() -> None:
    with pytest.raises(StepOrderError, match="out of order"):
        counters(FB, OS, OS, FB).assert_steps_applied_once(2)


def test_failures_and_seq_order() -> None:
    with pytest.raises(StepOrderError, match="1 operation"):
        counters(FB, OS, failed=1).assert_steps_applied_once(1)
    with pytest.raises(StepOrderError, match="out of order or twice"):
        counters(FB, OS, seq=[0, 2, 1]).assert_steps_applied_once(1)


def test_choosing_the_model() -> None:
    other = {
        "s:train:1": {
            "live": True,
            "applied_kinds": ["CreateModel", FB, OS],
            "applied_seq_ids": [0, 1, 2],
        }
    }
    c = counters(FB, OS, extra=other)
    with pytest.raises(StepOrderError, match="2 models applied"):
        c.assert_steps_applied_once(1)
    c.assert_steps_applied_once(1, model_id="s:train:1")
    with pytest.raises(StepOrderError, match="no counters for model 'nope'"):
        c.model("nope")
    with pytest.raises(StepOrderError, match="no model applied"):
        ServerCounters.from_dict({"models": {}}).model()
    with pytest.raises(ValueError, match="at least one"):
        c.model("s:train:1").assert_steps_applied_once(1, step=())
