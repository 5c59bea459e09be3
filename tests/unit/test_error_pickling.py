"""Every exception tinker_actors defines survives pickling with its type, text and attributes.

An error raised in a worker process (a process pool, a multiprocessing queue) is pickled to
reach the parent. ``BaseException`` rebuilds it as ``cls(*args)``, which our keyword-only
constructors refuse: the parent got a ``TypeError`` (or a broken pool) instead of the error.
The examples table must name every class, so a new exception without an example fails here.
"""

from __future__ import annotations

import pickle
from typing import Any

import httpx
import pytest

from tinker_actors import errors
from tinker_actors._archive import UnsafeArchiveError
from tinker_actors._pickling import PicklableError
from tinker_actors.actors._completions import CompletionPollingError
from tinker_actors.actors._poll import FutureExpiredError, OperationCancelledError, StuckError
from tinker_actors.checkpoint_download import CheckpointDownloadError
from tinker_actors.clients._checks import BadTrainingInputError
from tinker_actors.clients._rest import TraceExportError, WhoamiUnavailableError
from tinker_actors.clients._training_actor import TrainingOrderBrokenError
from tinker_actors.compat._process import ForkedRuntimeError, RuntimeClosedError
from tinker_actors.local._catalogue import CatalogueError
from tinker_actors.local._faults import FaultPlanError
from tinker_actors.local._hf_cache import ForeignRepositoryError
from tinker_actors.resume import ResumableRun, ResumeGaveUpError
from tinker_actors.supervisors import ActorExited, MailboxFull, SupervisorGaveUp
from tinker_actors.supervisors._util import NORMAL
from tinker_actors.tokenizer import TokenizerUnavailableError
from tinker_actors.transport.proto._request import DecompressionLimitError
from tinker_actors.transport.proto._wire import ProtobufDecodeError

URL = "http://127.0.0.1:9/api/v1/forward_backward"
REQUEST = httpx.Request("POST", URL)


def _examples() -> list[BaseException]:
    status = [
        cls("Error code: 4xx", status_code=code, body={"detail": "no"}, method="POST", url=URL)
        for code, cls in [
            (400, errors.BadRequestError), (401, errors.AuthenticationError),
            (402, errors.BillingError), (403, errors.PermissionDeniedError),
            (404, errors.NotFoundError), (409, errors.ConflictError),
            (422, errors.UnprocessableEntityError), (429, errors.RateLimitError),
            (503, errors.InternalServerError), (418, errors.APIStatusError),
        ]
    ]  # fmt: skip
    return [
        *status,
        errors.TinkerError("plain"),
        errors.InvalidInputError("bad input"),
        errors.APIError("failed", method="GET", url=URL),
        errors.APIConnectionError("reset", method="POST", url=URL),
        errors.APITimeoutError(REQUEST),
        errors.SessionLostError("session-1"),
        errors.APIResponseValidationError("bad shape", status_code=200, body=[1], url=URL),
        errors.RequestFailedError("boom", request_id="req-1", category="user"),
        FutureExpiredError("req-2", "forward_backward"),
        OperationCancelledError("cancelled"),
        StuckError("stuck", method="POST", url=URL),
        CompletionPollingError("polling failed"),
        TokenizerUnavailableError("no tokenizer"),
        RuntimeClosedError("closed"),
        ForkedRuntimeError("forked"),
        TrainingOrderBrokenError("model-1", 3, "optim_step", ValueError("why")),
        WhoamiUnavailableError("no whoami"),
        TraceExportError("no trace"),
        CheckpointDownloadError("no checkpoint tinker://r/weights/x"),
        UnsafeArchiveError("refused the archive: member '/etc/x' is an absolute path"),
        BadTrainingInputError("datum 3: bad", index=3, field="weights"),
        DecompressionLimitError(1024),
        ProtobufDecodeError("truncated"),
        ForeignRepositoryError("foreign"),
        CatalogueError("bad catalogue"),
        FaultPlanError("bad plan"),
        ActorExited("poller", NORMAL),
        ActorExited("poller", RuntimeError("crashed")),
        MailboxFull("session", 16),
        SupervisorGaveUp("root", "poller", 3, 5.0),
        ResumeGaveUpError(ResumableRun(training=object(), step=4, checkpoints=[(2, "p")]), 3),  # type: ignore[arg-type]
    ]


def _subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def _comparable(value: Any) -> Any:
    if isinstance(value, httpx.Request):
        return ("request", value.method, str(value.url))
    if isinstance(value, httpx.Response):
        return ("response", value.status_code, value.content)
    if isinstance(value, httpx.Headers):
        return ("headers", value.multi_items())
    if isinstance(value, BaseException):
        return (type(value), value.args)
    return value


def _state(error: BaseException) -> dict[str, Any]:
    return {k: _comparable(v) for k, v in vars(error).items()}


def test_the_examples_name_every_exception_class() -> None:
    shown = {type(e) for e in _examples()}
    missing = sorted(c.__qualname__ for c in _subclasses(PicklableError) - shown)
    assert missing == []


@pytest.mark.parametrize("error", _examples(), ids=lambda e: type(e).__name__)
def test_round_trip_keeps_type_text_and_attributes(error: BaseException) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert _state(back) == _state(error)


def test_lazily_built_request_and_response_survive_too() -> None:
    error = errors.NotFoundError("gone", status_code=404, body={"detail": "x"}, url=URL)
    assert error.response.json() == {"detail": "x"}  # built and cached before pickling
    back = pickle.loads(pickle.dumps(error))
    assert back.response.status_code == 404
    assert back.response.json() == {"detail": "x"}
    assert str(back.request.url) == URL


def test_a_gave_up_resume_pickles_without_its_live_client() -> None:
    run = ResumableRun(training=object(), step=4, checkpoints=[(2, "tinker://r/weights/a")])  # type: ignore[arg-type]
    error = ResumeGaveUpError(run, 3)
    assert error.run is run
    back = pickle.loads(pickle.dumps(error))
    assert back.run is None
    assert (back.step, back.checkpoints, back.attempts) == (4, [(2, "tinker://r/weights/a")], 3)
