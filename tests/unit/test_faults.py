"""Fault plans: parsing from every source, validation errors that name the field, and the
seeded decision engine's semantics (probability, count, after, sequence, try_again, latency)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._fault_middleware import FaultDecision, FaultEngine
from tinker_actors.local._fault_proxy import ConnectionFaults
from tinker_actors.local._faults import (
    ConnectionSection,
    FaultPlan,
    FaultPlanError,
    FaultRule,
    Latency,
    endpoint_matches,
)

ASAMPLE = "/api/v1/asample"
RETRIEVE = "/api/v1/retrieve_future"

PLAN_DICT: dict[str, Any] = {
    "seed": 7,
    "rules": [
        {"endpoint": "asample", "probability": 0.2, "status": 429, "retry_after": 1},
        {"endpoint": "*", "choices": {"503": 1, "408": 2}, "probability": 0.1},
        {"endpoint": "retrieve_future", "try_again_polls": 3, "queue_state": "paused_capacity"},
        {"endpoint": "*", "latency": {"uniform": [0.01, 0.05]}},
        {"endpoint": "forward_backward", "sequence": [429, "pass", 503], "retry_after_ms": 250},
        {"endpoint": "create_model", "status": 400, "empty_body": True, "count": 2, "after": 1},
    ],
    "connection": {"reset": 0.05, "stall": 0.01, "stall_seconds": 5},
}

PLAN_TOML = """
seed = 7

[[rules]]
endpoint = "asample"
probability = 0.2
status = 429
retry_after = 1

[[rules]]
endpoint = "*"
choices = { 503 = 1, 408 = 2 }
probability = 0.1

[[rules]]
endpoint = "retrieve_future"
try_again_polls = 3
queue_state = "paused_capacity"

[[rules]]
endpoint = "*"
latency = { uniform = [0.01, 0.05] }

[[rules]]
endpoint = "forward_backward"
sequence = [429, "pass", 503]
retry_after_ms = 250

[[rules]]
endpoint = "create_model"
status = 400
empty_body = true
count = 2
after = 1

