"""Stop strings are found as tokens arrive, exactly where decoding the whole completion finds them.

The torch backend searches each row's completion for its stop strings after every token. It
used to decode the whole completion each time; with a tokenizer that decodes as a stream it
searches only the text the new token adds and a tail before it. The two must agree on every
completion: the same token stops the row, for any ids (byte fragments, special tokens and
characters split across tokens included) and any stop strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)
pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")

from tinker_actors.local._backend import SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._tokenizer import TokenizerText, ensure_model_tokenizer_dir, load_tokenizer
from tinker_actors.local._torch_model import build_base
from tinker_actors.local._torch_request import StopScan
from tinker_actors.local._torch_sampling import sample_batch
from tinker_actors.types import ModelInput, SamplingParams

MODELS = ("local/tiny", "local/small")
_texts: dict[str, TokenizerText] = {}


def text_of(model: str, tmp: Path) -> TokenizerText:
    if model not in _texts:
        _texts[model] = TokenizerText(
            load_tokenizer(ensure_model_tokenizer_dir(tmp, lookup_model(model)))
        )
    return _texts[model]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TokenizerText]:
    folder = tmp_path_factory.mktemp("tokenizers")
    return {model: text_of(model, folder) for model in MODELS}


ids = st.lists(st.integers(0, 4095), min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(MODELS), tokens=ids)
def test_the_stream_joined_is_the_whole_decoding(
    tokenizers: dict[str, TokenizerText], model: str, tokens: list[int]
) -> None:
    text = tokenizers[model]
    push = text.stream()
    streamed = "".join(push(t) for t in tokens)
    whole = text(tokens)
    # a character still incomplete at the end is held back by the stream, shown as U+FFFD whole
    assert whole.startswith(streamed)
    assert set(whole[len(streamed) :]) <= {"\ufffd"}


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    tokens=ids,
    picks=st.lists(st.tuples(st.integers(0, 79), st.integers(1, 6)), min_size=1, max_size=3),
    other=st.text(min_size=1, max_size=4),
)
def test_the_scan_stops_where_the_whole_decoding_does(
    tokenizers: dict[str, TokenizerText],
    model: str,
    tokens: list[int],
    picks: list[tuple[int, int]],
    other: str,
) -> None:
    text = tokenizers[model]
    whole = text(tokens)
    # stop strings that occur in the text (cut anywhere, across tokens) and one that may not
    strings = [whole[a : a + n] for a, n in picks if whole[a : a + n]] + [other]
    strings = [s for s in strings if "\ufffd" not in s]
    if not strings:
        return
    streamed, plain = StopScan(text, tuple(strings)), StopScan(lambda t: text(t), tuple(strings))
    for end in range(1, len(tokens) + 1):
        stop = plain.found(tokens[:end])
        assert streamed.found(tokens[:end]) == stop, (end, strings)
        if stop:
            break


def test_sampling_with_stop_strings_is_the_same_streamed_or_not(
    tokenizers: dict[str, TokenizerText],
) -> None:
    text = tokenizers["local/tiny"]
    base = build_base(lookup_model("local/tiny"))
    common = text([300, 301, 302, 303, 304])
    stops: list[Any] = [["e"], ["\n\nUser:", "th"], [common[1:3] or "a"], ["zz", "q"]]
    jobs = [
        SampleJob(
            prompt=ModelInput.from_ints(list(range(50, 60 + i))),
            num_samples=3,
            params=SamplingParams(max_tokens=40, seed=i, stop=stop),
            prompt_logprobs=False,
            topk_prompt_logprobs=0,
            topk_sample_logprobs=0,
            prompt_logprobs_last_n=None,
        )
        for i, stop in enumerate(stops)
    ]
    answers = []
    for decode in (text, lambda t: text(t)):  # the second has no stream: whole decodes
        out: dict[Any, Any] = {}
        items = [(i, j, 7 + i, decode, lambda: False) for i, j in enumerate(jobs)]
        sample_batch(base, None, items, out.__setitem__)
        answers.append(
            [
                [(s.tokens_np.tolist(), s.stop_reason) for s in out[i].sequences]
                for i in range(len(jobs))
            ]
        )
    assert answers[0] == answers[1]
    assert any(r == "stop" for request in answers[0] for _, r in request)
