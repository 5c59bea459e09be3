"""Text for the OpenAI-compatible endpoints: requests, chat rendering, completions, logprobs.

The local server's ``/oai/api/v1`` answers as the service's OpenAI-compatible API does: a text
prompt or chat messages in, text out. What it needs beyond sampling lives here:

* the request bodies (:class:`CompletionBody`, :class:`ChatBody`), read leniently as OpenAI
  clients send them: fields this server does not use are ignored, but a field that would
  change the answer and is not supported (a penalty, ``logit_bias``, ``best_of``, tools) is
  refused with a 400 that names it;
* chat messages rendered in ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``, then
  ``<|im_start|>assistant\\n``), which every local tokenizer has as special tokens;
* a completion's text cut where OpenAI cuts it: before the first stop string, at the end of
  turn, and its ``finish_reason``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._images import grid_for, image_size
from tinker_actors.types import EncodedTextChunk, ImageChunk, ModelInput

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tinker_actors.types import SampledSequence, SampleResponse

__all__ = [
    "ChatBody",
    "CompletionBody",
    "OaiError",
    "Trimmed",
    "Usage",
    "chat_logprobs",
    "chat_prompt",
    "completion_logprobs",
    "decode_body",
    "echoed",
    "encode_prompt",
    "event_stream",
    "prompts",
    "stops",
    "trim",
    "trimmed",
]


class OaiError(Exception):
    """A request the OpenAI-compatible endpoints refuse: ``status`` and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 401:
            kind = "authentication_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": None}}


class _Common(msgspec.Struct, kw_only=True):
    model: str
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    # accepted when they change nothing; anything else is refused by name
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None


class CompletionBody(_Common, kw_only=True):
    """``POST /completions``: a prompt (text, token ids, or a list of either) to continue."""

    prompt: str | list[Any]  # text, token ids, or a list of either (checked by prompts())
    max_tokens: int | None = 16
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None


class ChatBody(_Common, kw_only=True):
    """``POST /chat/completions``: messages to answer as the assistant."""

    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None


_REFUSED = {
    "presence_penalty": "penalties",
    "frequency_penalty": "penalties",
    "logit_bias": "logit_bias",
    "best_of": "best_of",
    "suffix": "suffix",
    "tools": "tools",
}


