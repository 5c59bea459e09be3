"""Streamed answers of the OpenAI-compatible routes: each choice's text as it is sampled.

The torch backend reports every decoding step's new tokens (``SampleJob.progress``, called in
its worker thread); :class:`Progress` hands them to trio without blocking the decoding (a
``run_sync_soon`` each), and :func:`stream_choices` turns them into each choice's text as it
grows (:class:`ChoiceText`; a chat answer's reasoning, then its text, :class:`ChatText`),
written as server-sent events by :class:`EventStream` (the Anthropic-compatible route's too).

What is sent of a choice is always a prefix of its final text, which :func:`._oai_text.trim`
computes from the finished sample as for an answer that is not streamed: the text is decoded
as a stream (whole characters only), a stop string's first characters are held back until
they are known not to begin one, and an end-of-turn token ends the choice unseen. When the
sample is done its last chunk carries the rest of the final text and the ``finish_reason``.
A backend that decodes at once (null) reports nothing, so its choices arrive whole at the
end, as before.

The response head waits for the first event: a request refused before anything was sampled (a
stop the model's tokenizer cannot take, a sample the engine refuses) still gets its JSON error
and status. A failure after the first event is sent as an ``error`` event, which the
``openai`` SDK raises. A client that goes away cancels the sampling.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio
from starlette.responses import Response

from tinker_actors.local._chat import THINK_CLOSE, THINK_OPEN
from tinker_actors.local._oai_text import Usage, trimmed
from tinker_actors.local._tokenizer import TokenizerText

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import Receive, Scope, Send
    from tokenizers import Tokenizer

    from tinker_actors.local._oai_chat import Answer, CallReading
    from tinker_actors.types import SampleResponse

    #: one event's JSON object -> sent
    Emit = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = [
    "ChatText",
    "ChoiceText",
    "EventStream",
    "Progress",
    "StreamedReply",
    "stream_choices",
]


class Progress:
    """A sample's progress listener: called in the backend's thread with each step's new
    tokens per sample; delivers ``(tag, step)`` on a trio channel, never blocking."""

    def __init__(
        self, token: trio.lowlevel.TrioToken, send: trio.MemorySendChannel[Any], tag: int
    ) -> None:
        self._token = token
        self._send = send
        self._tag = tag

    def __call__(self, step: list[list[int]]) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the server stops: nobody listens
            self._token.run_sync_soon(self._deliver, step)

    def _deliver(self, step: list[list[int]]) -> None:
        # the answer is finished (or abandoned): late steps are not needed
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._send.send_nowait((self._tag, step))


class ChoiceText:
    """One choice's shown text as its tokens arrive (see the module docstring).

    ``markers`` end what is shown as a stop string does, but not the choice: what follows
    them (a tool call, the end of the reasoning) is read otherwise, and until one is ruled out
    trailing whitespace is held back too (the answer's text loses the whitespace before a
    call). ``start`` is text the answer begins with that was not sampled (a forced call).
    ``text`` is the tokenizer :meth:`add` decodes with; :meth:`feed` takes decoded text."""

    def __init__(
        self,
        text: TokenizerText | None,
        stops: list[str],
        ends: frozenset[int],
        markers: list[str] | None = None,
        start: str = "",
    ) -> None:
        self._push = text.stream() if text is not None else None
        self._stops = [s for s in [*stops, *(markers or [])] if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._space = bool(markers)
        self._ends = ends
        self.text = start  # decoded so far
        self.sent = ""  # what was shown: always a prefix of the final text
        self.done = False
        self.cut: int | None = None  # where the first stop string or marker begins
        self._searched = 0  # the text before this holds no stop string

    def add(self, tokens: list[int]) -> str:
        """Take the next tokens; return the text that can be shown now ("" for none)."""
        if self.done:
            return ""
        assert self._push is not None, "a ChoiceText made without a tokenizer is fed text"
        return self.feed(*_decoded(self._push, self._ends, tokens))

    def feed(self, text: str, ended: bool = False) -> str:
        """Take the next decoded text (``ended``: the choice ends after it); return the text
        that can be shown now."""
        if self.done:
            return ""
        self.done = ended
        self.text += text
        shown = self.text
        # a stop string not in the text searched before ends in what was added since
        start = max(0, self._searched - self._hold)
        found = [i for i in (shown.find(s, start) for s in self._stops) if i >= 0]
        self._searched = len(shown)
        if found:
            self.cut = min(found)
            shown, self.done = shown[: self.cut], True
        elif self._hold and not self.done:
            shown = shown[: max(len(self.sent), len(shown) - self._hold)]
        if self._space:
            shown = shown[: max(len(self.sent), len(shown.rstrip()))]
        delta = shown[len(self.sent) :]
        self.sent = shown
        return delta

    def rest(self, final: str) -> str:
        """What is left to show of the choice's ``final`` text."""
        return final[len(self.sent) :] if final.startswith(self.sent) else ""


