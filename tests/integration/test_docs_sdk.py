"""Every runnable example in docs/sdk.md runs green against a local server.

A block is runnable when the line before its ```python fence is ``<!-- run -->`` (or
``<!-- run: torch -->``: skipped without torch). It must define ``async def main(base_url)``,
which is awaited with the URL of a local server served on 127.0.0.1 for that block, or
``async def main()`` for a block that starts its own server. The examples assert what they
promise, so a block that drifts from the SDK fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)

from tinker_actors.local import open_local_server

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
_BLOCK = re.compile(r"^<!-- run(?P<extra>: torch)? -->\n```python\n(?P<code>.*?)^```$", re.M | re.S)


def _heading(text: str, at: int) -> str:
    headings = re.findall(r"^## (.+)$", text[:at], re.M)
    return headings[-1] if headings else "intro"


def _blocks() -> list[Any]:
    text = DOC.read_text()
    params = []
    for number, match in enumerate(_BLOCK.finditer(text), start=1):
        ident = f"{number}-{_heading(text, match.start()).split()[0].lower()}"
        # Pad with blank lines so tracebacks point at the block's own lines in docs/sdk.md.
        code = "\n" * text[: match.start("code")].count("\n") + match["code"]
        params.append(pytest.param(code, bool(match["extra"]), id=ident))
    return params


BLOCKS = _blocks()


def test_the_guide_has_runnable_blocks_and_no_unmarked_main() -> None:
    text = DOC.read_text()
    assert len(BLOCKS) >= 8
    # Any python block defining main() is meant to run; one without the marker would go untested.
    fenced = re.findall(r"```python\n(.*?)^```$", text, re.M | re.S)
    assert sum("async def main(" in code for code in fenced) == len(BLOCKS)


@pytest.mark.parametrize(("code", "needs_torch"), BLOCKS)
async def test_doc_block_runs(code: str, needs_torch: bool) -> None:
    if needs_torch:
        pytest.importorskip("torch", reason="the custom-loss example needs torch")
    namespace: dict[str, Any] = {"__name__": "docs_sdk_example"}
    exec(compile(code, str(DOC), "exec"), namespace)
    main = namespace["main"]
    # The real clock: custom losses run in a worker thread a virtual clock would jump past.
    with trio.fail_after(120):
        if not inspect.signature(main).parameters:
            await main()
            return
        async with open_local_server() as server, trio.open_nursery() as nursery:
            url = await nursery.start(server.serve)
            await main(url)
            nursery.cancel_scope.cancel()