def decode_body(raw: bytes, kind: type[CompletionBody] | type[ChatBody]) -> Any:
    """Read a request body, refusing what would change the answer and is not supported.

    Raises:
        OaiError: 400, naming the field.
    """
    try:
        body = msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise OaiError(400, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise OaiError(400, f"the body is not JSON: {exc}") from None
    for name, what in _REFUSED.items():
        value = getattr(body, name, None)
        if value not in (None, False, 0, 0.0, {}, []) and not (name == "best_of" and value == 1):
            raise OaiError(
                400,
                f"{name} is not supported by the local server ({what}); leave it unset",
                param=name,
            )
    if isinstance(body, ChatBody):
        form = body.response_format
        if form is not None and form.get("type", "text") != "text":
            raise OaiError(
                400,
                "response_format other than text is not supported by the local server",
                param="response_format",
            )
    if body.n < 1:
        raise OaiError(400, f"n must be at least 1, got {body.n}", param="n")
    if not 0.0 <= body.temperature <= 2.0:
        raise OaiError(
            400, f"temperature must be in [0, 2], got {body.temperature}", param="temperature"
        )
    return body


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
    """An ``image_url`` part (a ``data:`` URL of a PNG or JPEG) as an ImageChunk with its
    token count (the local models' rule, :mod:`._images`)."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    head, _, data = str(url).partition(",")
    formats: dict[str, Literal["png", "jpeg"]] = {
        "data:image/png;base64": "png",
        "data:image/jpeg;base64": "jpeg",
    }
    fmt = formats.get(head.replace("image/jpg", "image/jpeg"))
    if fmt is None:
        raise OaiError(
            400,
            f"messages[{index}]: an image_url must be a data: URL of a base64 PNG or JPEG "
            "(data:image/png;base64,...); the local server does not fetch URLs",
            param="messages",
        )
    try:
        raw = base64.b64decode(data, validate=True)
        rows, cols = grid_for(*image_size(raw, fmt))
    except (binascii.Error, BackendInputError) as exc:
        raise OaiError(400, f"messages[{index}]: {exc}", param="messages") from None
    return ImageChunk(data=raw, format=fmt, expected_tokens=rows * cols)


def chat_prompt(messages: list[dict[str, Any]], tokenizer: Tokenizer) -> ModelInput:
    """``messages`` in ChatML, ending with the assistant's open turn (pictures in place).

    Raises:
        OaiError: no messages, a message without a role, or content that cannot be read.
    """
    if not messages:
        raise OaiError(400, "messages must hold at least one message", param="messages")
    start, end = tokenizer.token_to_id("<|im_start|>"), tokenizer.token_to_id("<|im_end|>")
    if start is None or end is None:
        raise OaiError(500, "this model's tokenizer has no <|im_start|> / <|im_end|> tokens")
    chunks: list[EncodedTextChunk | ImageChunk] = []
    ids: list[int] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise OaiError(400, f"messages[{index}] needs a role", param="messages")
        role = "system" if role == "developer" else role
        ids += [start, *_encode(tokenizer, f"{role}\n")]
        for part in _parts(message.get("content"), index):
            if isinstance(part, str):
                ids += _encode(tokenizer, part)
            else:
                chunks += [EncodedTextChunk(tokens=ids), part]
                ids = []
        ids += [end, *_encode(tokenizer, "\n")]
    ids += [start, *_encode(tokenizer, "assistant\n")]
    return ModelInput(chunks=[*chunks, EncodedTextChunk(tokens=ids)])


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def encode_prompt(tokenizer: Tokenizer, prompt: str | list[int]) -> list[int]:
    """A completion prompt's token ids (token ids pass through)."""
    return _encode(tokenizer, prompt) if isinstance(prompt, str) else list(prompt)


@dataclass(frozen=True)
class Trimmed:
    """One choice: the tokens and text OpenAI returns, and why it ended."""

    tokens: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


def trim(
    tokens: list[int],
    logprobs: list[float],
    stopped: bool,
    tokenizer: Tokenizer,
    stops: list[str],
    end_ids: frozenset[int],
) -> Trimmed:
    """Cut a completion at its end of turn (``end_ids``, not shown) and before its first stop
    string; ``finish_reason`` is ``stop`` for either (or the model's own stop), else
    ``length``."""
    for at, token in enumerate(tokens):
        if token in end_ids:
            tokens, logprobs, stopped = tokens[:at], logprobs[:at], True
            break
    text = str(tokenizer.decode(tokens, skip_special_tokens=True))
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if found:
        text = text[: min(found)]
        stopped = True
        # the tokens that make up what is shown (a stop string may end inside a token)
        keep = len(tokens)
        while keep > 0 and len(
            str(tokenizer.decode(tokens[: keep - 1], skip_special_tokens=True))
        ) >= len(text):
            keep -= 1
        tokens, logprobs = tokens[:keep], logprobs[:keep]
    return Trimmed(tokens, logprobs, text, "stop" if stopped else "length")


def trimmed(
    seq: SampledSequence, tokenizer: Tokenizer, stops: list[str], ends: frozenset[int]
) -> Trimmed:
    """:func:`trim` of a sampled sequence."""
    lps = seq.logprobs_np.tolist() if seq.logprobs_np is not None else [0.0] * seq.tokens_np.size
    return trim(seq.tokens_np.tolist(), lps, seq.stop_reason == "stop", tokenizer, stops, ends)


@dataclass
class Usage:
    """An answer's token counts; ``cached``: the prompt tokens the server had computed before
    (``prompt_cache_hit_tokens``), which OpenAI reports as ``prompt_tokens_details``."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0

    def add_prompt(self, length: int, answer: SampleResponse) -> None:
        self.prompt += length
        self.cached += answer.prompt_cache_hit_tokens

    def json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        }


def prompts(prompt: str | list[Any]) -> list[str | list[int]]:
    """The prompts of a completion request: a text, token ids, or a list of texts or of lists
    of token ids (a choice each, ``n`` times)."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise OaiError(400, "prompt must not be empty", param="prompt")
    if all(_is_id(p) for p in prompt):
        return [[int(p) for p in prompt]]
    out: list[str | list[int]] = []
    for i, p in enumerate(prompt):
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, list) and p and all(_is_id(t) for t in p):
            out.append([int(t) for t in p])
        else:
            raise OaiError(
                400,
                f"prompt[{i}] must be a string or a non-empty list of token ids",
                param="prompt",
            )
    return out


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


