"""The OpenAI-compatible routes' streamed answers, piece by piece (local/_oai_stream.py).

What a stream shows of a choice must always be a prefix of the choice's final text (what the
same request gets without ``stream``), and the pieces and the rest must join to exactly that
text, for any tokens in any steps, any stop strings and end-of-turn tokens. The thread bridge
never blocks or fails the decoding, and the response sends a JSON error when nothing was sent
yet, an ``error`` event after, and stops (cancelling the work) when the client goes away.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")

from starlette.responses import Response

from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._oai_stream import ChoiceText, EventStream, Progress, stream_choices
from tinker_actors.local._oai_text import OaiError, trim
from tinker_actors.local._tokenizer import TokenizerText, ensure_model_tokenizer_dir, load_tokenizer
from tinker_actors.types import SampledSequence, SampleResponse

MODELS = ("local/tiny", "local/small")
END = 3  # <|im_end|> in the local tokenizers
_loaded: dict[str, Any] = {}


def tokenizer_of(model: str, tmp: Path) -> Any:
    if model not in _loaded:
        _loaded[model] = load_tokenizer(ensure_model_tokenizer_dir(tmp, lookup_model(model)))
    return _loaded[model]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("tokenizers")
    return {model: tokenizer_of(model, folder) for model in MODELS}


def sampled(text: TokenizerText, tokens: list[int], stops: list[str]) -> list[int]:
    """``tokens`` as the backend returns them: up to the first one whose text completes a
    stop string (it stops there, so a stop string that would have begun earlier but ends
    later never appears)."""
    push, decoded = text.stream(), ""
    for i, token in enumerate(tokens):
        decoded += push(token)
        if any(s and s in decoded for s in stops):
            return tokens[: i + 1]
    return tokens


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    tokens=st.lists(st.integers(0, 4095), min_size=0, max_size=60),
    cuts=st.lists(st.integers(1, 6), max_size=30),
    stop_at=st.none() | st.tuples(st.integers(0, 200), st.integers(1, 5)),
    extra_stop=st.sampled_from(["", "zzz", "\n\n", "e", "the"]),
    ended=st.booleans(),
)
def test_the_pieces_shown_are_prefixes_of_the_final_text_and_join_to_it(
    tokenizers: dict[str, Any],
    model: str,
    tokens: list[int],
    cuts: list[int],
    stop_at: tuple[int, int] | None,
    extra_stop: str,
    ended: bool,
) -> None:
    tokenizer = tokenizers[model]
    whole = str(tokenizer.decode(tokens, skip_special_tokens=True))
    stops = [extra_stop] if extra_stop else []
    if stop_at is not None and whole:  # a stop string taken from the text itself
        start = stop_at[0] % len(whole)
        # (not one with the stand-in for an unfinished character: decoded as a stream, the
        # bytes wait for the rest of their character, whole they decode to U+FFFD)
        stops.append(whole[start : start + stop_at[1]].replace("\ufffd", ""))
    if ended:
        tokens = [*tokens, END, 77, 78]  # what follows the end of the turn is never shown
    tokens = sampled(TokenizerText(tokenizer), tokens, stops)
    final = trim(tokens, [0.0] * len(tokens), False, tokenizer, stops, frozenset({END})).text
    choice = ChoiceText(TokenizerText(tokenizer), stops, frozenset({END}))
    shown = ""
    at = 0
    for size in [*cuts, len(tokens)]:  # the steps, then whatever is left in one
        shown += choice.add(tokens[at : at + size])
        at += size
        assert final.startswith(choice.sent)
        assert shown == choice.sent
    assert shown + choice.rest(final) == final


def test_a_stop_strings_first_characters_wait_until_they_cannot_begin_one(
    tokenizers: dict[str, Any],
) -> None:
    tokenizer = tokenizers["local/tiny"]
    ids = tokenizer.encode("one two three four").ids
    choice = ChoiceText(TokenizerText(tokenizer), ["three"], frozenset({END}))
    shown = "".join(choice.add([t]) for t in ids)
    assert shown == "one two "  # "three" was found: nothing of it, nothing after
    assert choice.done
    held = ChoiceText(TokenizerText(tokenizer), ["xyzzy"], frozenset({END}))
    assert "".join(held.add([t]) for t in ids) == "one two three four"[:-4]
    assert held.rest("one two three four") == "four"


async def test_progress_reaches_trio_in_order_from_a_thread_and_never_fails_it() -> None:
    send, receive = trio.open_memory_channel[Any](100)
    progress = Progress(trio.lowlevel.current_trio_token(), send, tag=7)

    def decoding() -> None:
        for step in range(5):
            progress([[step], []])

    await trio.to_thread.run_sync(decoding)
    got = [await receive.receive() for _ in range(5)]
    assert got == [(7, [[step], []]) for step in range(5)]
    await send.aclose()
    await trio.to_thread.run_sync(decoding)  # nobody listens any more: dropped quietly
    await trio.testing.wait_all_tasks_blocked()


def test_progress_after_the_run_finished_is_dropped() -> None:
    holder: list[Progress] = []

    async def main() -> None:
        send, _receive = trio.open_memory_channel[Any](1)
        holder.append(Progress(trio.lowlevel.current_trio_token(), send, tag=0))

    trio.run(main)
    thread = threading.Thread(target=holder[0], args=([[1]],))
    thread.start()
    thread.join()  # no RunFinishedError escapes into the decoding thread


def response(tokens: list[list[int]]) -> SampleResponse:
    return SampleResponse(
        sequences=[
            SampledSequence(stop_reason="length", tokens_np=np.asarray(t, dtype=np.int32))
            for t in tokens
        ]
    )


async def test_stream_choices_shows_each_choice_as_it_grows_and_returns_every_answer(
    tokenizers: dict[str, Any],
) -> None:
    tokenizer = tokenizers["local/tiny"]
    words = [tokenizer.encode(w).ids for w in ("alpha beta", "gamma delta", "eps zeta")]
    shown: list[tuple[int, str]] = []

    async def sample(p: int, progress: Progress) -> SampleResponse:
        rows = [words[p], words[(p + 1) % 3]]
        for step in range(max(map(len, rows))):
            progress([row[step : step + 1] for row in rows])
            await trio.lowlevel.checkpoint()
        await trio.sleep(0.01)  # the steps are delivered before the answer
        return response(rows)

    async def show(index: int, text: str) -> None:
        shown.append((index, text))

    def choice() -> ChoiceText:
        return ChoiceText(TokenizerText(tokenizer), [], frozenset({END}))

    answers, choices = await stream_choices(sample, 2, 2, choice, show)
    assert len(answers) == 2
    assert [c.sent for c in choices] == ["alpha beta", "gamma delta", "gamma delta", "eps zeta"]
    for index in range(4):
        assert "".join(t for i, t in shown if i == index) == choices[index].sent
    assert len(shown) > 4  # piece by piece, not one piece a choice


async def test_the_first_failure_stops_the_other_samples_and_is_raised(
    tokenizers: dict[str, Any],
) -> None:
    stopped = trio.Event()

    async def sample(p: int, progress: Progress) -> SampleResponse:
        if p == 0:
            await trio.sleep(0.01)
            raise OaiError(400, "no")
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()
        raise AssertionError

    async def show(index: int, text: str) -> None:
        raise AssertionError

    def choice() -> ChoiceText:
        return ChoiceText(TokenizerText(tokenizers["local/tiny"]), [], frozenset())

    with pytest.raises(OaiError, match="no"):
        await stream_choices(sample, 2, 1, choice, show)
    assert stopped.is_set()


class Wire:
    """An ASGI peer for one response: what was sent, and a client that may leave."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.leave = trio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def refusal(exc: Exception) -> Response:
    assert isinstance(exc, OaiError)
    return Response(msgspec.json.encode(exc.body()), status_code=exc.status)


