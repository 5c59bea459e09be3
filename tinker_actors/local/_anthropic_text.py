"""Requests and answers of the Anthropic-compatible API (routes in :mod:`._anthropic`).

Messages are read into :mod:`._chat` turns (text, base64 pictures, ``tool_use`` and
``tool_result`` blocks, ``thinking`` blocks) and rendered as the model reads them; an assistant
message last is continued (a prefill). The answer is read back into content blocks: a leading
``<think>...</think>`` that is not empty is a ``thinking`` block (``thinking`` in the request
changes nothing: a thinking model writes its reasoning either way); with ``tools``,
each well-formed ``<tool_call>`` is a ``tool_use`` block and ``stop_reason`` is ``tool_use``.
``tool_choice`` ``any`` or ``tool`` starts the answer with the call, so the model writes only
the rest; ``none`` declares no tools. Fields that change nothing are ignored; those that would
change the answer and are not supported (MCP servers, containers, structured outputs, server
tools) are refused with a 400 that names them. Errors have Anthropic's shape and types.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._chat import (
    Call,
    ChatError,
    Reply,
    Tool,
    Turn,
    call_markers,
    forced_call,
    picture,
    read_answer,
    render,
)
from tinker_actors.local._compatible import json_response
from tinker_actors.local._oai_text import OaiError, Trimmed, stops
from tinker_actors.types import SamplingParams

if TYPE_CHECKING:
    from starlette.responses import Response
    from tokenizers import Tokenizer

    from tinker_actors.types import ImageChunk, ModelInput

__all__ = [
    "ANTHROPIC_PREFIX",
    "Conversation",
    "MessagesBody",
    "anthropic_error",
    "blocks",
    "conversation",
    "decode_messages",
    "error_event",
    "message_id",
    "model_entry",
    "sampling_params",
    "stop_reason",
    "usage",
]

ANTHROPIC_PREFIX = "/anthropic/api"

_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(exc: OaiError) -> Response:
    """A refusal in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``."""
    return json_response(error_event(exc), exc.status)


def error_event(exc: OaiError) -> dict[str, Any]:
    kind = _KINDS.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


class MessagesBody(msgspec.Struct, kw_only=True):
    """``POST /v1/messages`` (and ``count_tokens``, which needs no ``max_tokens``). Fields
    this server does not use are ignored; those that would change the answer and are not
    supported are refused by name (:func:`decode_messages`)."""

    model: str
    messages: list[Any]
    max_tokens: int | None = None
    system: str | list[Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    tools: list[Any] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    mcp_servers: list[Any] | None = None
    container: Any = None
    output_format: Any = None
    output_config: dict[str, Any] | None = None


_REFUSED = {
    "mcp_servers": "MCP servers",
    "container": "code execution containers",
    "output_format": "structured outputs",
}


def decode_messages(raw: bytes, *, answer: bool) -> MessagesBody:
    """Read a body; ``answer``: it asks for a message (``max_tokens`` and sampling are
    checked), not a token count.

    Raises:
        OaiError: 400, saying what is wrong.
    """
    try:
        body = msgspec.json.decode(raw, type=MessagesBody)
    except msgspec.ValidationError as exc:
        raise OaiError(400, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise OaiError(400, f"the body is not JSON: {exc}") from None
    for name, what in _REFUSED.items():
        if getattr(body, name) not in (None, []):
            raise OaiError(400, f"{name}: {what} are not supported by the local server")
    if (body.output_config or {}).get("format") is not None:
        raise OaiError(
            400, "output_config.format: structured outputs are not supported by the local server"
        )
    if not answer:
        return body
    if body.max_tokens is None or body.max_tokens < 1:
        raise OaiError(
            400, f"max_tokens: a number of at least 1 is required, got {body.max_tokens}"
        )
    if not 0.0 <= body.temperature <= 1.0:
        raise OaiError(400, f"temperature: must be in [0, 1], got {body.temperature}")
    if body.top_p is not None and not 0.0 < body.top_p <= 1.0:
        raise OaiError(400, f"top_p: must be in (0, 1], got {body.top_p}")
    if body.top_k is not None and body.top_k < 1:
        raise OaiError(400, f"top_k: must be at least 1, got {body.top_k}")
    return body


def sampling_params(body: MessagesBody, prompt: int, context: int) -> SamplingParams:
    """The request's sampling settings; ``max_tokens`` at most what the model's ``context``
    leaves after the ``prompt`` (agents ask for more than a small model holds: the answer then
    ends with ``stop_reason`` ``max_tokens`` where the context does).

    Raises:
        OaiError: 400 when the prompt leaves no room, or a setting is out of range.
    """
    room = context - prompt
    if room < 1:
        raise OaiError(
            400,
            f"messages: the prompt ({prompt} tokens) leaves no room in the model's context "
            f"({context} tokens); send a shorter conversation",
        )
    try:
        return SamplingParams(
            max_tokens=min(body.max_tokens or 1, room),
            temperature=float(body.temperature),
            top_p=1.0 if body.top_p is None else float(body.top_p),
            top_k=-1 if body.top_k is None else body.top_k,
            stop=stops(body.stop_sequences) or None,
        )
    except InvalidInputError as exc:
        raise OaiError(400, str(exc)) from None


@dataclass(frozen=True)
class Conversation:
    """A request read: its turns, tools, the start a ``tool_choice`` forces ("" for none),
    what is read from the answer, and whether its last turn is continued."""

    turns: list[Turn]
    tools: list[Tool]
    forced: str
    reads_calls: bool
    parallel: bool
    continued: bool

    @property
    def markers(self) -> list[str]:
        """What ends the text a stream shows as it is sampled (see :mod:`._oai_stream`)."""
        return call_markers(self.reads_calls)

    def render(self, tokenizer: Tokenizer) -> ModelInput:
        """The conversation as the model reads it (:func:`._chat.render`)."""
        try:
            return render(
                self.turns, tokenizer, self.tools, prefill=self.forced, continue_last=True
            )
        except ChatError as exc:
            raise OaiError(400, f"messages: {exc}") from None

    def read(self, text: str) -> Reply:
        return read_answer(
            text,
            prefill=self.forced,
            tools=self.reads_calls,
            parallel=self.parallel,
            prefix="toolu_",
        )


def conversation(body: MessagesBody) -> Conversation:
    """The request's turns and tools (see the module docstring).

    Raises:
        OaiError: 400 for a message, block, tool or choice that cannot be read.
    """
    turns = []
    if body.system:
        turns.append(Turn("system", [_system(body.system)]))
    for index, message in enumerate(body.messages):
        turns += _turns(message, index)
    if not body.messages:
        raise OaiError(400, "messages: at least one message is required")
    tools = [_tool(t, i) for i, t in enumerate(body.tools or [])]
    choice = body.tool_choice or {"type": "auto"}
    kind = choice.get("type")
    forced = ""
    if kind == "none":
        tools = []
    elif kind == "any" and tools:
        forced = forced_call(tools[0].name if len(tools) == 1 else None)
    elif kind == "tool" and choice.get("name") in [t.name for t in tools]:
        forced = forced_call(str(choice["name"]))
    elif kind != "auto":
        raise OaiError(
            400,
            "tool_choice: must be auto, any or none, or name a declared tool "
            f'({{"type": "tool", "name": ...}}), got {choice!r}',
        )
    continued = turns[-1].role == "assistant" and not turns[-1].calls
    if forced and continued:
        raise OaiError(
            400, "tool_choice: a forced tool call cannot continue an assistant message (prefill)"
        )
    return Conversation(
        turns=turns,
        tools=tools,
        forced=forced,
        reads_calls=bool(tools),
        parallel=not choice.get("disable_parallel_tool_use", False),
        continued=continued,
    )


def _system(system: str | list[Any]) -> str:
    if isinstance(system, str):
        return system
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise OaiError(400, f"system[{i}]: system prompts hold text blocks only")
        texts.append(str(block.get("text", "")))
    return "\n".join(texts)


def _turns(message: Any, index: int) -> list[Turn]:
    """One message as turns: a user message's ``tool_result`` blocks are tool turns of their
    own, in place."""
    role = message.get("role") if isinstance(message, dict) else None
    if role not in ("user", "assistant"):
        raise OaiError(400, f"messages[{index}].role: must be user or assistant, got {role!r}")
    content = message.get("content")
    if isinstance(content, str):
        return [Turn(role, [content])]
    if not isinstance(content, list):
        raise OaiError(400, f"messages[{index}].content: must be a string or a list of blocks")
    out: list[Turn] = []
    turn = Turn(role)
    for j, block in enumerate(content):
        where = f"messages[{index}].content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            turn.parts.append(str(block.get("text", "")))
        elif kind == "image":
            turn.parts.append(_picture(block, where))
        elif kind == "tool_use" and role == "assistant":
            turn.calls.append(_used(block, where))
        elif kind == "thinking" and role == "assistant":
            turn.thinking = str(block.get("thinking", ""))
        elif kind == "redacted_thinking" and role == "assistant":
            continue
        elif kind == "tool_result" and role == "user":
            if turn.parts:
                out.append(turn)
                turn = Turn(role)
            out.append(Turn("tool", _result(block, where)))
        else:
            raise OaiError(
                400,
                f"{where}: the local server reads text, image, tool_use, tool_result and "
                f"thinking blocks (tool_use and thinking from the assistant, tool_result from "
                f"the user), not {kind!r} in a {role} message",
            )
    if turn.parts or turn.calls or turn.thinking is not None or not out:
        out.append(turn)
    return out


def _picture(block: dict[str, Any], where: str) -> ImageChunk:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise OaiError(
            400,
            f"{where}: a picture must be a base64 source ({{'type': 'base64', 'media_type': "
            "'image/png', 'data': ...}}); the local server does not fetch URLs or files",
        )
    try:
        return picture(str(source.get("media_type")), str(source.get("data", "")))
    except ChatError as exc:
        raise OaiError(400, f"{where}: {exc}") from None


def _used(block: dict[str, Any], where: str) -> Call:
    name, arguments = block.get("name"), block.get("input", {})
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        raise OaiError(400, f"{where}: a tool_use block needs a name and an object input")
    return Call(name, arguments, str(block.get("id") or ""))


def _result(block: dict[str, Any], where: str) -> list[str | ImageChunk]:
    content = block.get("content", "")
    if isinstance(content, str):
        parts: list[str | ImageChunk] = [content]
    elif isinstance(content, list):
        parts = []
        for k, inner in enumerate(content):
            kind = inner.get("type") if isinstance(inner, dict) else None
            if kind == "text":
                parts.append(str(inner.get("text", "")))
            elif kind == "image":
                parts.append(_picture(inner, f"{where}.content[{k}]"))
            else:
                raise OaiError(
                    400, f"{where}.content[{k}]: a tool result holds text and image blocks"
                )
    else:
        raise OaiError(400, f"{where}: a tool_result's content must be a string or blocks")
    if block.get("is_error"):
        parts.insert(0, "Error: ")
    return parts


def _tool(tool: Any, index: int) -> Tool:
    kind = tool.get("type", "custom") if isinstance(tool, dict) else None
    if kind not in ("custom", None) or not isinstance(tool, dict):
        raise OaiError(
            400,
            f"tools[{index}]: only client tools (name, description, input_schema) are "
            f"supported by the local server, not {kind!r}",
        )
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name or not isinstance(schema, dict):
        raise OaiError(400, f"tools[{index}]: a tool needs a name and an input_schema object")
    description = tool.get("description")
    return Tool(name, schema, None if description is None else str(description))


def blocks(reply: Reply) -> list[dict[str, Any]]:
    """The answer's content blocks, in Anthropic's shapes."""
    out: list[dict[str, Any]] = []
    if reply.thinking is not None:
        out.append({"type": "thinking", "thinking": reply.thinking, "signature": ""})
    for block in reply.blocks:
        if isinstance(block, Call):
            out.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.arguments}
            )
        else:
            out.append({"type": "text", "text": block})
    return out


def stop_reason(reply: Reply, cut: Trimmed) -> tuple[str, str | None]:
    """``stop_reason`` and ``stop_sequence`` of an answer."""
    if reply.calls:
        return "tool_use", None
    if cut.stop is not None:
        return "stop_sequence", cut.stop
    return ("end_turn" if cut.finish_reason == "stop" else "max_tokens"), None


def usage(prompt: int, cached: int, output: int) -> dict[str, int]:
    """Anthropic's usage: ``input_tokens`` leaves out those read from kept prefixes."""
    return {
        "input_tokens": prompt - cached,
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def model_entry(name: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": "1970-01-01T00:00:00Z",
    }
