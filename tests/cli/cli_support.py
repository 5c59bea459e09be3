"""Shared helpers of the CLI tests: run the command line in process, and a scripted fake service.

:func:`invoke` runs ``tinker-actors`` through click's test runner (stdout and stderr apart, the
environment patched for the call), so a command's trio run, its output and its exit status are
all observed in the test's own process. :class:`FakeService` is a loopback HTTP server that
answers the paths a test scripts with canned JSON, for what the local server does not serve
(billing data, audit entries, 403s) or must not serve (malicious archives).

pytest imports this as a plain module: the folder of each test module (it has no
``__init__.py``) is put on ``sys.path``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("click", reason="the cli extra is not installed: pip install -e '.[cli]'")

from click.testing import CliRunner, Result

from tinker_actors.cli._commands import cli

KEY = "tml-cli-test"


def invoke(
    args: list[str], *, env: Mapping[str, str | None] | None = None, stdin: str | None = None
) -> Result:
    """Run ``tinker-actors ARGS`` in process and return click's result (never raises)."""
    base = {"TINKER_TELEMETRY": "0", "TINKER_ACTORS_CLI_TRACEBACK": None}
    return CliRunner().invoke(
        cli, args, env={**base, **(env or {})}, input=stdin, catch_exceptions=True
    )


def json_of(result: Result) -> Any:
    """The JSON a command printed, after checking that it succeeded."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_line_error(result: Result, status: int) -> str:
    """Check a failure: exit ``status``, one line on stderr, no traceback; return that line."""
    assert result.exit_code == status, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


@dataclass
class FakeService:
    """Answers scripted ``(method, path)`` pairs with ``(status, json)``; 404 otherwise."""

    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        """Script the answer to ``method path`` (query strings are ignored)."""
        self.routes[(method, path)] = (status, body)


@contextmanager
def fake_service() -> Iterator[FakeService]:
    """Serve a :class:`FakeService` on a loopback port for the duration of the block."""
    service = FakeService()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            path = urlsplit(self.path).path
            service.requests.append((self.command, path))
            service.queries.append(urlsplit(self.path).query)
            status, body = service.routes.get(
                (self.command, path), (404, {"detail": f"Not Found: no endpoint {path}"})
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _reply

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class Populated:
    """A local server holding one training run with one checkpoint of each kind."""

    url: str
    session_id: str
    run_id: str
    state: str
    sampler: str
    external: str

    @property
    def env(self) -> dict[str, str]:
        """The environment that points the command line at this server."""
        return {"TINKER_BASE_URL": self.url, "TINKER_API_KEY": KEY}


def populate(url: str, *, metadata: dict[str, str] | None = None) -> Populated:
    """Train a model a step on the server at ``url`` and save every kind of checkpoint."""
    import numpy as np

    import tinker_actors.compat as tinker
    from tinker_actors.types import Datum, ModelInput

    tokens = np.arange(10, 43, dtype=np.int64)
    datum = Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(32, dtype=np.float32)},
    )
    with tinker.ServiceClient(base_url=url, api_key=KEY, user_metadata=metadata or {}) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        training.forward_backward([datum], "cross_entropy").result()
        training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result()
        state = training.save_state("step-1").result().path
        sampler = training.save_weights_for_sampler("sampler-1").result().path
        external = training.save_weights_external("external-1").result().path
        session_id = state.removeprefix("tinker://").split(":", 1)[0]
        return Populated(
            url=url,
            session_id=session_id,
            run_id=state.removeprefix("tinker://").split("/", 1)[0],
            state=state,
            sampler=sampler,
            external=external,
        )
