"""Our wire Structs against the official SDK's pydantic models (tinker 0.38).

Requests: the official SDK sends ``model_dump(request, exclude_unset=False, exclude_none=True,
mode="json")`` (``tinker/resources/*.py``). For a representative instance of every request
type, our JSON must be accepted by the official (strict, ``extra="forbid"``) model and equal
that model's dump. Responses: the official model's full JSON dump (nulls included) must decode
with our Struct to the same values.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

tinker = pytest.importorskip(
    "tinker", reason="the official SDK (tinker==0.38.0) is an interop-only peer"
)
pydantic = pytest.importorskip("pydantic")

import tinker.types as official_types  # noqa: E402

from tinker_actors.types import (  # noqa: E402
    CreateSessionResponse,
    FinishSessionRequest,
    RequestStruct,
    ResponseStruct,
    SaveWeightsResponse,
    TinkerPath,
    json_dec_hook,
    json_enc_hook,
)

sys.path.insert(0, str(Path(__file__).parent.parent / "unit"))
from test_types_json import EXAMPLES  # noqa: E402

pytestmark = pytest.mark.interop


def _official_classes() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for info in pkgutil.iter_modules(official_types.__path__):
        module = importlib.import_module(f"tinker.types.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, pydantic.BaseModel):
                found.setdefault(name, obj)
    return found


OFFICIAL = _official_classes()
# Our names for official types that are unions (validated through a TypeAdapter).
OFFICIAL_ALIASES: dict[str, Any] = {
    "OptimizerConfig": importlib.import_module("tinker.types.optimizer").OptimizerConfig,
}
# Bodies the official SDK builds as plain dicts (no model): the expected JSON, by our type.
OFFICIAL_LITERAL_BODIES = {
    "AuthTokenRequest": "service.py: body={}",
    "CancelFutureRequest": 'futures: {"request_id": id}',
    "ClientDynamicConfigRequest": 'holder: {"sdk_version": ver}',
    "FinishSessionRequest": 'service_client.py: {"reason": {"type": status}, "detail": detail}',
    "SetCheckpointTtlRequest": 'rest_client.py: {"ttl_seconds": ttl}',
    "SetSessionProjectRequest": 'rest_client.py: {"project_id": id}',
    "WeightsInfoRequest": 'rest_client.py: {"tinker_path": path}',
}
# Our types with no official model at all (the SDK reads these fields by hand, or not at all).
# Fields the official SDK reads from the raw JSON instead of its model (protocol §4.11).
OURS_ONLY_FIELDS = {
    "queue_state_reason",
    # ModelData extensions the local server reports (issue 14: client-side token checks)
    "vocab_size",
    "max_context_length",
}
NO_OFFICIAL_MODEL = {
    "ArchiveUrlResponse",
    "CompleteMetadataResponse",
    "TinkerPath",
    "TraceExportResponse",
}


def _validator(name: str) -> Any:
    if name in OFFICIAL_ALIASES:
        return pydantic.TypeAdapter(OFFICIAL_ALIASES[name])
    return pydantic.TypeAdapter(OFFICIAL[name])


def _ours_as_json(value: msgspec.Struct) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value, enc_hook=json_enc_hook))


REQUESTS = [
    e
    for e in EXAMPLES
    if isinstance(e, RequestStruct) and type(e).__name__ not in OFFICIAL_LITERAL_BODIES
]
RESPONSES = [
    e
    for e in EXAMPLES
    if isinstance(e, ResponseStruct) and type(e).__name__ not in NO_OFFICIAL_MODEL
]


def test_every_example_has_an_official_counterpart_or_a_reason() -> None:
    names = {type(e).__name__ for e in EXAMPLES}
    unexplained = {
        n
        for n in names
        if n not in OFFICIAL and n not in OFFICIAL_ALIASES and n not in OFFICIAL_LITERAL_BODIES
    } - NO_OFFICIAL_MODEL
    assert not unexplained


@pytest.mark.parametrize("request_value", REQUESTS, ids=lambda e: type(e).__name__)
def test_request_json_equals_official_dump(request_value: msgspec.Struct) -> None:
    ours = _ours_as_json(request_value)
    adapter = _validator(type(request_value).__name__)
    official = adapter.validate_python(ours)
    assert (
        adapter.dump_python(official, exclude_unset=False, exclude_none=True, mode="json") == ours
    )


@pytest.mark.parametrize("response_value", RESPONSES, ids=lambda e: type(e).__name__)
def test_official_response_json_decodes_with_ours(response_value: msgspec.Struct) -> None:
    adapter = _validator(type(response_value).__name__)
    official = adapter.validate_python(_ours_as_json(response_value))
    official_json = adapter.dump_json(official)  # nulls and defaults included
    decoded = msgspec.json.decode(official_json, type=type(response_value), dec_hook=json_dec_hook)
    # Fields the official model lacks are lost on its side; only documented ones may be.
    official_model = OFFICIAL.get(type(response_value).__name__)
    ours_only = set(response_value.__struct_fields__) - set(
        getattr(official_model, "model_fields", ())
    )
    if official_model is not None:
        assert ours_only <= OURS_ONLY_FIELDS
    expected = msgspec.structs.replace(
        response_value, **{f: getattr(decoded, f) for f in ours_only}
    )
    assert decoded == expected


def test_official_defaults_and_nulls_decode() -> None:
    saved = OFFICIAL["SaveWeightsResponse"](path="tinker://r/weights/a")  # its type is None
    assert msgspec.json.decode(saved.model_dump_json(), type=SaveWeightsResponse).path == saved.path
    created = OFFICIAL["CreateSessionResponse"](session_id="s")
    decoded = msgspec.json.decode(created.model_dump_json(), type=CreateSessionResponse)
    assert decoded == CreateSessionResponse(session_id="s")


@pytest.mark.parametrize("status", ["success", "errored", "interrupted"])
def test_finish_body_matches_the_sdk_literal(status: Any) -> None:
    sdk_body = {"reason": {"type": status}, "detail": None}
    assert _ours_as_json(FinishSessionRequest.for_status(status)) == sdk_body


@pytest.mark.parametrize(
    "path",
    [
        "tinker://r:train:0/weights/a",
        "tinker://r/sampler_weights/b",
        "tinker://r/external_weights/c",
    ],
)
def test_tinker_path_matches_official_parser(path: str) -> None:
    official = importlib.import_module(
        "tinker.types.checkpoint"
    ).ParsedCheckpointTinkerPath.from_tinker_path(path)
    ours = TinkerPath.parse(path)
    assert (ours.training_run_id, ours.checkpoint_type, ours.checkpoint_id) == (
        official.training_run_id,
        official.checkpoint_type,
        official.checkpoint_id,
    )
