"""The anthropic SDK against the local server's Anthropic-compatible API (``/anthropic/api``).

The service lets Anthropic clients (the SDK, Claude Code through ``ANTHROPIC_BASE_URL``) sample a
base model or a ``tinker://`` checkpoint; the local server answers the same routes. The referee
is the ``anthropic`` package itself: its parsing of every answer (messages, streams and their
accumulation, token counts, models, errors) is what an agent sees. What the answers hold is
checked against the Tinker sampling API on the same server, on prompts rendered by
tinker-cookbook's ``qwen3`` renderer (which the server's rendering must equal token for token):
greedy text is the decoding of the tokens a SamplingClient draws for the same prompt.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tinker_actors import compat as tinker
from tinker_actors.testing import LocalServerThread

anthropic = pytest.importorskip(
    "anthropic", reason="the anthropic SDK comes with the interop extra"
)
pytest.importorskip("torch", reason="the torch backend needs the torch extra")
transformers = pytest.importorskip("transformers", reason="transformers comes with tinker")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")

from tinker_cookbook import renderers  # noqa: E402

pytestmark = [pytest.mark.interop]

ALIAS = "Qwen/Qwen3-8B"
GREEDY = {"temperature": 0}  # newer SDKs take sampling settings only as extra fields
END = 3  # <|im_end|> in the local tokenizers (EOS is 0)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="torch", model_aliases={ALIAS: "local/tiny"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: LocalServerThread) -> Iterator[Any]:
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=server.api_key) as made:
        yield made


@pytest.fixture(scope="module")
def service(server: LocalServerThread) -> Iterator[Any]:
    with tinker.ServiceClient(base_url=server.url, api_key=server.api_key) as opened:
        yield opened


@pytest.fixture(scope="module")
def renderer(service: Any) -> Any:
    trainer = service.create_lora_training_client(base_model=ALIAS, rank=4).result()
    return renderers.get_renderer("qwen3", trainer.get_tokenizer())


@pytest.fixture(scope="module")
def checkpoint(service: Any) -> str:
    trainer = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
    return str(trainer.save_weights_for_sampler("anthropic").result().path)


def greedy(service: Any, model: dict[str, str], prompt: list[int], n: int) -> list[int]:
    sampler = service.create_sampling_client(**model).result()
    params = tinker.types.SamplingParams(max_tokens=n, temperature=0.0)
    result = sampler.sample(tinker.types.ModelInput.from_ints(prompt), 1, params).result()
    drawn = list(result.sequences[0].tokens)
    ends = [i for i, t in enumerate(drawn) if t in (0, END)]
    return drawn[: ends[0]] if ends else drawn


# long enough to be kept (the server keeps sequences of 128 tokens or more)
SYSTEM = "You answer in one word, and the word names a colour. " * 12
ASK = [{"role": "user", "content": "Name a colour."}]


def test_models_are_listed_and_retrieved(client: Any) -> None:
    names = [m.id for m in client.models.list().data]
    assert {"local/tiny", ALIAS} <= set(names)
    assert client.models.retrieve(ALIAS).display_name == ALIAS
    with pytest.raises(anthropic.NotFoundError, match="GET /v1/models lists them"):
        client.models.retrieve("nope/model")


def test_a_greedy_message_is_what_the_sampling_api_draws(
    client: Any, service: Any, renderer: Any
) -> None:
    prompt = renderer.build_generation_prompt(
        [{"role": "system", "content": SYSTEM}, *ASK]
    ).to_ints()
    assert client.messages.count_tokens(model=ALIAS, system=SYSTEM, messages=ASK).input_tokens == (
        len(prompt)
    )
    message = client.messages.create(
        model=ALIAS, max_tokens=8, system=SYSTEM, messages=ASK, extra_body=GREEDY
    )
    drawn = greedy(service, {"base_model": "local/tiny"}, prompt, 8)
    text = renderer.tokenizer.decode(drawn, skip_special_tokens=True)
    assert [b.type for b in message.content] == (["text"] if text else [])
    assert "".join(b.text for b in message.content) == text
    assert message.stop_reason == ("max_tokens" if len(drawn) == 8 else "end_turn")
    assert message.role == "assistant"
    assert message.model == ALIAS
    assert message.id.startswith("msg_")
    used = message.usage
    assert used.input_tokens + used.cache_read_input_tokens == len(prompt)
    assert used.output_tokens == len(drawn)
    # the same prompt again is read from what the server kept
    again = client.messages.create(
        model=ALIAS, max_tokens=8, system=SYSTEM, messages=ASK, extra_body=GREEDY
    )
    assert again.content == message.content
    assert again.usage.cache_read_input_tokens > 0
    assert again.usage.input_tokens + again.usage.cache_read_input_tokens == len(prompt)


def test_a_stream_is_the_same_message_piece_by_piece(client: Any) -> None:
    ask = [{"role": "user", "content": "Tell me about rivers and the sea."}]
    whole = client.messages.create(model=ALIAS, max_tokens=24, messages=ask, extra_body=GREEDY)
    kinds, pieces = [], []
    with client.messages.stream(
        model=ALIAS, max_tokens=24, messages=ask, extra_body=GREEDY
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta":
                pieces.append(event.delta.text)
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert kinds[-2] == "message_delta"
    assert "".join(pieces) == "".join(b.text for b in whole.content)
    assert [(b.type, b.text) for b in final.content] == [(b.type, b.text) for b in whole.content]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    if whole.content:
        assert len(pieces) > 1  # sent as it was sampled, not at the end


def test_stop_sequences_a_prefill_and_checkpoints(
    client: Any, service: Any, renderer: Any, checkpoint: str
) -> None:
    ask = [{"role": "user", "content": "Count to ten."}]
    free = client.messages.create(model=ALIAS, max_tokens=16, messages=ask, extra_body=GREEDY)
    text = "".join(b.text for b in free.content).strip()
    assert len(text) > 3, "the model should say something"
    stop = text[2:4]
    cut = client.messages.create(
        model=ALIAS, max_tokens=16, messages=ask, stop_sequences=[stop], extra_body=GREEDY
    )
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", stop)
    shown = "".join(b.text for b in cut.content)
    assert stop not in shown
    assert free.content[0].text.startswith(shown)
    # an assistant message last is continued, and the answer is only what follows it
    prefill = [*ask, {"role": "assistant", "content": "One, two"}]
    continued = client.messages.create(
        model=ALIAS, max_tokens=6, messages=prefill, extra_body=GREEDY
    )
    prompt = renderer.build_generation_prompt(ask).to_ints() + renderer.tokenizer.encode(
        "One, two", add_special_tokens=False
    )
    drawn = greedy(service, {"base_model": "local/tiny"}, prompt, 6)
    assert "".join(b.text for b in continued.content) == renderer.tokenizer.decode(
        drawn, skip_special_tokens=True
    )
    # a sampler checkpoint, alone or after its base model
    for model in (checkpoint, f"local/tiny;{checkpoint}"):
        answer = client.messages.create(model=model, max_tokens=4, messages=ask)
        assert answer.model == model
        assert answer.usage.output_tokens >= 1


def _png(colour: tuple[int, int, int]) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_pictures_and_tool_turns_are_counted_as_the_model_reads_them(client: Any) -> None:
    picture = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    picture["source"]["data"] = _png((200, 0, 0))  # type: ignore[index]
    plain = client.messages.count_tokens(model=ALIAS, messages=ASK).input_tokens
    shown = [{"role": "user", "content": [picture, {"type": "text", "text": "Name a colour."}]}]
    assert client.messages.count_tokens(model=ALIAS, messages=shown).input_tokens > plain + 1
    tools = [{"name": "paint", "description": "Paints", "input_schema": {"type": "object"}}]
    with_tools = client.messages.count_tokens(model=ALIAS, messages=ASK, tools=tools)
    assert with_tools.input_tokens > plain + 50  # the declaration in the system turn
    turns = [
        *ASK,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "paint", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "red"}],
        },
    ]
    answer = client.messages.create(model=ALIAS, max_tokens=3, messages=turns, tools=tools)
    assert answer.usage.output_tokens >= 1


def test_refusals_are_anthropic_errors_that_say_what_to_fix(
    client: Any, server: LocalServerThread
) -> None:
    def refused(**fields: Any) -> Any:
        body = {"model": ALIAS, "max_tokens": 4, "messages": ASK, **fields}
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(**body)
        return caught.value

    error = refused(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}])
    assert error.body["error"]["type"] == "invalid_request_error"
    assert "not 'document'" in error.body["error"]["message"]
    assert "temperature" in str(refused(extra_body={"temperature": 1.5}))
    assert "input_schema" in str(refused(tools=[{"name": "f"}]))
    web = [{"type": "web_search_20250305", "name": "web_search"}]
    assert "client tools" in str(refused(tools=web))
    assert "does not fetch" in str(
        refused(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "http://x/y"}}],
                }
            ]
        )
    )
    assert "tool_choice" in str(
        refused(
            tools=[{"name": "f", "input_schema": {}}], tool_choice={"type": "tool", "name": "g"}
        )
    )
    assert "role" in str(refused(messages=[{"role": "system", "content": "x"}]))
    # max_tokens is required for a message, not for a count
    raw = httpx.post(
        server.anthropic_base_url + "/v1/messages",
        headers={"x-api-key": server.api_key},
        json={"model": ALIAS, "messages": ASK},
    )
    assert raw.status_code == 400
    assert "max_tokens" in raw.json()["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="wrong").messages.create(
            model=ALIAS, max_tokens=2, messages=ASK
        )
    # a bearer token (Claude Code's ANTHROPIC_AUTH_TOKEN) authenticates like the key
    bearer = anthropic.Anthropic(base_url=server.anthropic_base_url, auth_token=server.api_key)
    assert bearer.messages.count_tokens(model=ALIAS, messages=ASK).input_tokens > 0
