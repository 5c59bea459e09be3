"""The OpenAI-compatible endpoints: ``/oai/api/v1/completions``, ``/chat/completions``, ``/models``.

The service answers OpenAI clients at ``<base>/oai/api/v1``; this serves the same routes on the
local server, over the sessions and samples of :mod:`._compatible` (shared with the
Anthropic-compatible routes). Chat messages, tools and calls are read by :mod:`._oai_chat` and
rendered as :mod:`._chat` renders them. ``stream: true`` is answered as server-sent events:
each choice's text (and a chat's reasoning) as it is sampled (:mod:`._oai_stream`), then
``[DONE]``; with ``logprobs``, each choice's whole text and logprobs in one chunk once the
sample is done. ``echo`` puts the prompt before a completion and, with ``logprobs``, scores it
(``prompt_logprobs``): how evaluation harnesses such as lm-evaluation-harness read likelihoods.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import trio
from starlette.responses import Response

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._compatible import Compatible, json_response, refusal
from tinker_actors.local._core import EngineError
from tinker_actors.local._oai_chat import CallReading, chat_prompt, chat_tools
from tinker_actors.local._oai_stream import EventStream, StreamedReply
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
from tinker_actors.types import ModelInput, SampleResponse, SamplingParams

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import Route
    from tokenizers import Tokenizer

    from tinker_actors.local._auth import Authenticator
    from tinker_actors.local._engine import LocalEngine

__all__ = ["OAI_PREFIX", "oai_routes"]

OAI_PREFIX = "/oai/api/v1"
_MAX_LOGPROBS = 20


class _Oai(Compatible):
    """The OpenAI-compatible endpoints."""

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

    async def models(self, request: Request, principal: str) -> Response:
        del request, principal
        return json_response({"object": "list", "data": [_model(n) for n in self.names()]})

    async def model(self, request: Request, principal: str) -> Response:
        del principal
        name = request.path_params["name"]
        if name not in self.names():
            raise OaiError(404, f"no model {name!r}; GET /models lists them", param="model")
        return json_response(_model(name))

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
        return json_response(reply)
    chunks = "chat.completion.chunk" if kind == "chat.completion" else kind
    usage = bool((body.stream_options or {}).get("include_usage"))
    return Response(event_stream(reply, chunks, usage), media_type="text/event-stream")


def _error(exc: OaiError) -> Response:
    return json_response(exc.body(), exc.status)


def oai_routes(engine: LocalEngine, auth: Authenticator) -> list[Route]:
    """The routes of the OpenAI-compatible API, for the local server's app, and those of the
    Anthropic-compatible API (:mod:`._anthropic`), which share its sessions."""
    from tinker_actors.local._anthropic import anthropic_routes

    oai = _Oai(engine, auth)
    table = [
        ("/completions", oai.completions, "POST"),
        ("/chat/completions", oai.chat, "POST"),
        ("/models", oai.models, "GET"),
        ("/models/{name:path}", oai.model, "GET"),
    ]
    return [*oai.routes(OAI_PREFIX, _error, table), *anthropic_routes(oai)]
