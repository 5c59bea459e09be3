"""Conversations of the compatible APIs: rendered as the model reads them, answers read back.

The OpenAI-compatible chat route and the Anthropic-compatible messages route take the same
things in different shapes: turns of text and pictures, tools the model may call, the calls an
assistant made and what the tools answered, and an assistant's reasoning. Both are turned into
:class:`Turn` s and rendered here, in ChatML with Qwen's conventions, which is what
tinker-cookbook's ``qwen3`` renderer writes, token for token. A model trained through the Tinker
API with that renderer so reads the same prompt through either API:

* tools are declared at the end of the system turn, one JSON line each inside ``<tools>``;
* an assistant's calls follow its text, ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n
  </tool_call>`` each, a newline apart;
* a tool's answer is a user turn holding ``<tool_response>\\n...\\n</tool_response>``;
* reasoning is not rendered for the turns of the history (the template drops it), only for an
  assistant turn left open for the model to continue.

A completion is read back by :func:`read_reply`: a leading ``<think>...</think>`` is the
reasoning (Qwen's thinking models open every answer with one, empty when they did not think;
one never closed, cut by ``max_tokens``, is all reasoning),
and every well-formed ``<tool_call>`` block (a JSON object with a ``name`` and object
``arguments``, or Qwen3.5's ``<function=...>`` form) is a :class:`Call`; anything else, a
malformed or unterminated block included, stays text, so nothing the model wrote is lost.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._images import grid_for, image_size
from tinker_actors.types import EncodedTextChunk, ImageChunk, ModelInput

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tokenizers import Tokenizer

__all__ = [
    "RESPONSE_CLOSE",
    "RESPONSE_OPEN",
    "ROLES",
    "THINK_CLOSE",
    "THINK_OPEN",
    "TOOLS_AFTER",
    "TOOLS_BEFORE",
    "TOOL_CLOSE",
    "TOOL_OPEN",
    "Call",
    "ChatError",
    "Reply",
    "Tool",
    "Turn",
    "call_id",
    "call_markers",
    "forced_call",
    "picture",
    "read_answer",
    "read_reply",
    "render",
]

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>\n", "\n</tool_response>"
ROLES = ("system", "user", "assistant", "tool")
#: What the system turn says around the declared tools (one JSON line each, between them).
TOOLS_BEFORE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_AFTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n"
    f'{TOOL_OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n{TOOL_CLOSE}'
)


class ChatError(ValueError):
    """A conversation that cannot be rendered (the routes answer it with a 400)."""


@dataclass(frozen=True)
class Call:
    """A tool call: the tool's name and its arguments (a JSON object); ``id`` names it to the
    caller, who answers it with a tool turn."""

    name: str
    arguments: dict[str, Any]
    id: str = ""

    def rendered(self) -> str:
        # the cookbook's (and Qwen's template's) spelling: json.dumps' default separators
        payload = json.dumps({"name": self.name, "arguments": self.arguments})
        return f"{TOOL_OPEN}\n{payload}\n{TOOL_CLOSE}"


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its name, what it does, and its arguments' JSON schema."""

    name: str
    parameters: dict[str, Any]
    description: str | None = None

    def declared(self) -> str:
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return json.dumps({"type": "function", "function": function}, separators=(", ", ": "))


@dataclass
class Turn:
    """One turn: ``role`` is system, user, assistant or tool; ``parts`` its text and pictures
    in order; an assistant's ``calls`` and ``thinking``."""

    role: str
    parts: list[str | ImageChunk] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    thinking: str | None = None

    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


_FORMATS: dict[str, Literal["png", "jpeg"]] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
}


def picture(media_type: str, data: str) -> ImageChunk:
    """A base64 PNG or JPEG as an ImageChunk with its token count (the local models' rule,
    :mod:`._images`).

    Raises:
        ChatError: another media type, data that is not base64, or not a readable picture.
    """
    fmt = _FORMATS.get(media_type)
    if fmt is None:
        raise ChatError(f"a picture must be a PNG or JPEG, got {media_type!r}")
    try:
        raw = base64.b64decode(data, validate=True)
        rows, cols = grid_for(*image_size(raw, fmt))
    except (ValueError, BackendInputError) as exc:  # binascii.Error, or text not ASCII
        raise ChatError(f"the picture's data is not a base64 PNG or JPEG: {exc}") from None
    return ImageChunk(data=raw, format=fmt, expected_tokens=rows * cols)