def failed(exc: Exception) -> dict[str, Any]:
    assert isinstance(exc, OaiError)
    return exc.body()


async def run(produce: Any, wire: Wire) -> None:
    await EventStream(produce, refusal, failed)({"type": "http"}, wire.receive, wire.send)


async def test_events_are_written_as_made_then_done() -> None:
    wire = Wire()
    seen_before_second: list[int] = []

    async def produce(emit: Any) -> None:
        await emit({"n": 1})
        seen_before_second.append(len(wire.messages))
        await emit({"n": 2})

    await run(produce, wire)
    assert wire.status == 200
    assert seen_before_second == [2]  # the head and the first event went out at once
    assert wire.body == b'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'
    assert wire.messages[-1]["more_body"] is False


async def test_a_refusal_before_any_event_is_a_json_error_with_its_status() -> None:
    wire = Wire()

    async def produce(emit: Any) -> None:
        raise OaiError(400, "prompt too long", param="max_tokens")

    await run(produce, wire)
    assert wire.status == 400
    assert msgspec.json.decode(wire.body)["error"]["message"] == "prompt too long"


async def test_a_failure_after_the_first_event_is_an_error_event() -> None:
    wire = Wire()

    async def produce(emit: Any) -> None:
        await emit({"n": 1})
        raise OaiError(500, "the sample failed")

    await run(produce, wire)
    events = wire.body.split(b"\n\n")
    assert wire.status == 200
    assert msgspec.json.decode(events[1].removeprefix(b"data: "))["error"]["type"] == (
        "server_error"
    )
    assert events[2] == b"data: [DONE]"


async def test_named_events_carry_their_type_and_end_without_done() -> None:
    # Anthropic's streams: "event: <type>" before each data line, and nothing after the last
    from tinker_actors.local._anthropic_text import anthropic_error, error_event

    wire = Wire()

    async def produce(emit: Any) -> None:
        await emit({"type": "message_start", "n": 1})
        raise OaiError(500, "the sample failed")

    await EventStream(produce, anthropic_error, error_event, named=True)(
        {"type": "http"}, wire.receive, wire.send
    )
    assert wire.body == (
        b'event: message_start\ndata: {"type":"message_start","n":1}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
        b'"message":"the sample failed"}}\n\n'
    )
    refused = Wire()

    async def refuse(emit: Any) -> None:
        raise OaiError(404, "no such checkpoint")

    await EventStream(refuse, anthropic_error, error_event, named=True)(
        {"type": "http"}, refused.receive, refused.send
    )
    assert refused.status == 404
    assert msgspec.json.decode(refused.body) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no such checkpoint"},
    }


async def test_a_client_that_leaves_cancels_the_work_and_gets_nothing_more() -> None:
    wire = Wire()
    cancelled = trio.Event()

    async def produce(emit: Any) -> None:
        await emit({"n": 1})
        wire.leave.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with trio.fail_after(5):
        await run(produce, wire)
    assert cancelled.is_set()
    assert wire.body == b'data: {"n":1}\n\n'  # no [DONE] to a client that is gone
