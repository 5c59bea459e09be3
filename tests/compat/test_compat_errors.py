"""The exceptions behave as 0.38's: built with its arguments, read through its attributes.

Code moved onto tinker_actors.compat raises these in its own fault tests
(``tinker.RateLimitError("slow", response=..., body=None)``) and reads ``e.response``,
``e.request`` and ``e.status_code`` in its handlers; a missing attribute there turns a handled
failure into a crash. Each row is built the same way with the official class and ours.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import tinker_actors.compat as compat
from tinker_actors.local import LocalServer
from tinker_actors.testing import server_in_thread

tinker = pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")

pytestmark = pytest.mark.interop

KEY = "tml-compat-errors-key"
URL = "http://127.0.0.1:9/api/v1/sample"
STATUSES = {
    "BadRequestError": 400, "AuthenticationError": 401, "BillingError": 402,
    "PermissionDeniedError": 403, "NotFoundError": 404, "ConflictError": 409,
    "UnprocessableEntityError": 422, "RateLimitError": 429, "InternalServerError": 503,
    "APIStatusError": 418,
}  # fmt: skip
STATUS_CLASSES = list(STATUSES)


def _response(status: int) -> httpx.Response:
    request = httpx.Request("POST", URL)
    headers = {"retry-after": "2", "x-request-id": "req-7"}
    return httpx.Response(status, request=request, headers=headers, json={"detail": "no"})


# (label, build(module) -> exception): the official SDK's own constructor calls
BUILDS: list[tuple[str, Callable[[Any], BaseException]]] = [
    ("APIError", lambda m: m.APIError("failed", httpx.Request("GET", URL), body={"a": 1})),
    ("APIConnectionError(request)", lambda m: m.APIConnectionError(httpx.Request("GET", URL))),
    (
        "APIConnectionError(request=, message=)",
        lambda m: m.APIConnectionError(request=httpx.Request("GET", URL), message="reset"),
    ),
    ("APIConnectionError(request, message)", lambda m: m.APIConnectionError(
        httpx.Request("GET", URL), "reset")),
    ("APITimeoutError(request)", lambda m: m.APITimeoutError(httpx.Request("POST", URL))),
    ("APITimeoutError(request=)", lambda m: m.APITimeoutError(request=httpx.Request("POST", URL))),
    (
        "APIResponseValidationError(response, body)",
        lambda m: m.APIResponseValidationError(_response(200), {"x": 1}),
    ),
    (
        "APIResponseValidationError(response=, body=, message=)",
        lambda m: m.APIResponseValidationError(response=_response(200), body=None, message="bad"),
    ),
    (
        "RequestFailedError",
        lambda m: m.RequestFailedError("boom", "req-1", m.types.RequestErrorCategory.User),
    ),
    *[
        (f"{name}(message, response=, body=)", lambda m, n=name, s=status: getattr(m, n)(
            "Error code", response=_response(s), body={"detail": "no"}))
        for name, status in STATUSES.items()
    ],
    ("NotFoundError(message, response, body)", lambda m: m.NotFoundError(
        "gone", _response(404), None)),
]  # fmt: skip

ATTRIBUTES = ["message", "body", "status_code", "category", "request_id"]


def _view(error: BaseException) -> dict[str, Any]:
    view: dict[str, Any] = {"type": type(error).__name__}
    for name in ATTRIBUTES:
        if hasattr(error, name):
            view[name] = getattr(error, name)
    request = getattr(error, "request", None)
    if isinstance(request, httpx.Request):
        view["request"] = (request.method, str(request.url))
    response = getattr(error, "response", None)
    if isinstance(response, httpx.Response):
        view["response"] = (response.status_code, response.headers.get("retry-after"))
    return view


@pytest.mark.parametrize(("label", "build"), BUILDS, ids=[label for label, _ in BUILDS])
def test_built_with_the_official_arguments_reads_the_same(
    label: str, build: Callable[[Any], BaseException]
) -> None:
    theirs, ours = build(tinker), build(compat)
    official = _view(theirs)
    if label == "RequestFailedError":  # ours adds the id and category to the text: say so
        assert str(ours) == "boom (request_id=req-1, category=user)"
    else:
        assert str(ours) == str(theirs)
    assert {k: v for k, v in _view(ours).items() if k in official} == official
    back = pickle.loads(pickle.dumps(ours))
    assert _view(back) == _view(ours)


@pytest.mark.parametrize("name", STATUS_CLASSES)
def test_class_level_status_codes_match(name: str) -> None:
    theirs = getattr(getattr(tinker, name), "status_code", None)
    assert getattr(getattr(compat, name), "status_code", None) == theirs


def test_a_status_subclass_needs_no_status_and_the_base_class_says_what_it_needs() -> None:
    assert compat.RateLimitError("slow").status_code == 429
    with pytest.raises(TypeError, match="status_code= or response="):
        compat.APIStatusError("which status?")


@pytest.fixture
def served() -> Iterator[tuple[str, LocalServer]]:
    with server_in_thread() as (url, server):
        yield url, server


@pytest.mark.filterwarnings("ignore:DEPRECATED. TrainingClient.load_state:FutureWarning")
def test_an_error_from_the_server_carries_request_and_response_but_not_the_key(
    served: tuple[str, LocalServer],
) -> None:
    url, _ = served
    with compat.ServiceClient(base_url=url, api_key=KEY) as service:
        tc = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        with pytest.raises(compat.NotFoundError) as caught:
            tc.load_state(f"tinker://{tc.model_id}/weights/never-saved").result()
    error = caught.value
    assert error.status_code == error.response.status_code == 404
    assert error.request.url.path.endswith("/load_weights")
    assert error.request_id == error.response.headers.get("x-request-id")
    assert "never-saved" in str(error.response.json())
    assert KEY not in repr(error.request.headers)
    data = pickle.dumps(error)
    assert KEY.encode() not in data
    assert pickle.loads(data).response.json() == error.response.json()