def _token_text(tokenizer: Tokenizer, token: int) -> str:
    return str(tokenizer.decode([token], skip_special_tokens=False))


def _tops(seq: Any, tokenizer: Tokenizer, k: int, count: int) -> list[list[tuple[str, float]]]:
    topk = seq.topk_logprobs_np
    if not k or topk is None:
        return [[] for _ in range(count)]
    ids, lps = topk.token_ids[:count, :k].tolist(), topk.logprobs[:count, :k].tolist()
    return [
        [(_token_text(tokenizer, t), v) for t, v in zip(row, vals, strict=True)]
        for row, vals in zip(ids, lps, strict=True)
    ]


def completion_logprobs(cut: Trimmed, seq: Any, tokenizer: Tokenizer, k: int) -> dict[str, Any]:
    tokens = [_token_text(tokenizer, t) for t in cut.tokens]
    offsets, at = [], 0
    for text in tokens:
        offsets.append(at)
        at += len(text)
    tops = _tops(seq, tokenizer, k, len(tokens))
    return {
        "tokens": tokens,
        "token_logprobs": cut.logprobs,
        "top_logprobs": [dict(row) for row in tops] if k else None,
        "text_offset": offsets,
    }


def echoed(
    cut: Trimmed,
    seq: Any,
    prompt: list[int],
    answer: SampleResponse,
    tokenizer: Tokenizer,
    k: int,
) -> dict[str, Any]:
    """An echoed completion's logprobs: the prompt's tokens (the first one's logprob None:
    nothing comes before it to score it; its top alternatives too), then the completion's, as
    :func:`completion_logprobs` gives them, with offsets running across both."""
    lps = answer.prompt_logprobs_np
    scored: list[float | None] = [None] * len(prompt)
    if lps is not None:
        scored = [None if v != v else float(v) for v in lps.tolist()]  # NaN: unscored
    tops: list[dict[str, float] | None] = [None] * len(prompt)
    rows = answer.topk_prompt_logprobs_np
    if k and rows is not None:
        ids, values = rows.token_ids[:, :k].tolist(), rows.logprobs[:, :k].tolist()
        for i in range(1, len(prompt)):
            tops[i] = {_token_text(tokenizer, t): v for t, v in zip(ids[i], values[i], strict=True)}
    after = completion_logprobs(cut, seq, tokenizer, k)
    tokens = [_token_text(tokenizer, t) for t in prompt] + after["tokens"]
    offsets, at = [], 0
    for text in tokens:
        offsets.append(at)
        at += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": scored + after["token_logprobs"],
        "top_logprobs": tops + after["top_logprobs"] if k else None,
        "text_offset": offsets,
    }


def chat_logprobs(cut: Trimmed, seq: Any, tokenizer: Tokenizer, k: int) -> list[dict[str, Any]]:
    tops = _tops(seq, tokenizer, k, len(cut.tokens))
    out = []
    for token, lp, row in zip(cut.tokens, cut.logprobs, tops, strict=True):
        text = _token_text(tokenizer, token)
        out.append(
            {
                "token": text,
                "logprob": lp,
                "bytes": list(text.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in row
                ],
            }
        )
    return out


def event_stream(reply: dict[str, Any], kind: str, usage: bool) -> bytes:
    """The answer as server-sent events: a chunk per choice with its whole text, a last chunk
    with the usage and no choices when asked for (``stream_options.include_usage``, as OpenAI
    sends it only then: code that reads ``chunk.choices[0]`` of every chunk would fail on it),
    then ``[DONE]`` (the sample is complete before the answer starts)."""
    events = []
    for choice in reply["choices"]:
        if kind == "chat.completion.chunk":
            delta = {"role": "assistant", "content": choice["message"]["content"]}
            part = {
                "index": choice["index"],
                "delta": delta,
                "logprobs": choice["logprobs"],
                "finish_reason": choice["finish_reason"],
            }
        else:
            part = {**choice}
        chunk = {k: v for k, v in reply.items() if k not in ("choices", "usage")}
        chunk.update(object=kind, choices=[part])
        events.append(chunk)
    if usage:
        events.append(
            {**{k: v for k, v in reply.items() if k != "choices"}, "object": kind, "choices": []}
        )
    body = (
        b"".join(b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )
    return body
