"""Chat requests of the OpenAI-compatible API: messages, tools and tool calls as turns.

``/chat/completions`` takes OpenAI's messages (text and ``image_url`` parts, an assistant's
``tool_calls``, ``tool`` messages) and ``tools`` / ``tool_choice``; they are read here into
:mod:`._chat` turns and rendered as the model reads them. ``tool_choice`` ``required`` or a
named function starts the answer with the call (:func:`._chat.forced_call`), so the model
writes only the rest; ``none`` renders no tools and reads no calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tinker_actors.local._chat import (
    Call,
    ChatError,
    Tool,
    Turn,
    call_markers,
    forced_call,
    picture,
    read_answer,
    render,
)
from tinker_actors.local._oai_text import ChatBody, OaiError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tinker_actors.types import ImageChunk, ModelInput

__all__ = ["Answer", "CallReading", "chat_prompt", "chat_tools", "chat_turns"]


def _parts(content: Any, index: int) -> list[str | ImageChunk]:
    """A message's content as text and pictures, in order."""
    if isinstance(content, str):
        return [content]
    if content is None:
        return []
    if not isinstance(content, list):
        raise OaiError(400, f"messages[{index}].content must be a string or a list of parts")
    out: list[str | ImageChunk] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        if kind == "text":
            out.append(str(part.get("text", "")))
        elif kind == "image_url":
            out.append(_picture(part.get("image_url"), index))
        else:
            raise OaiError(
                400,
                f"messages[{index}]: the local server's chat endpoint reads text and image_url "
                f"parts, not {kind!r}",
                param="messages",
            )
    return out


def _picture(image_url: Any, index: int) -> ImageChunk:
    """An ``image_url`` part: a ``data:`` URL of a base64 PNG or JPEG."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    head, _, data = str(url).partition(",")
    media, _, encoding = head.removeprefix("data:").partition(";")
    if not head.startswith("data:") or encoding != "base64":
        raise OaiError(
            400,
            f"messages[{index}]: an image_url must be a data: URL of a base64 PNG or JPEG "
            "(data:image/png;base64,...); the local server does not fetch URLs",
            param="messages",
        )
    try:
        return picture(media, data)
    except ChatError as exc:
        raise OaiError(400, f"messages[{index}]: {exc}", param="messages") from None


def chat_turns(messages: list[dict[str, Any]]) -> list[Turn]:
    """OpenAI chat messages as turns: ``developer`` is ``system``, an assistant's
    ``tool_calls`` its calls (``arguments`` a JSON object, as a string), a ``tool`` message a
    tool's answer.

    Raises:
        OaiError: a message without a role, content that cannot be read, or a call whose
            arguments are not a JSON object.
    """
    turns = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or not role:
            raise OaiError(400, f"messages[{index}] needs a role", param="messages")
        role = "system" if role == "developer" else role
        turn = Turn(role, _parts(message.get("content"), index))
        calls = message.get("tool_calls") or []
        if role == "assistant" and not isinstance(calls, list):
            raise OaiError(400, f"messages[{index}].tool_calls must be a list", param="messages")
        if role == "assistant":
            turn.calls = [_call(c, index) for c in calls]
        turns.append(turn)
    return turns


def _call(call: Any, index: int) -> Call:
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise OaiError(
            400, f"messages[{index}].tool_calls: each needs a function name", param="messages"
        )
    raw = function.get("arguments", "{}") if isinstance(function, dict) else "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise OaiError(
            400,
            f"messages[{index}].tool_calls: {name}'s arguments must be a JSON object (as a string)",
            param="messages",
        )
    return Call(name, arguments, str(call.get("id") or ""))


def chat_tools(body: ChatBody) -> tuple[list[Tool], CallReading]:
    """The request's tools, and how its answer's calls are read (what ``tool_choice``
    forces the answer to start with, if anything).

    Raises:
        OaiError: a tool that is not a function with a name, or a ``tool_choice`` that names
            no declared tool.
    """
    tools: list[Tool] = []
    for i, given in enumerate(body.tools or []):
        function = given.get("function") if isinstance(given, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        parameters = function.get("parameters") if isinstance(function, dict) else None
        if (
            not isinstance(function, dict)
            or given.get("type", "function") != "function"
            or not isinstance(name, str)
            or not name
            or not isinstance(parameters, dict | None)
        ):
            raise OaiError(
                400,
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., "
                "'parameters': {...JSON schema}}}}",
                param="tools",
            )
        description = function.get("description")
        tools.append(
            Tool(
                name,
                parameters or {"type": "object", "properties": {}},
                None if description is None else str(description),
            )
        )
    choice, parallel = body.tool_choice, body.parallel_tool_calls
    if choice in (None, "auto"):
        return tools, CallReading("", bool(tools), parallel)
    if choice == "none":
        return [], CallReading()
    names = [t.name for t in tools]
    if choice == "required" and tools:
        forced = forced_call(names[0] if len(names) == 1 else None)
        return tools, CallReading(forced, True, parallel)
    function = choice.get("function") if isinstance(choice, dict) else None
    named = function.get("name") if isinstance(function, dict) else None
    if isinstance(named, str) and named in names:
        return tools, CallReading(forced_call(named), True, parallel)
    raise OaiError(
        400,
        f"tool_choice must be none, auto, required (with tools) or a declared function, "
        f"got {choice!r}",
        param="tool_choice",
    )


def chat_prompt(
    messages: list[dict[str, Any]],
    tokenizer: Tokenizer,
    tools: list[Tool] | None = None,
    prefill: str = "",
) -> ModelInput:
    """``messages`` rendered as the model reads them (:func:`._chat.render`), ending with the
    assistant's open turn (pictures in place).

    Raises:
        OaiError: no messages, a message without a role, or content that cannot be read.
    """
    try:
        return render(chat_turns(messages), tokenizer, tools or (), prefill=prefill)
    except ChatError as exc:
        raise OaiError(400, str(exc), param="messages") from None


@dataclass(frozen=True)
class Answer:
    """A chat choice read back: ``content`` (``None`` when it only calls tools), its
    ``tool_calls`` in OpenAI's shape, ``finish_reason``, and ``reasoning`` (what it wrote in a
    leading ``<think>`` block, OpenAI-compatible servers' ``reasoning_content``)."""

    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    reasoning: str | None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


@dataclass(frozen=True)
class CallReading:
    """How a chat answer is read: ``prefill`` (a forced call's start) begins its text,
    ``tools`` says whether calls are read, ``parallel`` whether more than one is kept
    (``parallel_tool_calls``)."""

    prefill: str = ""
    tools: bool = False
    parallel: bool = True

    @property
    def markers(self) -> list[str]:
        """What ends the text a stream shows as it is sampled: the rest is read whole."""
        return call_markers(self.tools)

    def read(self, text: str, finish: str) -> Answer:
        reply = read_answer(
            text, prefill=self.prefill, tools=self.tools, parallel=self.parallel, prefix="call_"
        )
        calls = reply.calls
        shaped = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in calls
        ]
        if calls:
            return Answer(reply.text() or None, shaped, "tool_calls", reply.thinking)
        return Answer(reply.text(), [], finish, reply.thinking)
