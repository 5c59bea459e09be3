"""The compat clients against a local server on a loopback port (the server in a thread).

Covers what the script tests do not: the lifetime of the process runtime and its sessions,
call order, bad input, timeouts, cancellation, the blocking rules, and the deprecated forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import trio

import tinker_actors.compat as tinker
from tinker_actors.compat._process import THREAD_NAME, current_runtime
from tinker_actors.local import LocalServer
from tinker_actors.testing import server_in_thread

KEY = "tml-compat-clients-key"


def datum(offset: int = 0, length: int = 8) -> tinker.Datum:
    tokens = np.arange(30 + offset, 31 + offset + length, dtype=np.int64)
    return tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1].tolist()),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(length, np.float32)},
    )


@pytest.fixture
def served() -> Iterator[tuple[str, LocalServer]]:
    with server_in_thread() as (url, server):
        yield url, server
    assert current_runtime() is None, "a test left the process runtime running"


def runtime_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def totals(server: LocalServer) -> dict[str, int]:
    counts: dict[str, int] = server.counters()["totals"]
    return counts


def test_with_block_finishes_the_session_and_stops_the_thread(
    served: tuple[str, LocalServer],
) -> None:
    url, server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        assert len(runtime_threads()) == 1
        assert service.get_console_url().startswith("https://tinker.thinkingmachines.ai/sessions/")
    assert runtime_threads() == []
    assert totals(server)["sessions:success"] == 1
    with pytest.raises(tinker.RuntimeClosedError):
        service.create_sampling_client(base_model="local/tiny")


def test_an_exception_in_the_block_finishes_the_session_as_errored(
    served: tuple[str, LocalServer],
) -> None:
    url, server = served

    def fail_inside() -> None:
        with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
            service.create_sampling_client(base_model="local/tiny").result()
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fail_inside()
    assert totals(server)["sessions:errored"] == 1
    assert runtime_threads() == []


def test_close_with_status_and_twice(served: tuple[str, LocalServer]) -> None:
    url, server = served
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    service.create_sampling_client(base_model="local/tiny").result()
    assert service.close("interrupted", detail="stopped by hand").result(10) is None
    assert service.close("success").result(10) is None  # the first reason stays
    assert totals(server)["sessions:interrupted"] == 1
    with pytest.raises(tinker.InvalidInputError, match="status"):
        tinker.ServiceClient(base_url=url, api_key=KEY).close("done")  # type: ignore[arg-type]


def test_a_client_that_never_needed_the_runtime_starts_nothing(
    served: tuple[str, LocalServer],
) -> None:
    url, server = served
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    assert runtime_threads() == []
    assert service.get_console_url().endswith("/sessions")
    service.close("success").result()
    assert "http:/api/v1/create_session" not in totals(server)


def test_bad_configuration_raises_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_CREDENTIAL_CMD", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-home")
    with pytest.raises(tinker.InvalidInputError, match="API key"):
        tinker.ServiceClient(base_url="http://127.0.0.1:9")
    with pytest.raises(tinker.InvalidInputError, match="user_metadata"):
        tinker.ServiceClient(base_url="http://127.0.0.1:9", api_key=KEY, user_metadata=[1])  # type: ignore[arg-type]
    with pytest.warns(FutureWarning, match="max_retries"):
        tinker.ServiceClient(base_url="http://127.0.0.1:9", api_key=KEY, max_retries=3)
    assert runtime_threads() == []


def test_operations_are_sent_in_call_order_and_bad_input_raises_at_the_call(
    served: tuple[str, LocalServer],
) -> None:
    url, server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        before = dict(totals(server))
        with pytest.raises(tinker.InvalidInputError, match="loss_fn"):
            training.forward_backward([datum()], "no_such_loss")
        with pytest.raises(tinker.InvalidInputError):
            training.optim_step()
        assert totals(server) == before  # nothing was sent
        futures: list[Any] = []
        for step in range(20):  # queued without waiting: all in flight together
            futures.append(training.forward_backward([datum(step)], "cross_entropy"))
            futures.append(training.optim_step(tinker.AdamParams(learning_rate=1e-3)))
            if step % 5 == 0:
                futures.append(training.save_state(f"s{step}"))
        for future in futures:
            future.result(60)
        model = server.counters()["models"][training.model_id]
    expected = ["CreateModel"]
    for step in range(20):
        expected += ["ForwardBackward", "OptimStep"] + (["SaveWeights"] if step % 5 == 0 else [])
    assert model["applied_kinds"] == expected
    assert model["applied_seq_ids"] == list(range(len(expected)))
    assert model["failed"] == 0


def test_result_timeout_leaves_the_operation_running(served: tuple[str, LocalServer]) -> None:
    url, _server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        future = training.forward_backward([datum()], "cross_entropy")
        with contextlib.suppress(TimeoutError):  # if not done yet, the operation goes on
            future.result(timeout=0)
        assert future.result(60).metrics["loss:sum"] > 0
        assert future.done()
        assert future.future() is future


def test_cancelling_a_future_cancels_the_operation(served: tuple[str, LocalServer]) -> None:
    url, _server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        prompt = tinker.ModelInput.from_ints([1, 2, 3])
        futures = [
            sampler.sample(prompt, 1, tinker.SamplingParams(max_tokens=2)) for _ in range(20)
        ]
        cancelled = [f for f in futures if f.cancel()]
        for future in futures:
            if future in cancelled:
                assert future.cancelled()
            else:
                assert len(future.result(60).sequences) == 1
        # the client still works afterwards
        assert sampler.sample(prompt, 1, tinker.SamplingParams(max_tokens=1)).result(60)


def test_asyncio_wait_for_timeout_cancels_like_the_official_client(
    served: tuple[str, LocalServer],
) -> None:
    url, _server = served

    async def main(sampler: tinker.SamplingClient) -> tuple[bool, int]:
        prompt = tinker.ModelInput.from_ints([1, 2, 3])
        future = sampler.sample(prompt, 1, tinker.SamplingParams(max_tokens=2))
        timed_out = False
        try:
            await future.result_async(timeout=0)
        except TimeoutError:
            timed_out = True
        # a fresh sample still completes in this loop
        again = await sampler.sample(prompt, 1, tinker.SamplingParams(max_tokens=2))
        return timed_out and future.cancelled(), len(again.sequences)

    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        assert asyncio.run(main(sampler)) in ((True, 1), (False, 1))


def test_blocking_result_inside_a_running_loop_warns_once_per_call_site(
    served: tuple[str, LocalServer], caplog: pytest.LogCaptureFixture
) -> None:
    url, _server = served

    async def main(service: tinker.ServiceClient) -> None:
        for _ in range(3):
            service.create_sampling_client(base_model="local/tiny").result()  # blocks this loop

    with (
        tinker.ServiceClient(base_url=url, api_key=KEY) as service,
        caplog.at_level(logging.WARNING, logger="tinker_actors.compat"),
    ):
        asyncio.run(main(service))
    warnings = [r for r in caplog.records if "inside a running asyncio loop" in r.getMessage()]
    assert len(warnings) == 1


def test_a_blocking_wait_on_the_runtime_thread_raises(served: tuple[str, LocalServer]) -> None:
    url, _server = served
    seen: list[BaseException] = []
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        prompt = tinker.ModelInput.from_ints([1, 2])
        slow = sampler.sample(prompt, 1, tinker.SamplingParams(max_tokens=64))
        first = sampler.sample(prompt, 1, tinker.SamplingParams(max_tokens=1))

        def callback(_done: Any) -> None:
            try:
                if not slow.done():
                    slow.result()
            except RuntimeError as exc:
                seen.append(exc)

        first.add_done_callback(callback)
        first.result(60)
        slow.result(60)
    assert all("would wait on itself" in str(e) for e in seen)


def test_futures_work_from_trio_too(served: tuple[str, LocalServer]) -> None:
    url, _server = served

    async def main(sampler: tinker.SamplingClient) -> int:
        prompt = tinker.ModelInput.from_ints([1, 2, 3])
        result = await sampler.sample(prompt, 2, tinker.SamplingParams(max_tokens=2))
        return len(result.sequences)

    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        assert trio.run(main, sampler) == 2


def test_deprecated_forms_still_work_and_warn(served: tuple[str, LocalServer]) -> None:
    url, _server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        future = service.create_lora_training_client(base_model="local/tiny", rank=8)
        # as in 0.38: the future is a TrainingClient, in 0.38's words when used as one
        assert isinstance(future, tinker.TrainingClient)
        with pytest.warns(FutureWarning, match="Reading `.model_id` from the future"):
            model_id = future.model_id  # the future used as the client
        assert model_id == future.result().model_id
        with pytest.warns(FutureWarning, match="Using the future as the TrainingClient"):
            info = future.get_info()
        assert info.model_id == model_id
        training = future.result()
        sampler_future = training.save_weights_and_get_sampling_client()
        assert isinstance(sampler_future, tinker.SamplingClient)

        with pytest.warns(FutureWarning, match="Using the future as the SamplingClient"):
            sampled = sampler_future.sample(
                tinker.ModelInput.from_ints([1, 2]), 1, tinker.SamplingParams(max_tokens=2)
            )
        assert len(sampled.result(60).sequences) == 1

        async def base_model_through_the_future() -> str:
            return await sampler_future.get_base_model_async()  # waits without blocking

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert asyncio.run(base_model_through_the_future()) == "local/tiny"
        said = [str(w.message) for w in caught]
        assert said[0].startswith("Using the future as the SamplingClient"), said
        assert "get_base_model_async() is deprecated" in said[1], said  # the client's own

        async def double_await() -> float:
            with pytest.warns(FutureWarning, match="forward_backward_async"):
                fut = await training.forward_backward_async([datum()], "cross_entropy")
            return float((await fut).metrics["loss:sum"])

        assert asyncio.run(double_await()) > 0
        with pytest.warns(FutureWarning, match="create_rest_client"):
            rest = service.create_rest_client()
        runs = rest.list_training_runs().result()  # type: ignore[attr-defined]
        assert model_id in [run.training_run_id for run in runs.training_runs]
        with pytest.warns(FutureWarning, match="get_server_capabilities"):
            caps = service.get_server_capabilities()
        assert "local/tiny" in [m.model_name for m in caps.supported_models]


def test_stand_alone_rest_client_and_admin_client(served: tuple[str, LocalServer]) -> None:
    url, _server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        path = training.save_state("ckpt").result().path
    rest = tinker.RestClient(base_url=url, api_key=KEY)
    listed = rest.list_checkpoints(training.model_id).result()  # type: ignore[attr-defined]
    assert path in [c.tinker_path for c in listed.checkpoints]

    async def listing(client: Any) -> Any:
        with pytest.warns(FutureWarning, match="list_checkpoints_async"):  # as 0.38's does
            pending = client.list_checkpoints_async(training.model_id)
        return await pending

    assert asyncio.run(listing(rest)).checkpoints == listed.checkpoints
    with pytest.raises(tinker.InvalidInputError):
        rest.list_training_runs(limit=10**6).result()  # type: ignore[attr-defined]
    admin = tinker.AdminClient(base_url=url, api_key=KEY)
    assert admin.get_current_checkpoint_storage_usage is not None  # type: ignore[attr-defined]
    del rest, admin
    import gc

    gc.collect()
    deadline = time.monotonic() + 10
    while runtime_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime_threads() == []


def test_sampling_client_from_a_training_client_and_its_handle(
    served: tuple[str, LocalServer],
) -> None:
    url, _server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        saved = training.save_weights_for_sampler("s1").result()
        sampler = training.create_sampling_client(saved.path).result()
        assert sampler.get_base_model() == "local/tiny"
        tokenizer = sampler.get_tokenizer()  # the local model's tokenizer, found offline
        ids = tokenizer.encode("hello", add_special_tokens=False)
        assert tokenizer.decode(ids) == "hello"
        chat = tokenizer.apply_chat_template(  # as the official quickstart builds prompts
            [{"role": "user", "content": "hello"}], add_generation_prompt=True, tokenize=False
        )
        assert chat == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
        handle = sampler.get_sampler_handle()
        assert KEY not in handle
        assert KEY[4:] not in handle
        clone = tinker.SamplingClient.from_sampler_handle(handle, api_key=KEY)
        prompt = tinker.ModelInput.from_ints([1, 2, 3])
        out = clone.sample(prompt, 1, tinker.SamplingParams(max_tokens=2)).result(60)
        assert len(out.sequences[0].tokens) == 2
    # a client made from a handle has a host of its own, given back when the client is
    # collected; that host then ends its session on the runtime's thread, which stops after
    # it: wait for that while the server still answers (the fixture checks the runtime is gone)
    del clone, sampler, training, service
    gc.collect()
    deadline = time.monotonic() + 30
    while current_runtime() is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_async_with_closes_the_session(served: tuple[str, LocalServer]) -> None:
    url, server = served

    async def main() -> None:
        async with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
            await service.create_sampling_client(base_model="local/tiny")

    asyncio.run(main())
    assert totals(server)["sessions:success"] == 1
    assert runtime_threads() == []


def test_a_pickled_sampler_carries_no_key_and_keeps_record_stability_info(
    served: tuple[str, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    url, server = served
    monkeypatch.setenv("TINKER_FEATURE_GATES", "async_sampling,other")
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        sampler = service.create_sampling_client(
            base_model="local/tiny", record_stability_info=True
        ).result()
        assert sampler.feature_gates == {"async_sampling", "other"}
        blob = pickle.dumps(sampler)
        assert KEY.encode() not in blob
        assert KEY[4:].encode() not in blob
        monkeypatch.setenv("TINKER_API_KEY", KEY)
        clone = pickle.loads(blob)
        prompt = tinker.ModelInput.from_ints([1, 2])
        clone.sample(prompt, 1, tinker.SamplingParams(max_tokens=1)).result(60)
        prepared = clone._native.prepare_sample(prompt, 1, tinker.SamplingParams(max_tokens=1))
        assert prepared.request.record_stability_info is True  # sent on every sample
        del clone
    assert totals(server)["applied:Sample"] == 1


def test_a_sampler_future_pickles_as_its_sampler(
    served: tuple[str, LocalServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.38's factories return a BackcompatSamplingClientFuture; RL code hands that value to
    # worker processes, and pickling it gives the SamplingClient it resolves to
    import pickle

    url, server = served
    monkeypatch.setenv("TINKER_API_KEY", KEY)  # a pickle never carries the key
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
        for future in (
            service.create_sampling_client(base_model="local/tiny"),
            training.save_weights_and_get_sampling_client(),
        ):
            assert type(future).__name__ == "BackcompatSamplingClientFuture"
            clone = pickle.loads(pickle.dumps(future))
            assert isinstance(clone, tinker.SamplingClient)
            prompt = tinker.ModelInput.from_ints([1, 2])
            clone.sample(prompt, 1, tinker.SamplingParams(max_tokens=1)).result(60)
            del clone
    assert totals(server)["applied:Sample"] == 2


def test_a_temporary_rest_client_lives_until_its_call_finishes(
    served: tuple[str, LocalServer],
) -> None:
    url, _server = served
    import gc

    for _ in range(3):  # the client is garbage as soon as the call is made
        caps = tinker.RestClient(base_url=url, api_key=KEY).get_server_capabilities()  # type: ignore[attr-defined]
        gc.collect()
        assert "local/tiny" in [m.model_name for m in caps.result(30).supported_models]
    gc.collect()
    deadline = time.monotonic() + 10
    while runtime_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime_threads() == []
