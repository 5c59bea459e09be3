"""tinker_actors.compat has the official 0.38 surface: names, methods, parameters, defaults.

Checked against the installed official package (the interop extra), so a new official release
shows up here as a list of differences rather than as a user's AttributeError.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import tinker_actors.compat as compat

tinker = pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")

pytestmark = pytest.mark.interop

# Names of 0.38's top level that the compat package leaves out, and why (docs/compat.md).
NOT_COVERED = {
    "APIResponse": "raw-response wrappers of the generated HTTP layer",
    "AsyncAPIResponse": "raw-response wrappers of the generated HTTP layer",
    "proto": "the generated protobuf modules; the wire codec is tinker_actors.transport.proto",
    "resources": "the generated resource classes; the clients cover every endpoint",
}
CLASSES = [
    "ServiceClient",
    "TrainingClient",
    "SamplingClient",
    "RestClient",
    "AdminClient",
    "APIFuture",
]
# Methods of 0.38's classes that are internals there (no compat counterpart needed).
INTERNAL_METHODS = {
    ("SamplingClient", "create"),  # the holder-level factory; use ServiceClient
}


def _public(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(getattr(cls, name, None))
    }


def test_every_top_level_name_exists() -> None:
    names = [n for n in dir(tinker) if not n.startswith("_")] + ["__version__", "__title__"]
    missing = [n for n in names if n not in NOT_COVERED and not hasattr(compat, n)]
    assert missing == []
    assert compat.__version__ == tinker.__version__


def test_every_exception_class_exists_and_keeps_the_hierarchy() -> None:
    official = {
        name: value
        for name, value in list(vars(tinker).items())
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert official
    for name, cls in official.items():
        ours = getattr(compat, name)
        for base in cls.__mro__[1:]:
            if base.__module__.startswith("tinker") and hasattr(compat, base.__name__):
                assert issubclass(ours, getattr(compat, base.__name__)), (name, base.__name__)


@pytest.mark.parametrize("class_name", CLASSES)
def test_methods_parameters_and_defaults_match(class_name: str) -> None:
    official_cls = getattr(tinker, class_name)
    ours_cls = getattr(compat, class_name)
    problems = []
    for name, member in _public(official_cls).items():
        if (class_name, name) in INTERNAL_METHODS:
            continue
        ours = getattr(ours_cls, name, None)
        if ours is None:
            problems.append(f"{name}: missing")
            continue
        if inspect.iscoroutinefunction(inspect.unwrap(member)) != inspect.iscoroutinefunction(
            inspect.unwrap(ours)
        ):
            problems.append(f"{name}: async-ness differs")
        official_params = _params(member)
        our_params = _params(ours)
        if official_params != our_params:
            problems.append(f"{name}: {official_params} != {our_params}")
    assert problems == []


def _params(function: Any) -> list[tuple[str, str, Any]]:
    params = inspect.signature(function).parameters.values()
    return [
        (p.name, p.kind.name, p.default if p.default is not inspect.Parameter.empty else "-")
        for p in params
        if p.name not in ("self", "args", "kwargs")
    ]


def test_the_import_paths_real_code_uses_exist() -> None:
    assert compat.lib.public_interfaces.APIFuture is compat.APIFuture
    assert compat.lib.public_interfaces.RestClient is compat.RestClient
    assert compat.types.TensorData is compat.TensorData
    assert compat.lib.retry_handler.RetryConfig is compat.RetryConfig


@pytest.mark.parametrize(
    ("future_name", "client_name"),
    [
        ("BackcompatTrainingClientFuture", "TrainingClient"),
        ("BackcompatSamplingClientFuture", "SamplingClient"),
    ],
)
def test_a_client_future_is_its_client_and_forwards_every_method(
    future_name: str, client_name: str
) -> None:
    # 0.38's factories return these; code checks isinstance(..., TrainingClient) on them
    official = getattr(tinker.lib.public_interfaces, future_name)
    ours = getattr(compat, future_name)
    assert issubclass(official, getattr(tinker, client_name))
    assert issubclass(ours, getattr(compat, client_name))
    assert issubclass(ours, compat.APIFuture)
    client = getattr(compat, client_name)
    for name, member in vars(client).items():
        if name.startswith("_") or isinstance(member, staticmethod | classmethod):
            continue
        # every method and property is the future's own forwarder, never the client's
        assert vars(ours).get(name) is not None, name
        if callable(member):
            assert _params(getattr(ours, name)) == _params(member), name


@pytest.mark.parametrize("package", ["official", "compat"])
def test_a_wrapped_concurrent_future_behaves_as_the_official_one(package: str) -> None:
    # Code that fakes a client in its tests (tinker-cookbook's own, for one) returns
    # AwaitableConcurrentFuture(concurrent.futures.Future()) from its fake methods
    import asyncio
    from concurrent.futures import Future

    root = tinker if package == "official" else compat
    wrapping = root.lib.public_interfaces.api_future.AwaitableConcurrentFuture

    done: Future[int] = Future()
    done.set_result(3)
    assert wrapping[int](done).result(timeout=1) == 3
    assert wrapping(done).future() is done

    later: Future[int] = Future()

    async def awaited() -> int:
        asyncio.get_running_loop().call_later(0.01, later.set_result, 7)
        return await wrapping(later)

    assert asyncio.run(awaited()) == 7

    failed: Future[int] = Future()
    failed.set_exception(ValueError("the fake's error"))
    with pytest.raises(ValueError, match="the fake's error"):
        wrapping(failed).result(timeout=1)

    async def awaited_failure() -> int:
        return await wrapping(failed)

    with pytest.raises(ValueError, match="the fake's error"):
        asyncio.run(awaited_failure())


def test_a_wrapped_future_cancels_what_it_wraps_and_refuses_what_is_not_a_future() -> None:
    import asyncio
    from concurrent.futures import CancelledError, Future

    wrapping = compat.lib.public_interfaces.AwaitableConcurrentFuture
    source: Future[int] = Future()
    wrapped = wrapping(source)
    assert wrapped.cancel()
    assert source.cancelled()
    with pytest.raises(CancelledError):
        wrapped.result(timeout=1)
    # cancelled at the source: the wrapper is cancelled too
    source = Future()
    wrapped = wrapping(source)
    source.cancel()
    assert wrapped.cancelled()

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match=r"wraps a concurrent\.futures\.Future, not Future"):
            wrapping(loop.create_future())  # type: ignore[arg-type]
    finally:
        loop.close()


@pytest.mark.parametrize("package", ["official", "compat"])
def test_a_future_of_its_own_written_against_the_abstract_api_future_works(package: str) -> None:
    # 0.38's APIFuture is an abstract base: a fake may subclass it, implement result,
    # result_async and future, and never call the base's __init__
    import asyncio
    from concurrent.futures import Future

    root = tinker if package == "official" else compat

    class Ready(root.APIFuture):  # type: ignore[misc,name-defined]
        def __init__(self, value: int) -> None:
            self.value = value

        def result(self, timeout: float | None = None) -> int:
            return self.value

        async def result_async(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
            return self.value

        def future(self) -> Future[int]:
            done: Future[int] = Future()
            done.set_result(self.value)
            return done

    ready = Ready(5)
    assert ready.result() == 5
    assert ready.future().result() == 5

    async def awaited() -> tuple[int, int]:
        return await ready, await ready.coroutine()

    assert asyncio.run(awaited()) == (5, 5)
    assert "Ready" in repr(ready)
