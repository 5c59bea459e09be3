"""What the compatible APIs share: callers' sampling sessions, tokenizers, samples, routes.

The service answers OpenAI clients at ``<base>/oai/api/v1`` (:mod:`._oai`) and Anthropic
clients at ``<base>/anthropic/api`` (:mod:`._anthropic`) with the Tinker API key; ``model`` is a
base model, a ``tinker://`` sampler checkpoint, or ``<base model>;<checkpoint>``. Harnesses and
agents written for those APIs can so sample a checkpoint while it trains.

Each request is an ordinary sample (``asample``) in a session the server keeps per caller
(tagged ``oai``; re-created if it expired), one sampling session per model, shared by both
APIs: it is batched with the caller's other samples, limited, billed and audited like them.
Prompts are tokenized, and completions decoded, with the model's own tokenizer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
import trio
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._auth import CALLER, AuthError
from tinker_actors.local._body import read_body
from tinker_actors.local._core import EngineError
from tinker_actors.local._oai_text import OaiError
from tinker_actors.transport.proto import decode_sample_response
from tinker_actors.types import (
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    SampleRequest,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from starlette.requests import Request
    from tokenizers import Tokenizer

    from tinker_actors.local._auth import Authenticator
    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.local._engine import LocalEngine
    from tinker_actors.local._oai_stream import Progress
    from tinker_actors.types import ModelInput, SampleResponse, SamplingParams

__all__ = ["Compatible", "json_response", "refusal"]

log = logging.getLogger("tinker_actors.local")


@dataclass
class _Caller:
    """What the server keeps per caller: its session and a sampling session per model."""

    session_id: str | None = None
    samplers: dict[str, str] = field(default_factory=dict)
    made: int = 0  # sampling sessions made in the session (a refused one's number is used too)


class Compatible:
    """The plumbing of the compatible routes: one per server, shared by both APIs."""

    def __init__(self, engine: LocalEngine, auth: Authenticator) -> None:
        self.engine = engine
        self.auth = auth
        self.callers: dict[str, _Caller] = {}
        self.tokenizers: dict[str, Tokenizer] = {}
        self.lock = trio.Lock()  # sessions and samplers are made one at a time

    def routes(
        self,
        prefix: str,
        error: Callable[[OaiError], Response],
        table: Sequence[tuple[str, Callable[[Request, str], Awaitable[Response]], str]],
    ) -> list[Route]:
        """One :meth:`route` per ``(path, handler, method)``, all under ``prefix``."""
        return [self.route(p, h, m, prefix=prefix, error=error) for p, h, m in table]

    def route(
        self,
        path: str,
        handler: Callable[[Request, str], Awaitable[Response]],
        method: str = "POST",
        *,
        prefix: str,
        error: Callable[[OaiError], Response],
    ) -> Route:
        """``handler`` at ``prefix + path``, called with the request and its caller; a
        refusal is answered by ``error`` (the API's own error shape)."""

        async def endpoint(request: Request) -> Response:
            token = None
            try:
                principal = self.auth.check(_key(request), raw_key_allowed=True)
                token = CALLER.set(principal)
                return await handler(request, principal)
            except AuthError as exc:
                return error(OaiError(exc.status, exc.message))
            except ClientDisconnect:
                return error(OaiError(400, "the client disconnected before its body arrived"))
            except Exception as exc:
                return error(refusal(exc, prefix + path))
            finally:
                if token is not None:
                    CALLER.reset(token)

        return Route(prefix + path, endpoint, methods=[method])

    async def read(self, request: Request) -> bytes:
        limit = self.engine.settings.limits.max_json_body_bytes
        return await read_body(request, limit, "max_json_body_bytes")

    async def sampler(self, principal: str, model: str) -> tuple[str, BaseModelSpec]:
        """The caller's sampling session on ``model`` and its base model's spec."""
        core = self.engine.core
        async with self.lock:
            caller = self.callers.setdefault(principal, _Caller())
            alive = caller.session_id is not None
            if alive:
                try:
                    core.session(str(caller.session_id))
                except EngineError:  # expired or finished: start over
                    alive = False
            if not alive:
                made = self.engine.create_session(
                    CreateSessionRequest(tags=["oai"], sdk_version="oai-compatible"), None
                )
                caller.session_id, caller.samplers, caller.made = made.session_id, {}, 0
            session_id = str(caller.session_id)
            core.touch(session_id)
            sampler_id = caller.samplers.get(model)
            if sampler_id is None:
                base, path = _target(model)
                request = CreateSamplingSessionRequest(
                    session_id=session_id,
                    sampling_session_seq_id=caller.made,
                    base_model=base if path is None else None,
                    model_path=path,
                )
                try:
                    made_sampler = self.engine.sampling.create_sampling_session(request)
                except InvalidInputError as exc:
                    raise OaiError(400, str(exc), param="model") from None
                caller.made += 1
                sampler_id = made_sampler.sampling_session_id
                if base is not None and path is not None:
                    # the checkpoint's run, found as its caller may read it, names its base
                    trained = self.engine.sampling.sampler(sampler_id).base_model
                    if core.resolve_model(base)[0] != core.resolve_model(trained)[0]:
                        raise OaiError(
                            400,
                            f"model {model}: the checkpoint was trained on {trained!r}, not "
                            f"{base!r}; name its own base model, or the checkpoint alone",
                            param="model",
                        )
                caller.samplers[model] = sampler_id
        record = self.engine.sampling.sampler(sampler_id)
        return sampler_id, core.spec_for(record.base_model)

    async def tokenizer(self, spec: BaseModelSpec) -> Tokenizer:
        found = self.tokenizers.get(spec.name)
        if found is None:
            from tinker_actors.local._tokenizer import load_tokenizer

            folder = await self.engine.core.tokenizer_dir(spec)
            if folder is None:
                raise OaiError(500, "the compatible endpoints need the tokenizers package")
            found = self.tokenizers[spec.name] = load_tokenizer(folder)
        return found

    async def sample(
        self,
        sampler_id: str,
        prompt: ModelInput,
        params: SamplingParams,
        n: int,
        k: int,
        progress: Progress | None = None,
        prompt_k: int | None = None,
    ) -> SampleResponse:
        """One sample request through the engine, as a client's would go (``progress``: its
        decoding steps, for a streamed answer; ``prompt_k``: score the prompt too, with that
        many alternatives a position)."""
        core = self.engine.core
        request = SampleRequest(
            sampling_session_id=sampler_id,
            num_samples=n,
            prompt=prompt,
            sampling_params=params,
            topk_sample_logprobs=k,
            prompt_logprobs=prompt_k is not None,
            topk_prompt_logprobs=prompt_k or 0,
        )
        future = self.engine.sampling.asample(
            request, backpressure=False, idempotency_key=None, progress=progress
        )
        record = core.futures.get(future.request_id)
        try:
            await record.settled.wait()
        except BaseException:  # the caller went away (cancelled): nobody waits for the sample
            self.engine.cancel_future(record.request_id)
            raise
        if record.state != "done" or record.payload is None:
            status = 400 if record.category == "user" else 500
            raise OaiError(status, record.error or f"the sample {record.state}")
        answer = decode_sample_response(record.payload, sequence_ids=None)
        core.futures.drop_payload(record.request_id)
        return answer

    def sampling(
        self, sampler_id: str, inputs: list[ModelInput], params: SamplingParams, n: int
    ) -> Callable[[int, Progress], Awaitable[SampleResponse]]:
        """``sample(p, progress)``: prompt ``p``'s sample for a streamed answer, which is
        written after the route returned, outside its caller's context."""
        principal = CALLER.get()

        async def sample(p: int, progress: Progress) -> SampleResponse:
            token = CALLER.set(principal)
            try:
                return await self.sample(sampler_id, inputs[p], params, n, 0, progress)
            finally:
                CALLER.reset(token)

        return sample

    @staticmethod
    def ends(spec: BaseModelSpec, tokenizer: Tokenizer) -> frozenset[int]:
        """The tokens that end a chat answer: the model's EOS ids and ChatML's end of turn."""
        end = tokenizer.token_to_id("<|im_end|>")
        return frozenset({*spec.eos_ids, *([] if end is None else [end])})

    def names(self) -> list[str]:
        """The models and aliases the server samples."""
        return [str(m.model_name) for m in self.engine.capabilities().supported_models]


def _key(request: Request) -> str | None:
    bearer = request.headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return request.headers.get("x-api-key")


def _target(model: str) -> tuple[str | None, str | None]:
    """``model`` as (base model, checkpoint path): either may be None, not both."""
    base, _, path = model.partition(";")
    if path:
        return base.strip(), path.strip()
    if model.startswith("tinker://"):
        return None, model
    return model, None


def json_response(obj: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


def refusal(exc: Exception, path: str) -> OaiError:
    """What the caller is told of ``exc``: a refusal with its status, which each API shapes."""
    if isinstance(exc, OaiError):
        return exc
    if isinstance(exc, EngineError):
        return OaiError(exc.status, exc.message)
    log.error("local server: unexpected error on %s", path, exc_info=exc)
    return OaiError(500, f"internal error in the local server: {type(exc).__name__}")
