"""The name a request's latency is recorded under: its method and path, ids masked.

REST paths carry ids (``/api/v1/training_runs/<run>/checkpoints/<name>``), and a latency book
keeps every name it sees, so the ids must go: a segment is kept only when it is one of the
words the SDK's own paths are made of, and any other reads ``{id}``. So the names form a small
set whatever the run does: ``GET /api/v1/training_runs/{id}/checkpoints``. A path the SDK does
not know (a caller's own ``transport.request``) is masked the same way; an absolute URL (a
signed download link) is named by its method alone, ``GET (absolute URL)``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["route_name"]

#: Every literal segment of the paths the SDK sends (tests/unit/test_latency.py checks the
#: package's path literals against it).
WORDS: Final = frozenset(
    {
        "api", "v1", "apikey", "archive", "asample", "audit", "auth", "billing",
        "cancel_future", "checkpoints", "client", "config", "copy_weights", "create_model",
        "create_sampling_session", "create_session", "current", "dynamic_config", "events",
        "external_weights_urls", "finish", "forward", "forward_backward", "get_info",
        "get_server_capabilities", "healthz", "join_sampling_session", "load_weights", "me",
        "optim_step", "project", "publish", "retrieve_future", "retrieve_futures",
        "sampler_weights", "samplers", "save_weights", "save_weights_external",
        "save_weights_for_sampler", "search", "session_heartbeat", "sessions", "telemetry",
        "token", "trace_export", "training_runs", "ttl", "unload_model", "usage",
        "weights_info",
    }
)  # fmt: skip

#: names already worked out, by (method, path): the SDK's fixed paths repeat endlessly
_KNOWN: dict[tuple[str, str], str] = {}
_KNOWN_LIMIT: Final = 1024


def route_name(method: str, path: str) -> str:
    """``POST /api/v1/asample``; ``GET /api/v1/training_runs/{id}``; ``GET (absolute URL)``."""
    key = (method, path)
    name = _KNOWN.get(key)
    if name is not None:
        return name
    verb = method.upper()
    if path.startswith(("http://", "https://")):
        name = f"{verb} (absolute URL)"
    else:
        bare = path.split("?", 1)[0].strip("/")
        segments = (s if s in WORDS else "{id}" for s in bare.split("/")) if bare else ()
        name = f"{verb} /" + "/".join(segments)
        # only the fixed paths are remembered: a path with an id is seen once or a few times
        if "{id}" in name or len(_KNOWN) >= _KNOWN_LIMIT:
            return name
    _KNOWN[key] = name
    return name
