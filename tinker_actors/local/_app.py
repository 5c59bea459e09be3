"""The local server's HTTP surface: a starlette app over the protocol engine.

Each route decodes its body with the request Struct from :mod:`tinker_actors.types` (so unknown
fields and bad values are refused exactly as the types define), calls the engine and encodes
the answer. Failures always answer JSON ``{"detail": "<what was wrong and what to do>"}``:

* 400 malformed JSON or protobuf, and input the model cannot take;
* 401 a missing or refused API key (``WWW-Authenticate`` with ``error="invalid_token"`` for an
  expired JWT, so clients re-exchange and replay);
* 404 unknown ids; 409 a seq_id reused for different content or a checkpoint that exists;
* 410 a finished or expired session, or a delivered / expired result;
* 422 a body that is JSON but not the expected shape;

(a 400, 404 or 422 refusal of a training request consumes its seq_id: see ``_refusals``)
* 429 sampling capacity when the client asked for backpressure.

An unexpected exception is a bug: it is logged and answered 500 with its type, never silently.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from tinker_actors.local._auth import CALLER, Authenticator, AuthError
from tinker_actors.local._body import read_body
from tinker_actors.local._core import EngineError
from tinker_actors.local._downloads import DOWNLOAD_PREFIX
from tinker_actors.local._limits import check_json_depth, over_limit
from tinker_actors.local._oai import oai_routes
from tinker_actors.local._refusals import consume_refused, peek_json_ids
from tinker_actors.local._staging import CheckpointWriteError, full_disk_message, is_full
from tinker_actors.local._usage import UsageError
from tinker_actors.types import (
    AuthTokenRequest,
    CancelFutureRequest,
    ClientConfigRequest,
    ClientDynamicConfigRequest,
    CopyWeightsRequest,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    FinishSessionRequest,
    FutureRetrieveRequest,
    FuturesRetrieveRequest,
    GetInfoRequest,
    JoinSamplingSessionRequest,
    LoadWeightsRequest,
    OptimStepRequest,
    SampleRequest,
    SaveWeightsExternalRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    SessionHeartbeatRequest,
    SessionSearchRequest,
    SetCheckpointTtlRequest,
    SetSessionProjectRequest,
    UntypedAPIFuture,
    WeightsInfoRequest,
)
from tinker_actors.types._tensor import json_dec_hook

if TYPE_CHECKING:
    from tinker_actors.local._engine import LocalEngine
    from tinker_actors.local._limits import ServerLimits

__all__ = ["build_app"]

log = logging.getLogger("tinker_actors.local")
_T = TypeVar("_T")
_S = TypeVar(
    "_S",
    OptimStepRequest,
    SaveWeightsRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsExternalRequest,
    LoadWeightsRequest,
)
_JSON = "application/json"
Handler = Callable[[Request], Awaitable[Response]]


def _reply(obj: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type=_JSON)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        msgspec.json.encode({"detail": message}),
        status_code=status,
        media_type=_JSON,
        headers=headers,
    )


def _decode_json(body: bytes, kind: type[_T], limits: ServerLimits) -> _T:
    """Decode a JSON body as ``kind``, refusing one that nests deeper than the limit."""
    check_json_depth(body, limits.max_json_depth)
    try:
        return msgspec.json.decode(body, type=kind, dec_hook=json_dec_hook)
    except msgspec.ValidationError as exc:
        raise EngineError(422, f"invalid {kind.__name__}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EngineError(400, f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise over_limit(
            "a JSON body nesting deeper", "max_json_depth", limits.max_json_depth
        ) from None


def _usage(query: Callable[[], _T]) -> _T:
    """Run a billing or audit query; a query it cannot answer as asked is a 400."""
    try:
        return query()
    except UsageError as exc:
        raise EngineError(400, str(exc)) from None


def _idempotency_key(request: Request) -> str | None:
    return request.headers.get("x-idempotency-key")


def _int_query(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise EngineError(400, f"query parameter {name} must be an integer, got {raw!r}") from None


def build_app(engine: LocalEngine, auth: Authenticator) -> Starlette:
    """Return the ASGI app answering every endpoint of protocol.md §3 for ``engine``."""
    training = engine.training
    sampling = engine.sampling
    rest = engine.rest
    extra = engine.rest_extra
    limits = engine.settings.limits

    async def _decode(request: Request, kind: type[_T]) -> _T:
        body = await read_body(request, limits.max_json_body_bytes, "max_json_body_bytes")
        return _decode_json(body, kind, limits)

    def route(
        path: str,
        handler: Handler,
        *,
        methods: tuple[str, ...] = ("POST",),
        raw_key: bool = False,
        public: bool = False,
    ) -> Route:
        """Wrap ``handler`` with authentication and the error mapping."""

        async def endpoint(request: Request) -> Response:
            request_id = uuid.uuid4().hex
            token = None
            try:
                if not public:
                    principal = auth.check(
                        request.headers.get("x-api-key"), raw_key_allowed=raw_key
                    )
                    token = CALLER.set(principal)
                response = await handler(request)
            except AuthError as exc:
                response = _error(exc.status, exc.message, exc.headers)
            except EngineError as exc:
                response = _error(exc.status, exc.message)
            except CheckpointWriteError as exc:
                response = _error(507 if exc.full else 500, str(exc))
            except ClientDisconnect:
                # the client left (or the HTTP server refused its body) before the body was in:
                # nothing was applied; the HTTP server has logged it in one line
                engine.core.counters["client_disconnects"] += 1
                response = _error(400, "the client disconnected before its request body arrived")
            except Exception as exc:
                if is_full(exc):  # e.g. a record of a new session could not be written
                    log.warning("local server: %s: %s", path, exc)
                    response = _error(507, full_disk_message(path, exc, advice=True))
                else:
                    log.exception("local server: unexpected error on %s", path)
                    name = type(exc).__name__
                    response = _error(500, f"internal error in the local server: {name}")
            finally:
                if token is not None:
                    CALLER.reset(token)
            response.headers["x-request-id"] = request_id
            engine.core.counters[f"http:{path}"] += 1
            return response

        return Route(path, endpoint, methods=list(methods))

    # -- service and sessions -----------------------------------------------------------------

    async def client_config(request: Request) -> Response:
        await _decode(request, ClientConfigRequest)
        return _reply(engine.settings.client_config)

    async def dynamic_config(request: Request) -> Response:
        await _decode(request, ClientDynamicConfigRequest)
        return _reply(engine.settings.dynamic_config)

    async def auth_token(request: Request) -> Response:
        await _decode(request, AuthTokenRequest)
        return _reply({"jwt": auth.issue(request.headers.get("x-api-key"))})

    async def api_key_me(request: Request) -> Response:
        # the key the request came with (its principal); the CLI's login checks a key with GET
        # before storing it, and a logout of a key minted for the CLI deletes it with DELETE
        principal = CALLER.get()
        assert principal is not None  # the route is authenticated
        if request.method == "DELETE":
            auth.delete(principal)
            return _reply({})
        return _reply(auth.describe(principal))

    async def healthz(request: Request) -> Response:
        return _reply({"status": "ok"})

    async def capabilities(request: Request) -> Response:
        return _reply(engine.capabilities())

    async def create_session(request: Request) -> Response:
        req = await _decode(request, CreateSessionRequest)
        return _reply(engine.create_session(req, _idempotency_key(request)))

    async def heartbeat(request: Request) -> Response:
        req = await _decode(request, SessionHeartbeatRequest)
        engine.heartbeat(req.session_id)
        return _reply({"type": "session_heartbeat"})

    async def finish(request: Request) -> Response:
        req = await _decode(request, FinishSessionRequest)
        await engine.finish_session(request.path_params["session_id"], req)
        return _reply({})

    # -- training -------------------------------------------------------------------------------

    async def create_model(request: Request) -> Response:
        req = await _decode(request, CreateModelRequest)
        return _reply(training.create_model(req, _idempotency_key(request)))

    async def get_info(request: Request) -> Response:
        req = await _decode(request, GetInfoRequest)
        return _reply(await engine.get_info(req.model_id))

    async def forward_backward(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if "application/x-protobuf" not in content_type:
            raise EngineError(
                415,
                "forward_backward bodies are protobuf (Content-Type: application/x-protobuf); "
                f"got {content_type or 'none'}",
            )
        body = await read_body(request, limits.max_body_bytes, "max_body_bytes")
        encoding = request.headers.get("content-encoding")
        return _reply(await training.forward_backward(body, encoding, _idempotency_key(request)))

    async def _sequenced(
        request: Request, kind: type[_S], call: Callable[[_S, str | None], UntypedAPIFuture]
    ) -> Response:
        """Decode and submit a sequenced training request; a refusal consumes its seq_id."""
        body = await read_body(request, limits.max_json_body_bytes, "max_json_body_bytes")
        try:
            req = _decode_json(body, kind, limits)
        except EngineError as exc:
            consume_refused(engine.core, *peek_json_ids(body), exc.status)
            raise
        try:
            return _reply(call(req, _idempotency_key(request)))
        except EngineError as exc:
            consume_refused(engine.core, req.model_id, req.seq_id, exc.status)
            raise

    async def optim_step(request: Request) -> Response:
        return await _sequenced(request, OptimStepRequest, training.optim_step)

    async def save_weights(request: Request) -> Response:
        return await _sequenced(request, SaveWeightsRequest, training.save_weights)

    async def save_for_sampler(request: Request) -> Response:
        return await _sequenced(
            request, SaveWeightsForSamplerRequest, training.save_weights_for_sampler
        )

    async def save_external(request: Request) -> Response:
        return await _sequenced(request, SaveWeightsExternalRequest, training.save_weights_external)

    async def load_weights(request: Request) -> Response:
        return await _sequenced(request, LoadWeightsRequest, training.load_weights)

    async def copy_weights(request: Request) -> Response:
        req = await _decode(request, CopyWeightsRequest)
        token = request.headers.get("x-tinker-weights-access-token")
        return _reply(await extra.copy_weights(req, _idempotency_key(request), token))

    # -- sampling -------------------------------------------------------------------------------

    async def create_sampling_session(request: Request) -> Response:
        req = await _decode(request, CreateSamplingSessionRequest)
        return _reply(sampling.create_sampling_session(req))

    async def join_sampling_session(request: Request) -> Response:
        req = await _decode(request, JoinSamplingSessionRequest)
        return _reply(sampling.join_sampling_session(req.sampling_session_id))

    async def asample(request: Request) -> Response:
        req = await _decode(request, SampleRequest)
        backpressure = request.headers.get("x-tinker-sampling-backpressure") == "1"
        future = sampling.asample(
            req, backpressure=backpressure, idempotency_key=_idempotency_key(request)
        )
        return _reply(future)

    async def get_sampler(request: Request) -> Response:
        return _reply(sampling.get_sampler(request.path_params["sampler_id"]))

    # -- futures --------------------------------------------------------------------------------

    async def retrieve_future(request: Request) -> Response:
        req = await _decode(request, FutureRetrieveRequest)
        answer = await engine.retrieve_future(
            req.request_id,
            allow_metadata_only=req.allow_metadata_only,
            accepts_protobuf="application/x-protobuf" in request.headers.get("accept", ""),
        )
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def retrieve_futures(request: Request) -> Response:
        req = await _decode(request, FuturesRetrieveRequest)
        return _reply(await engine.retrieve_futures(req))

    async def cancel_future(request: Request) -> Response:
        req = await _decode(request, CancelFutureRequest)
        engine.cancel_future(req.request_id)
        return _reply({})

    async def telemetry(request: Request) -> Response:
        body = await read_body(request, limits.max_json_body_bytes, "max_json_body_bytes")
        check_json_depth(body, limits.max_json_depth)
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise EngineError(400, f"malformed JSON body: {exc}") from None
        engine.core.counters["telemetry_batches"] += 1
        return _reply({"status": "accepted"})

    # -- REST -----------------------------------------------------------------------------------

    def ckpt(request: Request) -> tuple[str, str]:
        p = request.path_params
        return p["run_id"], f"{p['segment']}/{p['name']}"

    async def training_runs(request: Request) -> Response:
        limit = _int_query(request, "limit", 20)
        offset = _int_query(request, "offset", 0)
        return _reply(rest.training_runs(limit, offset, request.query_params.get("project_id")))

    async def training_run(request: Request) -> Response:
        return _reply(rest.training_run(request.path_params["run_id"]))

    async def run_checkpoints(request: Request) -> Response:
        return _reply(rest.checkpoints(request.path_params["run_id"]))

    async def delete_checkpoint(request: Request) -> Response:
        rest.delete_checkpoint(*ckpt(request))
        extra.forget_archives(*ckpt(request))
        return _reply({})

    async def archive(request: Request) -> Response:
        return _reply(await extra.archive_url(*ckpt(request), str(request.base_url)))

    async def publish(request: Request) -> Response:
        rest.set_public(*ckpt(request), public=request.method == "POST")
        return _reply({})

    async def set_ttl(request: Request) -> Response:
        req = await _decode(request, SetCheckpointTtlRequest)
        rest.set_ttl(*ckpt(request), req.ttl_seconds)
        return _reply({})

    async def external_urls(request: Request) -> Response:
        return _reply(rest.external_weights_urls(*ckpt(request), str(request.base_url)))

    async def user_checkpoints(request: Request) -> Response:
        limit = _int_query(request, "limit", 100)
        return _reply(rest.user_checkpoints(limit, _int_query(request, "offset", 0)))

    async def weights_info(request: Request) -> Response:
        req = await _decode(request, WeightsInfoRequest)
        return _reply(rest.weights_info(req.tinker_path))

    async def sessions(request: Request) -> Response:
        limit = _int_query(request, "limit", 20)
        return _reply(rest.sessions(limit, _int_query(request, "offset", 0)))

    async def session(request: Request) -> Response:
        return _reply(rest.session(request.path_params["session_id"]))

    async def session_project(request: Request) -> Response:
        req = await _decode(request, SetSessionProjectRequest)
        extra.set_session_project(request.path_params["session_id"], req.project_id)
        return _reply({})

    async def search_sessions(request: Request) -> Response:
        req = await _decode(request, SessionSearchRequest)
        return _reply(extra.search_sessions(req))

    async def trace_export(request: Request) -> Response:
        return _reply(extra.trace_export(request.path_params["session_id"], str(request.base_url)))

    async def download(request: Request) -> Response:
        path = engine.core.links.resolve(request.path_params["token"], request.path_params["name"])
        if path is None:
            raise EngineError(404, "unknown or expired download link; ask the API for a new URL")
        engine.core.counters["downloads"] += 1
        return FileResponse(path, media_type="application/octet-stream")

    async def billing_usage(request: Request) -> Response:
        params = request.query_params
        missing = [k for k in ("starting_on", "ending_before") if not params.get(k)]
        if missing:
            raise EngineError(400, f"billing usage needs the query parameters {missing}")
        return _reply(
            _usage(
                lambda: engine.core.usage.billing_usage(
                    engine.core.store, params["starting_on"], params["ending_before"]
                )
            )
        )

    async def checkpoint_storage(request: Request) -> Response:
        project = request.query_params.get("project_id") or None
        return _reply(engine.core.usage.checkpoint_storage(engine.core.store, project))

    async def audit(request: Request) -> Response:
        params = request.query_params
        event_type = params.get("event_type") or "all"
        return _reply(_usage(lambda: engine.core.usage.audit_log(event_type, params.get("day"))))

    v1 = "/api/v1"
    run_ckpt = v1 + "/training_runs/{run_id}/checkpoints/{segment}/{name}"
    routes = [
        route(v1 + "/client/config", client_config, raw_key=True),
        route(v1 + "/client/dynamic_config", dynamic_config),
        route(v1 + "/auth/token", auth_token, raw_key=True),
        route(v1 + "/auth/apikey/me", api_key_me, methods=("GET", "DELETE"), raw_key=True),
        route(v1 + "/healthz", healthz, methods=("GET",), public=True),
        route(v1 + "/get_server_capabilities", capabilities, methods=("GET",)),
        route(v1 + "/create_session", create_session),
        route(v1 + "/session_heartbeat", heartbeat),
        route(v1 + "/sessions/{session_id}/finish", finish),
        route(v1 + "/create_model", create_model),
        route(v1 + "/get_info", get_info),
        route(v1 + "/forward_backward", forward_backward),
        route(v1 + "/optim_step", optim_step),
        route(v1 + "/save_weights", save_weights),
        route(v1 + "/save_weights_for_sampler", save_for_sampler),
        route(v1 + "/save_weights_external", save_external),
        route(v1 + "/load_weights", load_weights),
        route(v1 + "/copy_weights", copy_weights),
        route(v1 + "/create_sampling_session", create_sampling_session),
        route(v1 + "/join_sampling_session", join_sampling_session),
        route(v1 + "/asample", asample),
        route(v1 + "/samplers/{sampler_id}", get_sampler, methods=("GET",)),
        route(v1 + "/retrieve_future", retrieve_future),
        route(v1 + "/retrieve_futures", retrieve_futures),
        route(v1 + "/cancel_future", cancel_future),
        route(v1 + "/telemetry", telemetry),
        route(v1 + "/training_runs", training_runs, methods=("GET",)),
        route(v1 + "/training_runs/{run_id}", training_run, methods=("GET",)),
        route(v1 + "/training_runs/{run_id}/checkpoints", run_checkpoints, methods=("GET",)),
        route(run_ckpt, delete_checkpoint, methods=("DELETE",)),
        route(run_ckpt + "/publish", publish, methods=("POST", "DELETE")),
        route(run_ckpt + "/ttl", set_ttl, methods=("PUT",)),
        route(run_ckpt + "/external_weights_urls", external_urls, methods=("GET",)),
        route(run_ckpt + "/archive", archive, methods=("GET",)),
        route(v1 + "/checkpoints", user_checkpoints, methods=("GET",)),
        route(v1 + "/weights_info", weights_info),
        route(v1 + "/sessions", sessions, methods=("GET",)),
        route(v1 + "/sessions/search", search_sessions),
        route(v1 + "/sessions/{session_id}", session, methods=("GET",)),
        route(v1 + "/sessions/{session_id}/project", session_project, methods=("PUT",)),
        route(v1 + "/sessions/{session_id}/trace_export", trace_export, methods=("GET",)),
        route(v1 + "/billing/usage/events", billing_usage, methods=("GET",)),
        route(v1 + "/billing/usage/checkpoints/current", checkpoint_storage, methods=("GET",)),
        route(v1 + "/audit", audit, methods=("GET",)),
        # signed download links: the token is the credential, as in a signed storage URL
        route(DOWNLOAD_PREFIX + "{token}/{name}", download, methods=("GET",), public=True),
        *oai_routes(engine, auth),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Answer routing errors (unknown path 404, wrong method 405) as JSON like every other."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 404:
        message = f"Not Found: no endpoint {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method Not Allowed: {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    return _error(exc.status_code, message, headers)