def _decoded(
    push: Callable[[int], str], ends: frozenset[int], tokens: list[int]
) -> tuple[str, bool]:
    """The text of ``tokens`` up to an end-of-turn token, and whether one came."""
    text = ""
    for token in tokens:
        if token in ends:
            return text, True
        text += push(token)
    return text, False


class ChatText:
    """A chat answer's reasoning and text as its tokens arrive.

    An answer that opens with ``<think>`` (after whitespace) shows its reasoning as it grows,
    up to ``</think>``, then its text, each a :class:`ChoiceText`: what is shown of each is
    always a prefix of what :func:`._chat.read_reply` reads from the whole answer (leading
    and trailing newlines of the reasoning, and the newlines after it, wait until more
    follows). :meth:`add` returns the pieces to show, ``("thinking" | "text", piece)``."""

    def __init__(
        self,
        text: TokenizerText,
        stops: list[str],
        ends: frozenset[int],
        markers: list[str] | None = None,
        start: str = "",
    ) -> None:
        self._push = text.stream()
        self._stops = stops
        self._ends = ends
        self._markers = markers
        self._head = start  # what came before it is known whether the answer reasons
        self.thinking: ChoiceText | None = None
        self.answer: ChoiceText | None = None
        self._skip = False  # newlines that open the part being fed are not shown
        self.done = False

    def add(self, tokens: list[int]) -> list[tuple[str, str]]:
        if self.done:
            return []
        decoded, self.done = _decoded(self._push, self._ends, tokens)
        return self._route(decoded, self.done)

    def _route(self, text: str, ended: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.thinking is None and self.answer is None:
            self._head += text
            head = self._head.lstrip()
            if not ended and (not head or THINK_OPEN.startswith(head)):
                return out  # it may still open with <think>
            if head.startswith(THINK_OPEN):
                self.thinking = ChoiceText(None, self._stops, frozenset(), [THINK_CLOSE])
                text, self._skip = head[len(THINK_OPEN) :], True
            else:
                self._start_answer(skip=False)
                text = self._head
        if self.answer is None:
            assert self.thinking is not None
            shown = self.thinking.feed(self._skipped(text), ended)
            if shown:
                out.append(("thinking", shown))
            cut = self.thinking.cut
            if cut is None or not self.thinking.text.startswith(THINK_CLOSE, cut):
                return out  # still reasoning, or cut inside it by a stop string
            text = self.thinking.text[cut + len(THINK_CLOSE) :]
            self._start_answer(skip=True)
        assert self.answer is not None
        shown = self.answer.feed(self._skipped(text), ended)
        if shown:
            out.append(("text", shown))
        return out

    def _start_answer(self, *, skip: bool) -> None:
        self.answer = ChoiceText(None, self._stops, frozenset(), self._markers)
        self._skip = skip

    def _skipped(self, text: str) -> str:
        if self._skip:
            text = text.lstrip("\n")
            self._skip = not text
        return text


_Choice = TypeVar("_Choice", ChoiceText, ChatText)


async def stream_choices(
    sample: Callable[[int, Progress], Awaitable[SampleResponse]],
    prompts: int,
    n: int,
    choice: Callable[[], _Choice],
    shown: Callable[[int, Any], Awaitable[None]],
) -> tuple[list[SampleResponse], list[_Choice]]:
    """Sample ``prompts`` prompts at once (``sample(p, progress)``), ``n`` choices each, and
    ``shown(index, delta)`` what each choice's ``add`` gives to show as it grows (choice ``j``
    of prompt ``p`` is index ``p * n + j``). Returns the answers and every choice's state, in
    index order; the first failure of a sample stops the others and is raised."""
    token = trio.lowlevel.current_trio_token()
    send, receive = trio.open_memory_channel[tuple[int, list[list[int]] | None]](math.inf)
    choices = [choice() for _ in range(prompts * n)]
    answers: list[SampleResponse | None] = [None] * prompts
    failure: list[Exception] = []

    async with trio.open_nursery() as nursery:

        async def one(p: int) -> None:
            try:
                answers[p] = await sample(p, Progress(token, send, p))
            except Exception as exc:
                failure.append(exc)
                nursery.cancel_scope.cancel()
            with contextlib.suppress(trio.ClosedResourceError):  # the others failed first
                send.send_nowait((p, None))

        for p in range(prompts):
            nursery.start_soon(one, p)
        with receive, send:
            left = prompts
            while left:
                p, step = await receive.receive()
                if step is None:
                    left -= 1
                    continue
                for j, tokens in enumerate(step):
                    delta = choices[p * n + j].add(tokens)
                    if delta:
                        await shown(p * n + j, delta)
    if failure:
        raise failure[0]
    return [a for a in answers if a is not None], choices


class EventStream(Response):
    """Server-sent events, each written as it is made (see the module docstring).

    ``produce(emit)`` makes the events; ``refusal(exc)`` is the response for a failure before
    the first event, and ``failed(exc)`` the event for one after it. OpenAI's events are
    ``data:`` lines ended by ``data: [DONE]``; ``named`` events (Anthropic's) also carry
    their ``type`` as the ``event:`` line, and nothing follows the last."""

    def __init__(
        self,
        produce: Callable[[Emit], Awaitable[None]],
        refusal: Callable[[Exception], Response],
        failed: Callable[[Exception], dict[str, Any]],
        *,
        named: bool = False,
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self._produce = produce
        self._refusal = refusal
        self._failed = failed
        self._named = named

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = gone = False
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]

        async def write(body: bytes, more: bool = True) -> None:
            nonlocal started
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": more})

        async def emit(event: dict[str, Any]) -> None:
            data = b"data: " + msgspec.json.encode(event) + b"\n\n"
            if self._named:
                data = b"event: " + str(event["type"]).encode() + b"\n" + data
            await write(data)

        async def watch(scope: trio.CancelScope) -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            scope.cancel()

        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            try:
                await self._produce(emit)
            except Exception as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if gone:
            return  # nobody reads any more
        if failure is not None:
            if not started:
                await self._refusal(failure)(scope, receive, send)
                return
            await emit(self._failed(failure))
        await write(b"" if self._named else b"data: [DONE]\n\n", more=False)


@dataclass(frozen=True)
class StreamedReply:
    """An answer of ``/completions`` or ``/chat/completions`` streamed as it is sampled.

    ``head``: the fields every chunk repeats (``id``, ``object``, ``created``, ``model``);
    ``sample(p, progress)`` samples prompt ``p`` (``lengths[p]`` tokens) with ``n`` choices;
    ``reading``: how a chat's answers are read (``None`` for completions)."""

    head: dict[str, Any]
    sample: Callable[[int, Progress], Awaitable[SampleResponse]]
    lengths: list[int]
    n: int
    tokenizer: Tokenizer
    stops: list[str]
    ends: frozenset[int]
    usage: bool
    reading: CallReading | None = None

    def _part(
        self,
        index: int,
        text: str,
        finish: str | None,
        first: bool,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if self.reading is None:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {"content": text} if text or first else {}
        if first:
            delta = {"role": "assistant", **delta}
        delta.update(extra or {})
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    async def produce(self, emit: Emit) -> None:
        """Every choice's text (and a chat's reasoning) as it grows, then each one's rest,
        calls and finish reason, then the usage when asked for (a chunk without choices, as
        OpenAI sends it)."""
        opened: set[int] = set()

        async def chunk(
            index: int, text: str, finish: str | None = None, extra: dict[str, Any] | None = None
        ) -> None:
            first = index not in opened
            opened.add(index)
            part = self._part(index, text, finish, first, extra)
            await emit({**self.head, "choices": [part]})

        async def pieces(index: int, shown: list[tuple[str, str]]) -> None:
            for kind, piece in shown:
                if kind == "text":
                    await chunk(index, piece)
                else:
                    await chunk(index, "", None, {"reasoning_content": piece})

        text = TokenizerText(self.tokenizer)
        reading = self.reading
        count = len(self.lengths)
        states: list[ChoiceText] | list[ChatText]
        if reading is None:  # completions: the text alone

            def plain() -> ChoiceText:
                return ChoiceText(text, self.stops, self.ends)

            answers, states = await stream_choices(self.sample, count, self.n, plain, chunk)
        else:
            markers, start = reading.markers, reading.prefill

            def chat() -> ChatText:
                return ChatText(text, self.stops, self.ends, markers, start)

            answers, states = await stream_choices(self.sample, count, self.n, chat, pieces)
        used = Usage()
        for p, answer in enumerate(answers):
            used.add_prompt(self.lengths[p], answer)
            for j, seq in enumerate(answer.sequences):
                cut = trimmed(seq, self.tokenizer, self.stops, self.ends)
                used.completion += len(cut.tokens)
                index = p * self.n + j
                state = states[index]
                if isinstance(state, ChatText):
                    assert reading is not None
                    read = reading.read(cut.text, cut.finish_reason)
                    await self._finish(chunk, index, state, read)
                else:
                    await chunk(index, state.rest(cut.text), cut.finish_reason)
        if self.usage:
            await emit({**self.head, "choices": [], "usage": used.json()})

    async def _finish(
        self,
        chunk: Callable[..., Awaitable[None]],
        index: int,
        chat: ChatText,
        read: Answer,
    ) -> None:
        """A chat choice's last chunks: the rest of its reasoning and text, then its calls
        and finish reason."""
        thought = chat.thinking.rest(read.reasoning or "") if chat.thinking else read.reasoning
        if thought:
            await chunk(index, "", None, {"reasoning_content": thought})
        rest = chat.answer.rest(read.content or "") if chat.answer else read.content or ""
        extra: dict[str, Any] = {}
        if read.tool_calls:
            if rest:  # the text first, as it was written
                await chunk(index, rest)
                rest = ""
            extra["tool_calls"] = [{"index": i, **c} for i, c in enumerate(read.tool_calls)]
        await chunk(index, rest, read.finish_reason, extra)
