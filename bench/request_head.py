"""CPU per request head: ``build_request`` (template or long path) plus the h11 request event.

Builds 1,000 prepared polls (the extra headers ``poll_future`` sends, a varying round-trip
value on each) and 1,000 ``asample`` submits, then times building each attempt's
``httpx.Request`` and its ``h11.Request`` (process CPU time, best of 7), once through the
template (``transport/_template.py``) and once the long way (``merged_headers`` +
``httpx.Request``, what every attempt did before). Usage: ``python bench/request_head.py``.
Not a test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tinker_actors.config import resolve_config
from tinker_actors.transport._h11 import _h11_request
from tinker_actors.transport._headers import base_headers
from tinker_actors.transport._options import RequestOptions
from tinker_actors.transport._request import (
    _parse_url,
    build_request,
    merged_headers,
    prepare,
    request_headers,
)


def main() -> None:
    cfg = resolve_config(base_url="http://127.0.0.1:1234", api_key="tml-bench")
    base = request_headers(httpx.AsyncClient().headers, base_headers(overrides=cfg.default_headers))
    body = {"request_id": "abc", "allow_metadata_only": False}
    polls = [
        prepare(cfg, "POST", "/api/v1/retrieve_future", body, None, None, None,
                RequestOptions(timeout=45, max_retries=0, accept="application/x-protobuf",
                               extra_headers={"X-Tinker-Request-Iteration": "0",
                                              "X-Tinker-Request-Type": "Sample",
                                              "X-Stainless-Raw-Response": "raw",
                                              "X-Tinker-Create-Promise-Roundtrip-Time": str(i / 1e3)}),
                None)
        for i in range(1000)
    ]  # fmt: skip
    samples = [
        prepare(cfg, "POST", "/api/v1/asample", {"prompt": [1, 2, 3], "seq_id": i}, None, None,
                None, RequestOptions(max_retries=0, extra_headers={"X-Tinker-Sampling-Backpressure": "1"}),
                "sample")
        for i in range(1000)
    ]  # fmt: skip

    def templated(p: Any) -> httpx.Request:
        return build_request(base, connect_timeout=5.0, p=p, retries_taken=0, credential="k")

    def long_way(p: Any) -> httpx.Request:
        return httpx.Request(p.method, _parse_url(p.url), headers=merged_headers(base, p, 0, "k"),
                             content=p.body, extensions={"timeout": {}})  # fmt: skip

    def per_request(build: Callable[[Any], httpx.Request], prepared: list[Any]) -> float:
        best = float("inf")
        for _ in range(7):
            start = time.process_time()
            for p in prepared:
                _h11_request(build(p))
            best = min(best, (time.process_time() - start) / len(prepared))
        return best * 1e6

    for name, prepared in (("poll", polls), ("asample", samples)):
        slow, fast = per_request(long_way, prepared), per_request(templated, prepared)
        print(f"{name:8s} long way {slow:6.1f} us   template {fast:6.1f} us   {slow / fast:.2f}x")


if __name__ == "__main__":
    main()
