"""Text for the OpenAI-compatible endpoints: requests, chat rendering, completions, logprobs.

The local server's ``/oai/api/v1`` answers as the service's OpenAI-compatible API does: a text
prompt or chat messages in, text out. What it needs beyond sampling lives here:

* the request bodies (:class:`CompletionBody`, :class:`ChatBody`), read leniently as OpenAI
  clients send them: fields this server does not use are ignored, but a field that would
  change the answer and is not supported (a penalty, ``logit_bias``, ``best_of``) is
  refused with a 400 that names it;
* chat messages, tools and tool calls are read by :mod:`._oai_chat`;
* a completion's text cut where OpenAI cuts it: before the first stop string, at the end of
  turn, and its ``finish_reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

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
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: dict[str, Any] | None = None


_REFUSED = {
    "presence_penalty": "penalties",
    "frequency_penalty": "penalties",
    "logit_bias": "logit_bias",
    "best_of": "best_of",
    "suffix": "suffix",
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


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def encode_prompt(tokenizer: Tokenizer, prompt: str | list[int]) -> list[int]:
    """A completion prompt's token ids (token ids pass through)."""
    return _encode(tokenizer, prompt) if isinstance(prompt, str) else list(prompt)


@dataclass(frozen=True)
class Trimmed:
    """One choice: the tokens and text OpenAI returns, why it ended, and the stop string that
    ended it (``None``: none did)."""

    tokens: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    stop: str | None = None


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
    found = sorted((at, s) for s in stops if s and (at := text.find(s)) >= 0)
    matched = None
    if found:
        at, matched = found[0]
        text = text[:at]
        stopped = True
        # the tokens that make up what is shown (a stop string may end inside a token)
        keep = len(tokens)
        while keep > 0 and len(
            str(tokenizer.decode(tokens[: keep - 1], skip_special_tokens=True))
        ) >= len(text):
            keep -= 1
        tokens, logprobs = tokens[:keep], logprobs[:keep]
    return Trimmed(tokens, logprobs, text, "stop" if stopped else "length", matched)


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
            delta = dict(choice["message"])
            if "tool_calls" in delta:
                delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(delta["tool_calls"])]
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