def call_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _tools_text(tools: Sequence[Tool]) -> str:
    return TOOLS_BEFORE + "\n".join(t.declared() for t in tools) + TOOLS_AFTER


def forced_call(name: str | None) -> str:
    """The start of the assistant's answer that makes it call a tool: any tool (``None``), or
    the one named (its arguments are then all the model writes)."""
    if name is None:
        return f'{TOOL_OPEN}\n{{"name": "'
    return f'{TOOL_OPEN}\n{{"name": {json.dumps(name)}, "arguments": '


def render(
    turns: Sequence[Turn],
    tokenizer: Tokenizer,
    tools: Sequence[Tool] = (),
    *,
    prefill: str = "",
    continue_last: bool = False,
) -> ModelInput:
    """The conversation as the model reads it, ending in the assistant's turn to write.

    With ``continue_last``, an assistant turn last (without calls) is left open for the model
    to continue (an Anthropic prefill); otherwise a new assistant turn is opened, starting
    with ``prefill`` (a forced tool call).

    Raises:
        ChatError: no turns, a role that is not one of :data:`ROLES`, or a model without
            ChatML's ``<|im_start|>`` / ``<|im_end|>`` tokens.
    """
    if not turns:
        raise ChatError("the conversation must hold at least one message")
    start, end = tokenizer.token_to_id("<|im_start|>"), tokenizer.token_to_id("<|im_end|>")
    if start is None or end is None:
        raise ChatError("this model's tokenizer has no <|im_start|> / <|im_end|> tokens")
    turns = list(turns)
    if tools:
        declared = _tools_text(tools)
        if turns[0].role == "system":
            system = turns[0].text()
            text = f"{system}\n\n{declared}" if system else declared
            turns[0] = Turn("system", [text])
        else:
            turns.insert(0, Turn("system", [declared]))
    open_last = continue_last and turns[-1].role == "assistant" and not turns[-1].calls
    out = _Ids(tokenizer)
    for index, turn in enumerate(turns):
        if turn.role not in ROLES:
            raise ChatError(f"message {index} has role {turn.role!r}; roles are {ROLES}")
        last = open_last and index == len(turns) - 1
        out.ids += [start, *out.encode(f"{'user' if turn.role == 'tool' else turn.role}\n")]
        # a turn's text is encoded whole, as the renderer encodes a message's content
        parts: list[str | ImageChunk] = list(turn.parts)
        if turn.role == "tool":
            parts = [RESPONSE_OPEN, *parts, RESPONSE_CLOSE]
        elif last and turn.thinking is not None:
            parts.insert(0, f"{THINK_OPEN}{turn.thinking}{THINK_CLOSE}")
        if turn.calls:
            has_text = any(p for p in turn.parts if not isinstance(p, str) or p)
            parts.append(("\n" if has_text else "") + "\n".join(c.rendered() for c in turn.calls))
        out.add(parts)
        if not last:
            out.ids += [end, *out.encode("\n")]
    if not open_last:
        out.ids += [start, *out.encode("assistant\n")]
        out.add([prefill])
    return out.model_input()


