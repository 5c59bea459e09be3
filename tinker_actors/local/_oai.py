"""The OpenAI-compatible endpoints: ``/oai/api/v1/completions``, ``/chat/completions``, ``/models``.

The service answers OpenAI clients at ``<base>/oai/api/v1`` with the Tinker API key as the
bearer token; ``model`` is a base model, a ``tinker://`` sampler checkpoint, or
``<base model>;<checkpoint>``. Harnesses written for OpenAI (evaluation tools, the ``openai``
SDK, coding agents) can so sample a checkpoint while it trains. This serves the same routes on
the local server.

Each request is an ordinary sample (``asample``) in a session the server keeps per caller
(tagged ``oai``; re-created if it expired): it is batched with the caller's other samples,
limited, billed and audited like them. Prompts are tokenized, and completions decoded, with
the model's own tokenizer; chat messages are rendered in ChatML (:mod:`._oai_text`).
``stream: true`` is answered as server-sent events: each choice's text as it is sampled
(:mod:`._oai_stream`), then ``[DONE]``; with ``logprobs``, each choice's whole text and
logprobs in one chunk once the sample is done. ``echo`` puts the prompt before a completion
and, with ``logprobs``, scores it (``prompt_logprobs``): how evaluation harnesses such as
lm-evaluation-harness read likelihoods.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._auth import CALLER, AuthError
from tinker_actors.local._body import read_body
from tinker_actors.local._core import EngineError
from tinker_actors.local._oai_chat import CallReading, chat_prompt, chat_tools
from tinker_actors.local._oai_stream import EventStream, Progress, StreamedReply
from tinker_actors.local._oai_text import (
    ChatBody,
    CompletionBody,
    OaiError,
    Usage,
    chat_logprobs,
    completion_logprobs,
    decode_body,
    echoed,
    encode_prompt,
    event_stream,
    prompts,
    stops,
    trimmed,
)
from tinker_actors.transport.proto import decode_sample_response
from tinker_actors.types import (
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    ModelInput,
    SampleRequest,
    SampleResponse,
    SamplingParams,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from tokenizers import Tokenizer

    from tinker_actors.local._auth import Authenticator
    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.local._engine import LocalEngine

__all__ = ["OAI_PREFIX", "oai_routes"]

log = logging.getLogger("tinker_actors.local")

OAI_PREFIX = "/oai/api/v1"
_MAX_LOGPROBS = 20


@dataclass
class _Caller:
    """What the server keeps per caller: its session and a sampling session per model."""

    session_id: str | None = None
    samplers: dict[str, str] = field(default_factory=dict)
    made: int = 0  # sampling sessions made in the session (a refused one's number is used too)


class _Oai:
    def __init__(self, engine: LocalEngine, auth: Authenticator) -> None:
        self.engine = engine
        self.auth = auth
        self.callers: dict[str, _Caller] = {}
        self.tokenizers: dict[str, Tokenizer] = {}
        self.lock = trio.Lock()  # sessions and samplers are made one at a time

    # -- plumbing ---------------------------------------------------------------------------

    def route(
        self,
        path: str,
        handler: Callable[[Request, str], Awaitable[Response]],
        method: str = "POST",
        *,
        prefix: str = OAI_PREFIX,
        error: Callable[[OaiError], Response] | None = None,
    ) -> Route:
        """``handler`` at ``prefix + path``, called with the request and its caller; a
        refusal is answered by ``error`` (OpenAI's error shape by default)."""
        answer = error or _error

        async def endpoint(request: Request) -> Response:
            token = None
            try:
                principal = self.auth.check(_key(request), raw_key_allowed=True)
                token = CALLER.set(principal)
                return await handler(request, principal)
            except AuthError as exc:
                return answer(OaiError(exc.status, exc.message))
            except ClientDisconnect:
                return answer(OaiError(400, "the client disconnected before its body arrived"))
            except Exception as exc:
                return answer(refusal(exc, prefix + path))
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
                raise OaiError(500, "the OpenAI-compatible endpoints need the tokenizers package")
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

    # -- endpoints --------------------------------------------------------------------------

    async def completions(self, request: Request, principal: str) -> Response:
        body: CompletionBody = decode_body(await self.read(request), CompletionBody)
        sampler_id, spec = await self.sampler(principal, body.model)
        tokenizer = await self.tokenizer(spec)
        raw = prompts(body.prompt)
        ids = [encode_prompt(tokenizer, p) for p in raw]
        inputs = [ModelInput.from_ints(i) for i in ids]
        k = _logprobs_k(body.logprobs)
        cuts = stops(body.stop)
        params = _params(body, body.max_tokens, cuts)
        ends = frozenset(spec.eos_ids)
        if body.stream and k is None and not body.echo:
            plan = (sampler_id, inputs, params, tokenizer, cuts, ends)
            return self._streamed(body, "text_completion", "cmpl", *plan)
        # echo with logprobs scores the prompt: how evaluation harnesses read likelihoods
        prompt_k = k if body.echo else None
        answers = await self._all(sampler_id, inputs, params, body.n, k, prompt_k)
        choices: list[dict[str, Any]] = []
        used = Usage()
        for p, (model_input, answer) in enumerate(zip(inputs, answers, strict=True)):
            used.add_prompt(model_input.length, answer)
            given = raw[p]
            echo = ""
            if body.echo:
                echo = given if isinstance(given, str) else str(tokenizer.decode(ids[p]))
            for j, seq in enumerate(answer.sequences):
                cut = trimmed(seq, tokenizer, cuts, ends)
                used.completion += len(cut.tokens)
                logprobs = None
                if k is not None:
                    logprobs = (
                        echoed(cut, seq, ids[p], answer, tokenizer, k)
                        if body.echo
                        else completion_logprobs(cut, seq, tokenizer, k)
                    )
                choice: dict[str, Any] = {
                    "index": p * body.n + j,
                    "text": echo + cut.text,
                    "finish_reason": cut.finish_reason,
                    "logprobs": logprobs,
                }
                choices.append(choice)
        return _reply(body, "text_completion", "cmpl", choices, used)

    async def chat(self, request: Request, principal: str) -> Response:
        body: ChatBody = decode_body(await self.read(request), ChatBody)
        sampler_id, spec = await self.sampler(principal, body.model)
        tokenizer = await self.tokenizer(spec)
        tools, reading = chat_tools(body)
        prompt = chat_prompt(body.messages, tokenizer, tools, reading.prefill)
        k = None
        if body.logprobs:
            k = _logprobs_k(body.top_logprobs or 0)
        limit = (
            body.max_completion_tokens
            if body.max_completion_tokens is not None
            else body.max_tokens
        )
        if limit is not None and limit > 0:
            # agents ask for more than a small model holds: answer up to the end of the
            # context (finish_reason length there), as an unset limit does
            limit = min(limit, max(1, spec.context_length - prompt.length))
        cuts = stops(body.stop)
        params = _params(body, limit, cuts)
        ends = self.ends(spec, tokenizer)
        if body.stream and k is None:
            plan = (sampler_id, [prompt], params, tokenizer, cuts, ends)
            return self._streamed(body, "chat.completion", "chatcmpl", *plan, reading=reading)
        [answer] = await self._all(sampler_id, [prompt], params, body.n, k)
        choices: list[dict[str, Any]] = []
        used = Usage()
        used.add_prompt(prompt.length, answer)
        for j, seq in enumerate(answer.sequences):
            cut = trimmed(seq, tokenizer, cuts, ends)
            used.completion += len(cut.tokens)
            read = reading.read(cut.text, cut.finish_reason)
            choices.append(
                {
                    "index": j,
                    "message": read.message(),
                    "finish_reason": read.finish_reason,
                    "logprobs": None
                    if k is None
                    else {"content": chat_logprobs(cut, seq, tokenizer, k)},
                }
            )
        return _reply(body, "chat.completion", "chatcmpl", choices, used)

    def _streamed(
        self,
        body: CompletionBody | ChatBody,
        kind: str,
        id_prefix: str,
        sampler_id: str,
        inputs: list[ModelInput],
        params: SamplingParams,
        tokenizer: Tokenizer,
        cuts: list[str],
        ends: frozenset[int],
        reading: CallReading | None = None,
    ) -> Response:
        """The answer as server-sent events, each choice's text sent as it is sampled (see
        :mod:`._oai_stream`; a stream with logprobs is sent whole by :func:`_reply`)."""
        chat = kind == "chat.completion"
        head = {
            "id": f"{id_prefix}-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chat else kind,
            "created": int(time.time()),
            "model": body.model,
        }

        reply = StreamedReply(
            head=head,
            chat=chat,
            sample=self.sampling(sampler_id, inputs, params, body.n),
            lengths=[i.length for i in inputs],
            n=body.n,
            tokenizer=tokenizer,
            stops=cuts,
            ends=ends,
            usage=bool((body.stream_options or {}).get("include_usage")),
            reading=reading,
        )
        path = OAI_PREFIX + ("/chat/completions" if chat else "/completions")
        return EventStream(
            reply.produce,
            lambda exc: _error(refusal(exc, path)),
            lambda exc: refusal(exc, path).body(),
        )

    def names(self) -> list[str]:
        """The models and aliases the server samples."""
        return [str(m.model_name) for m in self.engine.capabilities().supported_models]

    async def models(self, request: Request, principal: str) -> Response:
        del request, principal
        return _json({"object": "list", "data": [_model(n) for n in self.names()]})

    async def model(self, request: Request, principal: str) -> Response:
        del principal
        name = request.path_params["name"]
        if name not in self.names():
            raise OaiError(404, f"no model {name!r}; GET /models lists them", param="model")
        return _json(_model(name))

    async def _all(
        self,
        sampler_id: str,
        inputs: list[ModelInput],
        params: SamplingParams,
        n: int,
        k: int | None,
        prompt_k: int | None = None,
    ) -> list[SampleResponse]:
        """Every prompt's answer, in order (sampled at once: they batch)."""
        out: list[SampleResponse | None] = [None] * len(inputs)
        failure: list[BaseException] = []

        async def one(i: int) -> None:
            try:
                out[i] = await self.sample(
                    sampler_id, inputs[i], params, n, k or 0, prompt_k=prompt_k
                )
            except (OaiError, EngineError) as exc:
                failure.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(len(inputs)):
                nursery.start_soon(one, i)
        if failure:
            raise failure[0]
        return [o for o in out if o is not None]


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


def _logprobs_k(value: int | None) -> int | None:
    if value is None:
        return None
    if not 0 <= value <= _MAX_LOGPROBS:
        raise OaiError(
            400, f"logprobs must be in [0, {_MAX_LOGPROBS}], got {value}", param="logprobs"
        )
    return value


def _params(
    body: CompletionBody | ChatBody, max_tokens: int | None, stops: list[str]
) -> SamplingParams:
    if max_tokens is not None and max_tokens < 0:
        raise OaiError(400, f"max_tokens must be >= 0, got {max_tokens}", param="max_tokens")
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=float(body.temperature),
            top_p=float(body.top_p) if body.top_p > 0 else 1e-6,
            seed=body.seed,
            stop=stops or None,
        )
    except InvalidInputError as exc:
        raise OaiError(400, str(exc)) from None


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tinker-actors"}


