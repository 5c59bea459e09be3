"""Capacity of the local server with the null backend, measured with a raw HTTP/1.1 client.

The server runs as ``tinker-actors serve`` in its own process (pinned to CPU 0 when ``taskset``
exists); this process drives it over keep-alive connections with a minimal h11 client (pinned
to CPU 1), so the numbers measure the server, not an SDK. Two workloads:

* trivial: ``GET /api/v1/healthz``;
* sample: ``POST /api/v1/asample`` then ``POST /api/v1/retrieve_future`` for its result
  (one completed sample = two requests).

Usage: ``python bench/server.py [--seconds 5] [--concurrency 32]``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import h11
import trio

KEY = "tml-bench"


class RawClient:
    """One keep-alive HTTP/1.1 connection driven by h11."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, path: str, body: bytes = b"", accept: str = ""
    ) -> tuple[int, bytes]:
        headers = [("host", self.host), ("x-api-key", KEY), ("content-length", str(len(body)))]
        if body:
            headers.append(("content-type", "application/json"))
        if accept:
            headers.append(("accept", accept))
        data = self.conn.send(h11.Request(method=method, target=path, headers=headers))
        data += self.conn.send(h11.Data(data=body)) if body else b""
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        status, chunks = 0, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.conn.start_next_cycle()
                return status, b"".join(chunks)


async def _connect(url: str) -> RawClient:
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    return RawClient(stream, f"{host}:{port}")


async def _setup_sampler(url: str) -> str:
    client = await _connect(url)
    _, body = await client.request(
        "POST", "/api/v1/create_session", json.dumps({"sdk_version": "bench", "tags": []}).encode()
    )
    session = json.loads(body)["session_id"]
    request = {"session_id": session, "sampling_session_seq_id": 0, "base_model": "local/tiny"}
    _, body = await client.request(
        "POST", "/api/v1/create_sampling_session", json.dumps(request).encode()
    )
    await client.stream.aclose()
    return str(json.loads(body)["sampling_session_id"])


async def _run(url: str, seconds: float, concurrency: int, workload: str) -> tuple[int, float]:
    sampler = await _setup_sampler(url) if workload == "sample" else ""
    done = 0
    seq = 0

    async def worker() -> None:
        nonlocal done, seq
        client = await _connect(url)
        while trio.current_time() < deadline:
            if workload == "trivial":
                status, _ = await client.request("GET", "/api/v1/healthz")
                assert status == 200
            else:
                seq += 1
                sample = {
                    "num_samples": 1,
                    "prompt": {"chunks": [{"type": "encoded_text", "tokens": [5, 6, 7, 8]}]},
                    "sampling_params": {"max_tokens": 8},
                    "sampling_session_id": sampler,
                    "seq_id": seq,
                    "prompt_logprobs": False,
                    "type": "sample",
                }
                status, body = await client.request(
                    "POST", "/api/v1/asample", json.dumps(sample).encode()
                )
                assert status == 200, body
                poll = {"request_id": json.loads(body)["request_id"], "allow_metadata_only": True}
                status, body = await client.request(
                    "POST",
                    "/api/v1/retrieve_future",
                    json.dumps(poll).encode(),
                    accept="application/x-protobuf",
                )
                assert status == 200, body
            done += 1
        await client.stream.aclose()

    start = time.perf_counter()
    deadline = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return done, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cmd = [sys.executable, "-m", "tinker_actors.cli", "serve", "--port", "0"]
    if pin:
        server_cmd = ["taskset", "-c", "0", *server_cmd]
        os.sched_setaffinity(0, {1})
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().rsplit(" at ", 1)[1].strip()
        print(
            f"server {url} (pinned: {pin}); {args.concurrency} keep-alive connections, "
            f"{args.seconds:g} s per workload"
        )
        for workload, unit in (("trivial", "requests"), ("sample", "samples")):
            trio.run(_run, url, 1.0, args.concurrency, workload)  # warm-up
            done, elapsed = trio.run(_run, url, args.seconds, args.concurrency, workload)
            rate = done / elapsed
            extra = f" = {2 * rate:,.0f} requests/s" if workload == "sample" else ""
            print(f"{workload:8s} {rate:8,.0f} {unit}/s{extra}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
