"""0.38's models are pydantic; the pydantic methods real code calls on them give the same
results on our types (tinker_actors/types/_pydantic.py).

Found in the wild: proxies that ship ``prompt.model_dump(mode="json")`` and rebuild it with
``types.ModelInput.model_validate(...)``, ``types.SamplingParams.model_validate(payload)`` and
``types.LoraConfig.model_validate(...)``, then ``params.seed if params.seed is not None``.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
import pytest

import tinker_actors.compat.types as ours

official = pytest.importorskip(
    "tinker.types", reason="official tinker SDK not installed (interop extra)"
)
pydantic = pytest.importorskip("pydantic")

pytestmark = pytest.mark.interop

WHEN = datetime.datetime(2026, 12, 6, 4, 30, tzinfo=datetime.UTC)

CASES: dict[str, Any] = {
    "sampling params": lambda T: T.SamplingParams(max_tokens=5, stop=["\n"], temperature=0.5),
    "sampling params, defaults": lambda T: T.SamplingParams(),
    "stop token ids": lambda T: T.SamplingParams(stop=[7, 8], seed=3),
    "text and image": lambda T: T.ModelInput(
        chunks=[
            T.EncodedTextChunk(tokens=[1, 2]),
            T.ImageChunk(data=b"\x89PNG\r\n", format="png", expected_tokens=3),
        ]
    ),
    "adam": lambda T: T.AdamParams(learning_rate=3e-4, beta1=0.8),
    "lora": lambda T: T.LoraConfig(rank=8, train_unembed=False),
    "checkpoint": lambda T: T.Checkpoint(
        checkpoint_id="weights/a",
        checkpoint_type="training",
        time=WHEN,
        tinker_path="tinker://run/weights/a",
        size_bytes=10,
        public=False,
    ),
    "training run": lambda T: T.TrainingRun(
        training_run_id="run",
        base_model="Qwen/Qwen3-8B",
        model_owner="me",
        is_lora=True,
        lora_rank=8,
        last_request_time=WHEN,
        corrupted=False,
    ),
}
OPTIONS: list[dict[str, Any]] = [
    {},
    {"mode": "json"},
    {"exclude_none": True},
    {"exclude_defaults": True},
    {"mode": "json", "exclude_none": True, "exclude": {"seed"}},
    {"include": {"max_tokens", "chunks", "rank", "time"}},
]


def _option_id(options: dict[str, Any]) -> str:
    # sets printed sorted: str() of a set follows the process's hash seed, and test ids must
    # be the same in every process (pytest-xdist's workers compare their collections)
    return (
        ",".join(
            f"{k}={'+'.join(sorted(v)) if isinstance(v, set) else v}" for k, v in options.items()
        )
        or "defaults"
    )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("options", OPTIONS, ids=_option_id)
def test_model_dump_gives_0_38s_dict(case: str, options: dict[str, Any]) -> None:
    theirs, mine = CASES[case](official), CASES[case](ours)
    assert mine.model_dump(**options) == theirs.model_dump(**options)


@pytest.mark.parametrize("case", CASES)
def test_json_round_trips_between_the_two_sdks(case: str) -> None:
    theirs, mine = CASES[case](official), CASES[case](ours)
    assert msgspec.json.decode(mine.model_dump_json()) == msgspec.json.decode(
        theirs.model_dump_json()
    )
    cls, official_cls = type(mine), type(theirs)
    # what one SDK dumps, the other rebuilds
    assert cls.model_validate(theirs.model_dump(mode="json")) == mine
    assert cls.model_validate_json(theirs.model_dump_json()) == mine
    assert official_cls.model_validate(mine.model_dump(mode="json")) == theirs
    assert official_cls.model_validate_json(mine.model_dump_json(indent=2)) == theirs
    assert cls.model_validate(mine) is mine
    assert list(cls.model_fields) == list(official_cls.model_fields)


def test_model_copy_and_lax_validation_like_0_38() -> None:
    for T in (official, ours):
        params = T.SamplingParams.model_validate({"max_tokens": "3", "unknown": 1})
        assert (params.max_tokens, params.seed) == (3, None)
        copied = params.model_copy(update={"seed": 5})
        assert (copied.max_tokens, copied.seed, params.seed) == (3, 5, None)
        assert params.model_copy(deep=True) == params
        assert params.model_copy() is not params
        with pytest.raises(ValueError, match="max_tokens"):
            T.SamplingParams.model_validate({"max_tokens": 1.5})


def test_every_0_38_model_has_the_methods() -> None:
    names = [
        name
        for name, value in vars(official).items()
        if isinstance(value, type) and issubclass(value, pydantic.BaseModel)
    ]
    assert len(names) > 100
    missing = [
        name
        for name in names
        for method in ("model_dump", "model_dump_json", "model_validate", "model_copy")
        if not callable(getattr(getattr(ours, name), method, None))
    ]
    assert missing == []