def _json(obj: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


def _reply(
    body: CompletionBody | ChatBody,
    kind: str,
    id_prefix: str,
    choices: list[dict[str, Any]],
    used: Usage,
) -> Response:
    """The answer: JSON, or (``stream``) server-sent events of ``kind``'s chunk type."""
    reply = {
        "id": f"{id_prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": body.model,
        "choices": choices,
        "usage": used.json(),
    }
    if not body.stream:
        return _json(reply)
    chunks = "chat.completion.chunk" if kind == "chat.completion" else kind
    usage = bool((body.stream_options or {}).get("include_usage"))
    return Response(event_stream(reply, chunks, usage), media_type="text/event-stream")


def _error(exc: OaiError) -> Response:
    return _json(exc.body(), exc.status)


def refusal(exc: Exception, path: str) -> OaiError:
    """What the caller is told of ``exc``: an OpenAI error with its status."""
    if isinstance(exc, OaiError):
        return exc
    if isinstance(exc, EngineError):
        return OaiError(exc.status, exc.message)
    log.error("local server: unexpected error on %s", path, exc_info=exc)
    return OaiError(500, f"internal error in the local server: {type(exc).__name__}")


def oai_routes(engine: LocalEngine, auth: Authenticator) -> list[Route]:
    """The routes of the OpenAI-compatible API, for the local server's app, and those of the
    Anthropic-compatible API (:mod:`._anthropic`), which share its sessions."""
    from tinker_actors.local._anthropic import anthropic_routes

    oai = _Oai(engine, auth)
    return [
        oai.route("/completions", oai.completions),
        oai.route("/chat/completions", oai.chat),
        oai.route("/models", oai.models, method="GET"),
        oai.route("/models/{name:path}", oai.model, method="GET"),
        *anthropic_routes(oai),
    ]