class _Ids:
    """Token ids and pictures as they are rendered, in order."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.chunks: list[EncodedTextChunk | ImageChunk] = []
        self.ids: list[int] = []

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else []

    def add(self, parts: Sequence[str | ImageChunk]) -> None:
        text = ""
        for part in parts:
            if isinstance(part, str):
                text += part
                continue
            self.ids += self.encode(text)
            text = ""
            self.chunks += [EncodedTextChunk(tokens=self.ids), part]
            self.ids = []
        self.ids += self.encode(text)

    def model_input(self) -> ModelInput:
        return ModelInput(chunks=[*self.chunks, EncodedTextChunk(tokens=self.ids)])


@dataclass(frozen=True)
class Reply:
    """A completion read back: its reasoning (``None``: none, or empty), then its
    text and calls in the order written (texts next to a call lose the whitespace that
    separates them from it; texts of whitespace alone are dropped)."""

    thinking: str | None
    blocks: list[str | Call]

    @property
    def calls(self) -> list[Call]:
        return [b for b in self.blocks if isinstance(b, Call)]

    def first_call_only(self) -> Reply:
        """The reply with its calls after the first left out (one call at a time)."""
        calls = self.calls
        if len(calls) < 2:
            return self
        return Reply(self.thinking, [b for b in self.blocks if b not in calls[1:]])

    def text(self) -> str:
        return "".join(b for b in self.blocks if isinstance(b, str))


def call_markers(tools: bool) -> list[str]:
    """What ends the text a stream shows as it is sampled, when calls are read: the call and
    what follows it are read from the whole answer."""
    return [TOOL_OPEN] if tools else []


def read_answer(text: str, *, prefill: str, tools: bool, parallel: bool, prefix: str) -> Reply:
    """An answer that began with ``prefill`` (a forced call's start, not sampled) read back
    by :func:`read_reply`; without ``parallel``, its first call only."""
    reply = read_reply(prefill + text, tools=tools, prefix=prefix)
    return reply if parallel else reply.first_call_only()


def read_reply(text: str, *, tools: bool, prefix: str = "call_") -> Reply:
    """Read a completion's reasoning and, with ``tools``, its calls (see the module
    docstring); calls get ids ``prefix`` + 24 hex digits."""
    reasoning = None
    if text.lstrip().startswith(THINK_OPEN):
        # unclosed (cut by max_tokens or a stop string): all of it is reasoning
        inner, _, text = text.lstrip()[len(THINK_OPEN) :].partition(THINK_CLOSE)
        # reasoning of only whitespace is none: a stream never shows it (it waits for text)
        reasoning = inner.strip("\n") if inner.strip() else None
        text = text.lstrip("\n")
    if not tools:
        return Reply(reasoning, [text] if text else [])
    blocks: list[str | Call] = []
    at = 0
    pending = ""  # text since the last call
    while (found := text.find(TOOL_OPEN, at)) >= 0:
        close = text.find(TOOL_CLOSE, found)
        if close < 0:
            break  # unterminated (cut by max_tokens): stays text
        call = _call(text[found + len(TOOL_OPEN) : close], prefix)
        after = close + len(TOOL_CLOSE)
        if call is None:
            pending += text[at:after]
        else:
            pending += text[at:found]
            _add_text(blocks, pending, before_call=True)
            blocks.append(call)
            pending = ""
        at = after
    _add_text(blocks, pending + text[at:], before_call=False)
    return Reply(reasoning, blocks)


def _add_text(blocks: list[str | Call], text: str, *, before_call: bool) -> None:
    if blocks and isinstance(blocks[-1], Call):
        text = text.lstrip()
    if before_call:
        text = text.rstrip()
    if text.strip():
        blocks.append(text)


def _call(inner: str, prefix: str) -> Call | None:
    """A call's JSON (Qwen3's form), or its XML (Qwen3.5's and Qwen3-Coder's form:
    ``<function=name>`` holding ``<parameter=key>value</parameter>`` s)."""
    xml = _XML_FUNCTION.fullmatch(inner)
    if xml is not None:
        arguments: Any = {
            key.strip(): _value(value) for key, value in _XML_PARAMETER.findall(xml.group(2))
        }
        return Call(xml.group(1).strip(), arguments, call_id(prefix))
    try:
        payload = json.loads(inner)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return None
    arguments = payload.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return Call(payload["name"], arguments, call_id(prefix))


_XML_FUNCTION = re.compile(r"\s*<function=([^>\n]+)>(.*?)</function>\s*", re.DOTALL)
_XML_PARAMETER = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.DOTALL)


def _value(text: str) -> Any:
    """An XML parameter's value: JSON when it reads as JSON (numbers, objects), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
