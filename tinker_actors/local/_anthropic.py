"""The Anthropic-compatible endpoints: ``/anthropic/api/v1/messages``, ``/messages/count_tokens``,
``/models``.

The service answers Anthropic clients (the ``anthropic`` SDK, Claude Code through
``ANTHROPIC_BASE_URL``) at ``<base>/anthropic/api`` with the Tinker API key (``x-api-key`` or a
bearer token); ``model`` is a base model, a ``tinker://`` sampler checkpoint, or
``<base model>;<checkpoint>``. This serves the same routes on the local server, over the same
per-caller sampling sessions as the OpenAI-compatible routes (:mod:`._compatible`): each
request is an ordinary sample, batched, limited, billed and audited like the others. What is read from a
request and how the answer is shaped is :mod:`._anthropic_text`.

``stream: true`` is answered with Anthropic's named events: ``message_start``, the thinking
block and the first text block as they are sampled (``content_block_start``,
``content_block_delta`` with ``thinking_delta`` s, then ``text_delta`` s,
``content_block_stop``; :class:`._oai_stream.ChatText`), then once the sample is done the rest
of them and the blocks after them whole (calls are read from the whole answer: the text shown
as it is sampled stops where a ``<tool_call>`` begins), ``message_delta`` with the stop reason
and usage, and ``message_stop``. As on the OpenAI routes the response head waits for the first
event, so a request refused before anything was sampled gets its error and status; a failure
after it is an ``error`` event, which the SDK raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tinker_actors.local._anthropic_text import (
    ANTHROPIC_PREFIX,
    Conversation,
    anthropic_error,
    blocks,
    conversation,
    decode_messages,
    error_event,
    message_id,
    model_entry,
    sampling_params,
    stop_reason,
    usage,
)
from tinker_actors.local._compatible import Compatible, json_response, refusal
from tinker_actors.local._oai_stream import ChatText, EventStream, stream_choices
from tinker_actors.local._oai_text import OaiError, stops, trimmed
from tinker_actors.local._tokenizer import TokenizerText

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from tokenizers import Tokenizer

    from tinker_actors.local._oai_stream import Emit, Progress
    from tinker_actors.types import SampleResponse

__all__ = ["ANTHROPIC_PREFIX", "anthropic_routes"]


class _Anthropic:
    def __init__(self, api: Compatible) -> None:
        self.api = api

    async def messages(self, request: Request, principal: str) -> Response:
        body = decode_messages(await self.api.read(request), answer=True)
        chat = conversation(body)
        sampler_id, spec = await self.api.sampler(principal, body.model)
        tokenizer = await self.api.tokenizer(spec)
        prompt = chat.render(tokenizer)
        params = sampling_params(body, prompt.length, spec.context_length)
        cuts = stops(body.stop_sequences)
        ends = self.api.ends(spec, tokenizer)
        head = {"id": message_id(), "type": "message", "role": "assistant", "model": body.model}
        if body.stream:
            reply = StreamedMessage(
                head=head,
                chat=chat,
                sample=self.api.sampling(sampler_id, [prompt], params, 1),
                length=prompt.length,
                tokenizer=tokenizer,
                stops=cuts,
                ends=ends,
            )
            path = ANTHROPIC_PREFIX + "/v1/messages"
            return EventStream(
                reply.produce,
                lambda exc: anthropic_error(refusal(exc, path)),
                lambda exc: error_event(refusal(exc, path)),
                named=True,
            )
        answer = await self.api.sample(sampler_id, prompt, params, 1, 0)
        [seq] = answer.sequences
        cut = trimmed(seq, tokenizer, cuts, ends)
        read = chat.read(cut.text)
        reason, sequence = stop_reason(read, cut)
        message = {
            **head,
            "content": blocks(read),
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage(prompt.length, answer.prompt_cache_hit_tokens, len(cut.tokens)),
        }
        return json_response(message)

    async def count_tokens(self, request: Request, principal: str) -> Response:
        body = decode_messages(await self.api.read(request), answer=False)
        chat = conversation(body)
        _, spec = await self.api.sampler(principal, body.model)
        tokenizer = await self.api.tokenizer(spec)
        return json_response({"input_tokens": chat.render(tokenizer).length})

    async def models(self, request: Request, principal: str) -> Response:
        del request, principal
        names = self.api.names()
        listed = {
            "data": [model_entry(n) for n in names],
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
        return json_response(listed)

    async def model(self, request: Request, principal: str) -> Response:
        del principal
        name = request.path_params["name"]
        if name not in self.api.names():
            raise OaiError(404, f"model: no model {name!r}; GET /v1/models lists them")
        return json_response(model_entry(name))


@dataclass(frozen=True)
class StreamedMessage:
    """A message streamed as it is sampled (see the module docstring). ``head``: the
    message's ``id``, ``type``, ``role`` and ``model``; ``length``: the prompt's tokens."""

    head: dict[str, Any]
    chat: Conversation
    sample: Callable[[int, Progress], Awaitable[SampleResponse]]
    length: int
    tokenizer: Tokenizer
    stops: list[str]
    ends: frozenset[int]

    async def produce(self, emit: Emit) -> None:
        started = False
        live: list[str] = []  # the blocks shown as they were sampled: thinking, then text

        async def start() -> None:
            nonlocal started
            if not started:
                started = True
                message = {
                    **self.head,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage(self.length, 0, 0),
                }
                await emit({"type": "message_start", "message": message})

        async def shown(index: int, pieces: list[tuple[str, str]]) -> None:
            del index
            await start()
            for kind, piece in pieces:
                if not live or live[-1] != kind:
                    if live:
                        await emit({"type": "content_block_stop", "index": len(live) - 1})
                    live.append(kind)
                    await emit(
                        {
                            "type": "content_block_start",
                            "index": len(live) - 1,
                            "content_block": _EMPTY[kind],
                        }
                    )
                await _delta(emit, len(live) - 1, _piece(kind, piece))

        text = TokenizerText(self.tokenizer)
        chat = self.chat
        [answer], [choice] = await stream_choices(
            self.sample,
            1,
            1,
            lambda: ChatText(text, self.stops, self.ends, chat.markers, chat.forced),
            shown,
        )
        [seq] = answer.sequences
        cut = trimmed(seq, self.tokenizer, self.stops, self.ends)
        read = chat.read(cut.text)
        content = blocks(read)
        await start()
        taken = 0  # the blocks of the answer that were begun live
        for index, kind in enumerate(live):
            if taken < len(content) and content[taken]["type"] == kind:
                block = content[taken]
                taken += 1
                part = choice.thinking if kind == "thinking" else choice.answer
                rest = part.rest(block[kind]) if part is not None else ""
                if rest:
                    await _delta(emit, index, _piece(kind, rest))
                if kind == "thinking":
                    await _delta(emit, index, {"type": "signature_delta", "signature": ""})
            await emit({"type": "content_block_stop", "index": index})
        for index, block in enumerate(content[taken:], start=len(live)):
            await _block(emit, index, block)
        reason, sequence = stop_reason(read, cut)
        await emit(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": usage(self.length, answer.prompt_cache_hit_tokens, len(cut.tokens)),
            }
        )
        await emit({"type": "message_stop"})


_EMPTY: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
}


def _piece(kind: str, text: str) -> dict[str, Any]:
    if kind == "thinking":
        return {"type": "thinking_delta", "thinking": text}
    return {"type": "text_delta", "text": text}


async def _delta(emit: Emit, index: int, delta: dict[str, Any]) -> None:
    await emit({"type": "content_block_delta", "index": index, "delta": delta})


async def _block(emit: Emit, index: int, block: dict[str, Any]) -> None:
    """One whole block as its start, deltas and stop."""
    kind = block["type"]
    if kind == "tool_use":
        empty = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
    else:
        empty = _EMPTY[kind]
        deltas = [_piece(kind, block[kind])]
        if kind == "thinking":
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    await emit({"type": "content_block_start", "index": index, "content_block": empty})
    for delta in deltas:
        await _delta(emit, index, delta)
    await emit({"type": "content_block_stop", "index": index})


def anthropic_routes(api: Compatible) -> list[Route]:
    """The routes of the Anthropic-compatible API, served over ``api``'s sessions."""
    anthropic = _Anthropic(api)
    return api.routes(
        ANTHROPIC_PREFIX,
        anthropic_error,
        [
            ("/v1/messages", anthropic.messages, "POST"),
            ("/v1/messages/count_tokens", anthropic.count_tokens, "POST"),
            ("/v1/models", anthropic.models, "GET"),
            ("/v1/models/{name:path}", anthropic.model, "GET"),
        ],
    )
