"""Deprecated and experimental methods warn as 0.38's do: same methods, category, time and line.

0.38 marks them with ``typing_extensions.deprecated``: the warning comes when the method is
called (an ``async def``'s before its coroutine exists) and names the caller's line, and the
method carries ``__deprecated__``. Code notices each of these (``pytest.warns`` around a call
that is awaited later, warning filters by module or line, ``-W error``), so each is compared
with the installed official package. The methods are called on bare instances: the warning
comes first, and whatever the body does on an uninitialised object afterwards is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import warnings
from typing import Any

import pytest

import tinker_actors.compat as compat

tinker = pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")

pytestmark = pytest.mark.interop


def _marked(package: Any, class_name: str) -> dict[str, Any]:
    cls = getattr(package, class_name, None)
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and getattr(member, "__deprecated__", None)
    } if isinstance(cls, type) else {}  # fmt: skip


# Every class of 0.38's top level with a marked method, or whose counterpart here has one
CLASSES = sorted(name for name in dir(tinker) if _marked(tinker, name) or _marked(compat, name))


def _call_bare(package: Any, class_name: str, name: str) -> list[warnings.WarningMessage]:
    """Call ``name`` on an uninitialised instance; return the warnings of that call."""
    cls = getattr(package, class_name)
    bare = cls.__new__(cls)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            made = getattr(bare, name)()  # the line the warning must name
        except Exception:  # the body meets an uninitialised object
            made = None
        if inspect.iscoroutine(made):
            made.close()  # never started: the warning came at the call
    return list(caught)


@pytest.mark.parametrize("class_name", CLASSES)
def test_the_same_methods_are_marked(class_name: str) -> None:
    official = set(_marked(tinker, class_name))
    ours = set(_marked(compat, class_name))
    assert (sorted(official - ours), sorted(ours - official)) == ([], [])


@pytest.mark.parametrize("class_name", CLASSES)
def test_each_warns_at_the_call_with_the_same_category(class_name: str) -> None:
    problems = []
    for name in sorted(_marked(tinker, class_name)):
        theirs = _call_bare(tinker, class_name, name)
        ours = _call_bare(compat, class_name, name)
        assert theirs, f"0.38's {class_name}.{name} did not warn"
        if not ours:
            problems.append(f"{name}: no warning")
            continue
        if ours[0].category is not _ours(theirs[0].category):
            problems.append(f"{name}: {ours[0].category.__name__}, 0.38 {theirs[0].category}")
        if ours[0].filename != __file__:
            problems.append(f"{name}: names {ours[0].filename}:{ours[0].lineno}, not the caller")
    assert problems == []


def _ours(category: type[Warning]) -> type[Warning]:
    return getattr(compat, category.__name__, category)  # tinker.ExperimentalWarning -> ours


def test_async_methods_stay_coroutine_functions_to_asyncio() -> None:
    for package in (tinker, compat):
        for class_name in CLASSES:
            for name, member in _marked(package, class_name).items():
                if inspect.iscoroutinefunction(inspect.unwrap(member)):
                    assert asyncio.iscoroutinefunction(member), (package, class_name, name)


def test_messages_start_as_0_38_s_do_so_message_filters_match_both() -> None:
    for class_name in CLASSES:
        for name, member in _marked(compat, class_name).items():
            message: str = member.__deprecated__
            if name == "search_sessions":
                assert "experimental" in message
            elif not class_name.startswith("Backcompat"):
                assert message.startswith("DEPRECATED: "), (class_name, name, message)


def test_naming_ephemeral_sampler_weights_warns_as_0_38_does() -> None:
    def caught(package: Any) -> list[warnings.WarningMessage]:
        bare = package.TrainingClient.__new__(package.TrainingClient)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with contextlib.suppress(Exception):  # the body meets an uninitialised object
                bare.save_weights_and_get_sampling_client(name="step-3")  # the named line
        return list(seen)

    theirs, ours = caught(tinker), caught(compat)
    assert [w.category for w in theirs] == [DeprecationWarning]  # naming 0.38's own wrapper
    assert [(w.category, w.filename) for w in ours] == [(DeprecationWarning, __file__)]
    assert "ephemeral" in str(ours[0].message)