[connection]
reset = 0.05
stall = 0.01
stall_seconds = 5
"""

PLAN_FLAGS = [
    "seed=7",
    "asample:429@0.2,retry_after=1",
    "*:503|408*2@0.1",
    "retrieve_future:try_again=3,queue_state=paused_capacity",
    "*:latency=uniform(0.01, 0.05)",
    "forward_backward:sequence=429/pass/503,retry_after_ms=250",
    "create_model:400,empty,count=2,after=1",
    "connection:reset=0.05,stall=0.01,stall_seconds=5",
]


def _decide_all(engine: FaultEngine, requests: list[tuple[str, str, str | None]]) -> list[Any]:
    return [engine.decide(*request) for request in requests]


# ---------------------------------------------------------------------------------- loading


def test_dict_json_toml_and_flags_give_the_same_plan(tmp_path: Path) -> None:
    from_dict = FaultPlan.from_dict(PLAN_DICT)
    json_file = tmp_path / "plan.json"
    json_file.write_text(json.dumps(PLAN_DICT))
    toml_file = tmp_path / "plan.toml"
    toml_file.write_text(PLAN_TOML)
    assert FaultPlan.from_file(json_file) == from_dict
    assert FaultPlan.from_file(toml_file) == from_dict
    assert FaultPlan.from_flags(PLAN_FLAGS) == from_dict
    # argv-style items are accepted too
    argv = [item for spec in PLAN_FLAGS for item in ("--fault", spec)]
    assert FaultPlan.from_flags(argv) == from_dict
    assert FaultPlan.from_flags([f"--fault={spec}" for spec in PLAN_FLAGS]) == from_dict


def test_parsed_plan_has_the_written_values() -> None:
    plan = FaultPlan.from_dict(PLAN_DICT)
    assert plan.seed == 7
    assert plan.rules[0] == FaultRule(
        endpoint="asample", probability=0.2, status=429, retry_after=1.0
    )
    assert plan.rules[1].choices == {503: 1.0, 408: 2.0}
    assert plan.rules[2].try_again_polls == 3
    assert plan.rules[3].latency == Latency(uniform=(0.01, 0.05))
    assert plan.rules[4].sequence == (429, "pass", 503)
    assert plan.rules[5].empty_body
    assert plan.connection_faults() == ConnectionFaults(
        reset=0.05, stall=0.01, stall_seconds=5.0, seed=7
    )


def test_round_trips_through_plain_data() -> None:
    plan = FaultPlan.from_dict(PLAN_DICT)
    assert FaultPlan.from_dict(plan.to_dict()) == plan
    assert FaultPlan.from_json(msgspec.json.encode(plan)) == plan


def test_python_objects_and_defaults() -> None:
    plan = FaultPlan(
        rules=(FaultRule(status=503), FaultRule(latency=Latency(exponential=0.1))),
        connection=ConnectionSection(close=0.5, seed=3),
    )
    assert plan.seed == 0
    assert plan.rules[0].endpoint == "*"
    assert plan.connection_faults() == ConnectionFaults(close=0.5, seed=3)
    assert FaultPlan().connection_faults() is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*:503@0.1", {"status": 503, "probability": 0.1}),
        ("asample:429", {"endpoint": "asample", "status": 429}),
        ("*:429*3|503", {"choices": {429: 3.0, 503: 1.0}}),
        ("*:429*3|503,p=0.5", {"choices": {429: 3.0, 503: 1.0}, "probability": 0.5}),
        ("*:latency=0.25", {"latency": 0.25}),
        ("*:latency=fixed(0.25)", {"latency": Latency(fixed=0.25)}),
        ("*:latency=exp(0.1)", {"latency": Latency(exponential=0.1)}),
        (
            "*:503,latency=uniform(1,2),count=4",
            {"status": 503, "latency": Latency(uniform=(1.0, 2.0)), "count": 4},
        ),
        ("*:429,retry_after=Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("*:503,should_retry=false", {"status": 503, "should_retry": False}),
        ("*:402,detail=no credits", {"status": 402, "body": {"detail": "no credits"}}),
        ("*:status=410,method=post", {"status": 410, "method": "post"}),
        ("training_runs/*:404", {"endpoint": "training_runs/*", "status": 404}),
        ("/healthz:503", {"endpoint": "/healthz", "status": 503}),
        (
            "retrieve_future:try_again=2,queue_state=paused_rate_limit,queue_state_reason=busy",
            {
                "endpoint": "retrieve_future",
                "try_again_polls": 2,
                "queue_state": "paused_rate_limit",
                "queue_state_reason": "busy",
            },
        ),
    ],
)
def test_flag_syntax(spec: str, expected: dict[str, Any] | None) -> None:
    if expected is None:
        # a comma inside the value splits it: HTTP-dates need a plan file
        with pytest.raises(FaultPlanError, match="expected KEY=VALUE"):
            FaultPlan.from_flags([spec])
        return
    (rule,) = FaultPlan.from_flags([spec]).rules
    assert rule == FaultRule(**expected)


def test_http_date_retry_after_from_a_file() -> None:
    plan = FaultPlan.from_dict(
        {"rules": [{"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"}]}
    )
    (decision,) = _decide_all(FaultEngine(plan), [("GET", "/api/v1/healthz", None)])
    assert (b"retry-after", b"Wed, 21 Oct 2015 07:28:00 GMT") in decision.response.headers


# ----------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"rules": [{"status": 299}]}, r"rules\[0\]: status: 299"),
        ({"rules": [{"status": 429}, {"status": 700}]}, r"rules\[1\]: status: 700"),
        ({"rules": [{"status": 499}]}, r"rules\[0\]: status: 499"),
        ({"rules": [{"choices": {"429": 1, "200": 1}}]}, r"rules\[0\]: choices: 200"),
        ({"rules": [{"choices": {"429": -1}}]}, r"rules\[0\]: choices: weight"),
        ({"rules": [{"choices": {"429": 0}}]}, r"choices: the weights must not all be 0"),
        ({"rules": [{"status": 503, "probability": 1.5}]}, r"rules\[0\]: probability"),
        ({"rules": [{"status": 503, "probability": -0.1}]}, r"rules\[0\]: probability"),
        ({"rules": [{"status": 503, "probability": "often"}]}, r"rules\[0\]\.probability"),
        ({"rules": [{"statsu": 429}]}, r"rules\[0\]: .*unknown field `statsu`"),
        (
            {"rules": [{"endpoint": "asmple", "status": 429}]},
            r"rules\[0\]: endpoint: unknown endpoint 'asmple'",
        ),
        (
            {"rules": [{"endpoint": "api/v1/asample", "status": 429}]},
            r"endpoint: .*mixes the two forms",
        ),
        ({"rules": [{"endpoint": "asample?x=1", "status": 429}]}, r"endpoint: .*is not a pattern"),
        ({"rules": [{"endpoint": "", "status": 429}]}, r"endpoint: .*is not a pattern"),
        ({"rules": [{"endpoint": "a//b", "status": 429}]}, r"endpoint: .*is not a pattern"),
        ({"rules": [{"method": "FETCH", "status": 429}]}, r"rules\[0\]: method: 'FETCH'"),
        ({"rules": [{"latency": {"normal": 1}}]}, r"rules\[0\]\.latency: .*unknown field `normal`"),
        (
            {"rules": [{"latency": {"uniform": [2, 1]}}]},
            r"rules\[0\]\.latency: latency.uniform: low 2",
        ),
        ({"rules": [{"latency": {"fixed": 1, "exponential": 1}}]}, r"exactly one of"),
        ({"rules": [{"latency": {}}]}, r"exactly one of .* got none"),
        ({"rules": [{"latency": -1}]}, r"rules\[0\]: latency: must be"),
        ({"rules": [{"latency": float("inf")}]}, r"rules\[0\]: latency: must be"),
        ({"rules": [{}]}, r"rules\[0\]: rule does nothing"),
        ({"rules": [{"status": 429, "sequence": [429]}]}, r"status and sequence"),
        ({"rules": [{"sequence": []}]}, r"sequence: give at least one"),
        ({"rules": [{"sequence": [429, "skip"]}]}, r"rules\[0\]\.sequence\[1\]"),
        ({"rules": [{"sequence": [429, 200]}]}, r"sequence: 200"),
        ({"rules": [{"sequence": [429], "probability": 0.5}]}, r"probability: a sequence"),
        (
            {"rules": [{"endpoint": "asample", "try_again_polls": 2}]},
            r"try_again_polls: applies to retrieve_future only",
        ),
        ({"rules": [{"try_again_polls": -1}]}, r"try_again_polls: must be >= 0"),
        (
            {"rules": [{"status": 429, "queue_state": "paused_capacity"}]},
            r"queue_state: only meaningful",
        ),
        ({"rules": [{"try_again_polls": 1, "queue_state": "sleepy"}]}, r"rules\[0\]\.queue_state"),
        (
            {"rules": [{"latency": 1, "retry_after": 1}]},
            r"retry_after: only meaningful on a status",
        ),
        ({"rules": [{"try_again_polls": 1, "empty_body": True}]}, r"empty_body: only meaningful"),
        ({"rules": [{"status": 429, "retry_after": -2}]}, r"retry_after: must be"),
        ({"rules": [{"status": 429, "retry_after": "1\r\nx: y"}]}, r"retry_after: a header value"),
        ({"rules": [{"status": 429, "retry_after_ms": -2}]}, r"retry_after_ms: must be"),
        ({"rules": [{"status": 429, "retry_after": "bientôt"}]}, r"retry_after: .* is not ASCII"),
        ({"rules": [{"status": 400, "empty_body": True, "body": {}}]}, r"body: an empty_body"),
        ({"rules": [{"status": 429, "count": -1}]}, r"count: must be >= 0"),
        ({"rules": [{"status": 429, "after": -1}]}, r"after: must be >= 0"),
        ({"rule": []}, r"unknown field `rule`"),
        ({"seed": "x"}, r"at seed: Expected `int`"),
        ({"connection": {"reset": 0.7, "close": 0.7}}, r"at connection: .*at most 1"),
        ({"connection": {"reset": 2}}, r"at connection: .*reset must be in \[0, 1\]"),
        ({"connection": {"rst": 0.1}}, r"connection: .*unknown field `rst`"),
    ],
)
def test_invalid_plans_name_the_rule_and_field(data: dict[str, Any], where: str) -> None:
    with pytest.raises(FaultPlanError, match=where):
        FaultPlan.from_dict(data)


@pytest.mark.parametrize(
    ("flags", "where"),
    [
        (["asample:42x"], r"#0 'asample:42x': status: '42x' is not an integer"),
        (["asample:429", "asmple:429"], r"#1 'asmple:429': endpoint: unknown endpoint"),
        (["asample:429@1.5"], r"#0 .*probability: must be in \[0, 1\]"),
        (["asample:429@"], r"probability: '' is not a number"),
        (["*:latency=normal(1)"], r"latency: unknown distribution 'normal'"),
        (["*:latency=uniform(1)"], r"latency: uniform takes 2 argument"),
        (["*:latency=soon"], r"latency: 'soon' is not a number"),
        (["asample:try_again=2"], r"try_again_polls: applies to retrieve_future only"),
        (["asample:429,foo=1"], r"unknown option 'foo'"),
        (["asample:429,count=1,count=2"], r"count: given twice"),
        (["asample:429,status=503"], r"status: given twice"),
        (["asample:429,,count=1"], r"empty item"),
        (["asample:429,should_retry=maybe"], r"should_retry: 'maybe' is not true or false"),
        (["asample"], r"expected ENDPOINT:ACTION"),
        (["asample:"], r"expected ENDPOINT:ACTION"),
        (["seed=x"], r"seed: 'x' is not an integer"),
        (["seed=1", "seed=2"], r"seed: given twice"),
        (["connection:reset=2"], r"reset must be in \[0, 1\]"),
        (["connection:reset=0.1", "connection:close=0.1"], r"give one connection spec"),
        (["connection:rst=0.1"], r"unknown option 'rst'"),
        (["--fault"], r"--fault needs a value"),
        (["--faults", "x"], r"unknown flag '--faults'"),
    ],
)
def test_invalid_flags_name_the_flag_and_field(flags: list[str], where: str) -> None:
    with pytest.raises(FaultPlanError, match=where):
        FaultPlan.from_flags(flags)


def test_seed_keyword_and_flag_must_agree() -> None:
    assert FaultPlan.from_flags(["*:503"], seed=4).seed == 4
    assert FaultPlan.from_flags(["seed=4"], seed=4).seed == 4
    with pytest.raises(FaultPlanError, match="given twice"):
        FaultPlan.from_flags(["seed=4"], seed=5)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FaultPlanError, match=r"use a \.json or \.toml file"):
        FaultPlan.from_file(tmp_path / "plan.yaml")
    with pytest.raises(FaultPlanError, match="cannot read fault plan"):
        FaultPlan.from_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.toml"
    broken.write_text("seed = = 1\n")
    with pytest.raises(FaultPlanError, match=r"broken.toml"):
        FaultPlan.from_file(broken)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"rules": [{"status": 200}]}')
    with pytest.raises(FaultPlanError, match=r"bad.json\) at rules\[0\]: status: 200"):
        FaultPlan.from_file(bad_json)
    with pytest.raises(FaultPlanError, match=r"malformed|JSON"):
        FaultPlan.from_json("{")


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(FaultPlanError, match="probability"):
        FaultRule(status=503, probability=2.0)
    with pytest.raises(FaultPlanError, match="latency: give seconds"):
        FaultRule(latency=True)
    with pytest.raises(FaultPlanError, match="body: not JSON-encodable"):
        FaultRule(status=500, body={"x": object()})
    with pytest.raises(FaultPlanError, match="reset must be in"):
        ConnectionSection(reset=-1)
    # the error is an InvalidInputError, so callers catching bad input catch it
    assert issubclass(FaultPlanError, InvalidInputError)
    assert issubclass(FaultPlanError, ValueError)


def test_set_plan_rejects_non_plans() -> None:
    with pytest.raises(TypeError, match="expects a FaultPlan"):
        FaultEngine().set_plan({"rules": []})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*", "/api/v1/asample", True),
        ("*", "/metrics", True),
        ("asample", "/api/v1/asample", True),
        ("asample", "/api/v1/asample/x", False),
        ("retrieve_future", "/api/v1/retrieve_futures", False),
        ("retrieve_future*", "/api/v1/retrieve_futures", True),
        ("training_runs/*", "/api/v1/training_runs/tinker:abc/checkpoints/weights/x", True),
        ("training_runs/*", "/api/v1/training_runs", False),
        ("*_weights", "/api/v1/save_weights", True),
        ("*_weights", "/api/v1/save_weights_for_sampler", False),
        ("/api/v1/asample", "/api/v1/asample", True),
        ("/api/*", "/api/v1/telemetry", True),
        ("/healthz", "/api/v1/healthz", False),
        ("asample", "/asample", False),
    ],
)
def test_endpoint_patterns(pattern: str, path: str, matches: bool) -> None:
    assert endpoint_matches(pattern, path) is matches


def test_method_filter_is_case_insensitive() -> None:
    engine = FaultEngine(FaultPlan(rules=(FaultRule(method="post", status=503),)))
    assert engine.decide("GET", ASAMPLE).kind == "pass"
    assert engine.decide("POST", ASAMPLE).kind == "503"


# ------------------------------------------------------------------------------ semantics


def test_first_answering_rule_wins_and_later_rules_do_not_count_the_request() -> None:
    plan = FaultPlan(
        rules=(
            FaultRule(endpoint="asample", status=429),
            FaultRule(status=503, after=1),
        )
    )
    engine = FaultEngine(plan)
    assert [engine.decide("POST", ASAMPLE).kind for _ in range(3)] == ["429"] * 3
    # rule 1 never saw those requests: its `after` still skips the first one it sees
    assert [engine.decide("POST", "/api/v1/optim_step").kind for _ in range(2)] == ["pass", "503"]


def test_count_caps_injections_and_after_skips() -> None:
    engine = FaultEngine(FaultPlan(rules=(FaultRule(status=503, count=2, after=3),)))
    kinds = [engine.decide("POST", ASAMPLE).kind for _ in range(8)]
    assert kinds == ["pass", "pass", "pass", "503", "503", "pass", "pass", "pass"]
    assert engine.statistics().by_rule == {0: 2}


def test_count_zero_disables_a_rule() -> None:
    engine = FaultEngine(FaultPlan(rules=(FaultRule(status=503, count=0),)))
    assert {engine.decide("POST", ASAMPLE).kind for _ in range(5)} == {"pass"}


def test_sequence_scripts_each_request_then_passes_and_falls_through() -> None:
    plan = FaultPlan(
        rules=(
            FaultRule(endpoint="forward_backward", sequence=(429, 429, "pass", 503), after=1),
            FaultRule(endpoint="forward_backward", status=500, count=1),
        )
    )
    engine = FaultEngine(plan)
    kinds = [engine.decide("POST", "/api/v1/forward_backward").kind for _ in range(7)]
    # request 0 skipped by `after` (falls to rule 1: 500), then 429, 429, pass (rule 1 used
    # up), 503, then the sequence is exhausted
    assert kinds == ["500", "429", "429", "pass", "503", "pass", "pass"]


def test_probability_rate_and_extremes() -> None:
    engine = FaultEngine(FaultPlan(seed=3, rules=(FaultRule(status=503, probability=0.25),)))
    hits = sum(engine.decide("POST", ASAMPLE).kind == "503" for _ in range(4000))
    assert 850 <= hits <= 1150  # mean 1000, sd ~27
    never = FaultEngine(FaultPlan(rules=(FaultRule(status=503, probability=0.0),)))
    assert {never.decide("GET", ASAMPLE).kind for _ in range(200)} == {"pass"}


def test_choices_follow_their_weights() -> None:
    plan = FaultPlan(seed=1, rules=(FaultRule(choices={429: 3.0, 503: 1.0, 408: 0.0}),))
    engine = FaultEngine(plan)
    kinds = Counter(engine.decide("POST", ASAMPLE).kind for _ in range(4000))
    assert set(kinds) == {"429", "503"}
    assert 2800 <= kinds["429"] <= 3200


def test_status_response_shape() -> None:
    plan = FaultPlan(
        rules=(
            FaultRule(status=429, retry_after=1.5, retry_after_ms=1500, should_retry=True),
            FaultRule(status=402, body={"detail": "pay up", "code": 7}, should_retry=False),
            FaultRule(status=400, empty_body=True, retry_after=2),
        )
    )
    engine = FaultEngine(plan)
    first = engine.decide("POST", ASAMPLE).response
    assert first is not None
    assert first.status == 429
    assert json.loads(first.body) == {"detail": "injected fault: 429 by rule 0"}
    assert dict(first.headers) == {
        b"content-type": b"application/json",
        b"content-length": str(len(first.body)).encode(),
        b"retry-after": b"1.5",
        b"retry-after-ms": b"1500",
        b"x-should-retry": b"true",
        b"x-injected-fault": b"rule=0",
    }
    engine.set_plan(FaultPlan(rules=plan.rules[1:]))
    billing = engine.decide("POST", ASAMPLE).response
    assert billing is not None
    assert billing.status == 402
    assert json.loads(billing.body) == {"detail": "pay up", "code": 7}
    assert dict(billing.headers)[b"x-should-retry"] == b"false"
    engine.set_plan(FaultPlan(rules=plan.rules[2:]))
    decision = engine.decide("POST", ASAMPLE)
    assert decision.kind == "400_empty"
    assert decision.response is not None
    assert decision.response.body == b""
    assert dict(decision.response.headers) == {
        b"content-length": b"0",
        b"retry-after": b"2",
        b"x-injected-fault": b"rule=0",
    }


def test_latency_composes_with_a_later_status_rule() -> None:
    plan = FaultPlan(
        rules=(
            FaultRule(latency=0.5),
            FaultRule(endpoint="asample", latency=Latency(fixed=0.25), status=503),
            FaultRule(endpoint="asample", status=429),  # never reached: rule 1 always answers
        )
    )
    engine = FaultEngine(plan)
    decision = engine.decide("POST", ASAMPLE)
    assert decision.delay == 0.75
    assert decision.kind == "503"
    assert decision.latency_rules == (0, 1)
    passed = engine.decide("GET", "/api/v1/healthz")
    assert (passed.kind, passed.delay, passed.response) == ("pass", 0.5, None)
    stats = engine.statistics()
    assert stats.delayed == 3
    assert stats.by_rule == {0: 2, 1: 1, 2: 0}
    assert stats.by_kind == {"latency": 3, "503": 1, "pass": 1}
    assert stats.injected == stats.replaced + stats.delayed == 4


@pytest.mark.parametrize(
    "latency", [Latency(uniform=(0.1, 0.3)), Latency(exponential=0.2), Latency(fixed=0.1)]
)
def test_latency_distributions_are_seeded_and_in_range(latency: Latency) -> None:
    plan = FaultPlan(seed=11, rules=(FaultRule(latency=latency),))
    engine_a, engine_b = FaultEngine(plan), FaultEngine(plan)
    delays_a = [engine_a.decide("GET", ASAMPLE).delay for _ in range(500)]
    delays_b = [engine_b.decide("GET", ASAMPLE).delay for _ in range(500)]
    assert delays_a == delays_b
    assert all(d >= 0 for d in delays_a)
    mean = sum(delays_a) / len(delays_a)
    if latency.uniform is not None:
        assert all(0.1 <= d <= 0.3 for d in delays_a)
        assert 0.18 < mean < 0.22
    elif latency.exponential is not None:
        assert 0.16 < mean < 0.24
        assert len(set(delays_a)) == 500
    else:
        assert set(delays_a) == {0.1}


def test_try_again_holds_each_future_for_n_polls() -> None:
    plan = FaultPlan(
        rules=(
            FaultRule(
                endpoint="retrieve_future",
                try_again_polls=2,
                queue_state="paused_rate_limit",
                queue_state_reason="slow down",
            ),
        )
    )
    engine = FaultEngine(plan)
    kinds = [engine.decide("POST", RETRIEVE, rid).kind for rid in ["a", "b", "a", "a", "b", "b"]]
    assert kinds == ["try_again", "try_again", "try_again", "pass", "try_again", "pass"]
    decision = engine.decide("POST", RETRIEVE, "c")
    assert decision.response is not None
    assert decision.response.status == 200
    assert json.loads(decision.response.body) == {
        "type": "try_again",
        "request_id": "c",
        "queue_state": "paused_rate_limit",
        "queue_state_reason": "slow down",
    }
    # no request_id (not JSON, other body) and other paths are not held
    assert engine.decide("POST", RETRIEVE, None).kind == "pass"
    assert engine.decide("POST", "/api/v1/retrieve_futures", "d").kind == "pass"
    assert engine.needs_request_id("POST", RETRIEVE)
    assert not engine.needs_request_id("POST", ASAMPLE)
    stats = engine.statistics()
    assert stats.by_kind == {"try_again": 5, "pass": 4}
    assert stats.by_rule == {0: 5}


def test_try_again_selection_is_per_future() -> None:
    plan = FaultPlan(
        rules=(FaultRule(endpoint="retrieve_future", try_again_polls=1, after=1, count=2),)
    )
    engine = FaultEngine(plan)
    first_polls = [engine.decide("POST", RETRIEVE, f"r{i}").kind for i in range(5)]
    # future r0 skipped by `after`, r1 and r2 held once, then `count` futures are used up
    assert first_polls == ["pass", "try_again", "try_again", "pass", "pass"]
    assert [engine.decide("POST", RETRIEVE, f"r{i}").kind for i in range(5)] == ["pass"] * 5


def test_try_again_with_probability_holds_a_seeded_subset_of_futures() -> None:
    plan = FaultPlan(seed=5, rules=(FaultRule(endpoint="*", try_again_polls=3, probability=0.5),))
    engine = FaultEngine(plan)
    held = set()
    for rid in range(200):
        for _ in range(4):
            if engine.decide("POST", RETRIEVE, str(rid)).kind == "try_again":
                held.add(rid)
    assert 70 <= len(held) <= 130
    assert engine.statistics().by_kind["try_again"] == 3 * len(held)
    # a twin engine holds the same futures
    twin = FaultEngine(plan)
    assert {r for r in range(200) if twin.decide("POST", RETRIEVE, str(r)).kind != "pass"} == held


def test_counters_reset_and_set_plan_returns_the_old_counters() -> None:
    engine = FaultEngine(FaultPlan(rules=(FaultRule(status=503, count=1),)))
    engine.decide("GET", ASAMPLE)
    engine.decide("GET", ASAMPLE)
    engine.reset_counters()
    assert engine.statistics().as_dict() == {
        "requests": 0,
        "passed": 0,
        "replaced": 0,
        "delayed": 0,
        "injected": 0,
        "by_kind": {},
        "by_rule": {0: 0},
    }
    # rule progress survives reset_counters: count=1 is still used up
    assert engine.decide("GET", ASAMPLE).kind == "pass"
    old = engine.set_plan(FaultPlan(rules=(FaultRule(status=408),)))
    assert old.requests == 1
    assert old.by_kind == {"pass": 1}
    assert engine.decide("GET", ASAMPLE).kind == "408"
    assert engine.statistics().by_kind == {"408": 1}


def test_same_seed_same_decisions_other_seed_other_decisions() -> None:
    plan = FaultPlan.from_dict(PLAN_DICT)
    rng = random.Random(0)
    paths = [ASAMPLE, RETRIEVE, "/api/v1/forward_backward", "/api/v1/create_model"]
    requests = [
        ("POST", path, f"r{rng.randrange(20)}" if path == RETRIEVE else None)
        for path in (rng.choice(paths) for _ in range(400))
    ]
    first = _decide_all(FaultEngine(plan), requests)
    assert _decide_all(FaultEngine(plan), requests) == first
    other = msgspec.structs.replace(plan, seed=8)
    assert _decide_all(FaultEngine(other), requests) != first
    # set_plan reseeds: replaying the plan on a used engine repeats the decisions
    engine = FaultEngine(plan)
    _decide_all(engine, requests[:50])
    engine.set_plan(plan)
    assert _decide_all(engine, requests) == first


# ----------------------------------------------------------------------------- properties

_STATUSES = st.sampled_from([400, 402, 408, 409, 410, 429, 500, 502, 503, 504])
_ENDPOINTS = st.sampled_from(["*", "asample", "retrieve_future", "forward_backward", "/api/*"])
_LATENCY = st.one_of(
    st.none(),
    st.floats(0, 1),
    st.builds(lambda a, b: {"uniform": [min(a, b), max(a, b)]}, st.floats(0, 1), st.floats(0, 1)),
    st.builds(lambda m: {"exponential": m}, st.floats(0, 1)),
)


@st.composite
def _rules(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(["status", "choices", "sequence", "try_again", "latency"]))
    rule: dict[str, Any] = {
        "endpoint": draw(_ENDPOINTS),
        "after": draw(st.integers(0, 3)),
        "count": draw(st.none() | st.integers(0, 5)),
    }
    latency = draw(_LATENCY)
    if latency is not None:
        rule["latency"] = latency
    if action != "sequence":
        rule["probability"] = draw(st.floats(0, 1))
    if action == "status":
        rule["status"] = draw(_STATUSES)
        rule["empty_body"] = draw(st.booleans())
    elif action == "choices":
        rule["choices"] = draw(st.dictionaries(_STATUSES, st.floats(0.1, 5), min_size=1))
    elif action == "sequence":
        rule["sequence"] = draw(st.lists(_STATUSES | st.just("pass"), min_size=1, max_size=6))
    elif action == "try_again":
        rule["endpoint"] = draw(st.sampled_from(["*", "retrieve_future"]))
        rule["try_again_polls"] = draw(st.integers(1, 3))
    elif "latency" not in rule:
        rule["latency"] = 0.1
    return rule


_REQUESTS = st.lists(
    st.tuples(
        st.sampled_from(["GET", "POST"]),
        st.sampled_from([ASAMPLE, RETRIEVE, "/api/v1/forward_backward", "/healthz"]),
        st.none() | st.sampled_from(["a", "b", "c"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    rules=st.lists(_rules(), max_size=5),
    seed=st.integers(0, 2**32),
    requests=_REQUESTS,
)
def test_property_reproducible_and_counters_match_decisions(
    rules: list[dict[str, Any]], seed: int, requests: list[tuple[str, str, str | None]]
) -> None:
    plan = FaultPlan.from_dict({"seed": seed, "rules": rules})
    engine = FaultEngine(plan)
    decisions: list[FaultDecision] = _decide_all(engine, requests)
    assert _decide_all(FaultEngine(plan), requests) == decisions

    stats = engine.statistics()
    answered = [d for d in decisions if d.response is not None]
    assert stats.requests == len(requests) == stats.passed + stats.replaced
    assert stats.replaced == len(answered)
    assert stats.delayed == sum(len(d.latency_rules) for d in decisions)
    kinds = Counter(d.kind for d in decisions)
    kinds.update({"latency": stats.delayed})
    assert stats.by_kind == {k: v for k, v in kinds.items() if v}
    for index in range(len(rules)):
        fired = sum(
            d.rule == index or (index in d.latency_rules and d.rule != index) for d in decisions
        )
        assert stats.by_rule[index] == fired
        count = plan.rules[index].count
        if count is not None and plan.rules[index].try_again_polls == 0:
            assert stats.by_rule[index] <= count
    for d in decisions:
        assert d.delay >= 0
        if d.response is not None:
            assert d.rule is not None
            assert int(dict(d.response.headers)[b"content-length"]) == len(d.response.body)
