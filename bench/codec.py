"""Protobuf codec speed, tinker_actors vs the official SDK, in one process.

Run: ``python bench/codec.py [--reps N] [--datums D] [--tokens T]``. Times only the codec:

* encode of a forward_backward request (D datums x T tokens: ``target_tokens`` int64 and
  ``weights`` float32): ours with the tokens given as numpy arrays (``ModelInput.from_ints(arr)``:
  sent from the packed array, no Python ints), as Python lists (packed at encode time, 4 bytes
  per int), with the general per-message framing every datum took before the fast framing
  (``encode_request_body(fast=False)``), and with zstd; the official
  ``forward_backward_request_to_proto(req).SerializeToString()`` on prebuilt pydantic types, and
  build + encode for both (the types built from numpy targets/weights and list or array tokens);
* decode of a ForwardBackwardOutput of the same size (``logprobs`` and ``elementwise_loss``,
  float32 per token), ours vs the official ``deserialize_forward_backward_output``.

Prints best and median milliseconds of process CPU time, MB/s (on the uncompressed protobuf size) and ours/official.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import tinker
from tinker.proto import request_conv, response_conv
from tinker.proto import tinker_public_pb2 as pb

from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    encode_forward_backward_output,
    encode_forward_backward_request,
)
from tinker_actors.transport.proto._request import encode_request_body
from tinker_actors.types._datum import Datum
from tinker_actors.types._forward_backward import (
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
)
from tinker_actors.types._model_input import ModelInput
from tinker_actors.types._tensor import TensorData


def timeit(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    fn()  # warm up
    times = []
    for _ in range(reps):
        t0 = time.process_time()  # CPU time: the machine is shared, wall time is not ours
        fn()
        times.append(time.process_time() - t0)
    return min(times) * 1e3, statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--datums", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, t = args.datums, args.tokens
    token_arrays = [rng.integers(0, 150_000, t) for _ in range(n)]
    token_lists = [a.tolist() for a in token_arrays]
    targets = [rng.integers(0, 150_000, t).astype(np.int64) for _ in range(n)]
    weights = [rng.random(t).astype(np.float32) for _ in range(n)]

    def ours_build(numpy_tokens: bool = False) -> ForwardBackwardRequest:
        tokens = token_arrays if numpy_tokens else token_lists
        data = [
            Datum(
                model_input=ModelInput.from_ints(tokens[i]),
                loss_fn_inputs={
                    "target_tokens": TensorData.from_numpy(targets[i]),
                    "weights": TensorData.from_numpy(weights[i]),
                },
            )
            for i in range(n)
        ]
        return ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
            model_id="bench",
            seq_id=1,
        )

    def official_build() -> tinker.types.ForwardBackwardRequest:
        data = [
            tinker.types.Datum(
                model_input=tinker.types.ModelInput.from_ints(token_lists[i]),
                loss_fn_inputs={
                    "target_tokens": tinker.types.TensorData.from_numpy(targets[i]),
                    "weights": tinker.types.TensorData.from_numpy(weights[i]),
                },
            )
            for i in range(n)
        ]
        return tinker.types.ForwardBackwardRequest(
            forward_backward_input=tinker.types.ForwardBackwardInput(
                data=data, loss_fn="cross_entropy"
            ),
            model_id="bench",
            seq_id=1,
        )

    ours_req = ours_build()
    numpy_req = ours_build(numpy_tokens=True)
    official_req = official_build()
    body = encode_forward_backward_request(ours_req, compress=False)
    assert encode_forward_backward_request(numpy_req, compress=False) == body
    assert encode_request_body(ours_req, fast=False) == body
    official_body = request_conv.forward_backward_request_to_proto(official_req).SerializeToString()
    assert len(body) == len(official_body), (len(body), len(official_body))
    zbody = encode_forward_backward_request(ours_req, compress=True)
    mb = len(body) / 1e6

    rows: list[tuple[str, float, float]] = []
    rows.append(
        (
            "encode request, ours, numpy tokens",
            *timeit(lambda: encode_forward_backward_request(numpy_req, compress=False), args.reps),
        )
    )
    rows.append(
        (
            "encode request, ours, list tokens",
            *timeit(lambda: encode_forward_backward_request(ours_req, compress=False), args.reps),
        )
    )
    rows.append(
        (
            "encode, list tokens, general framing",
            *timeit(lambda: encode_request_body(ours_req, fast=False), args.reps),
        )
    )
    rows.append(
        (
            "encode request, ours + zstd-3",
            *timeit(lambda: encode_forward_backward_request(ours_req, compress=True), args.reps),
        )
    )
    rows.append(
        (
            "encode request, official",
            *timeit(
                lambda: request_conv.forward_backward_request_to_proto(
                    official_req
                ).SerializeToString(),
                args.reps,
            ),
        )
    )
    rows.append(
        (
            "build types + encode, ours, list",
            *timeit(
                lambda: encode_forward_backward_request(ours_build(), compress=False), args.reps
            ),
        )
    )
    rows.append(
        (
            "build types + encode, ours, numpy",
            *timeit(
                lambda: encode_forward_backward_request(ours_build(True), compress=False),
                args.reps,
            ),
        )
    )
    rows.append(
        (
            "build types + encode, official",
            *timeit(
                lambda: request_conv.forward_backward_request_to_proto(
                    official_build()
                ).SerializeToString(),
                args.reps,
            ),
        )
    )

    out = ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {
                "logprobs": TensorData.from_numpy(-rng.random(t).astype(np.float32)),
                "elementwise_loss": TensorData.from_numpy(rng.random(t).astype(np.float32)),
            }
            for _ in range(n)
        ],
        metrics={"loss:sum": 1.5},
    )
    out_body = encode_forward_backward_output(out)
    check = pb.ForwardBackwardOutput()
    check.ParseFromString(out_body)
    assert check.loss_fn_outputs[0].num_datums == n
    out_mb = len(out_body) / 1e6
    rows.append(
        (
            "decode output, ours",
            *timeit(lambda: decode_forward_backward_output(out_body), args.reps),
        )
    )
    rows.append(
        (
            "decode output, official",
            *timeit(lambda: response_conv.deserialize_forward_backward_output(out_body), args.reps),
        )
    )

    print(
        f"# {n} datums x {t} tokens; request {mb:.2f} MB protobuf ({len(zbody) / 1e6:.2f} MB zstd-3); "
        f"output {out_mb:.2f} MB; best/median of {args.reps}"
    )
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, numpy {np.__version__}, tinker {tinker.__version__}"
    )
    print(f"| {'case':38} | best ms | median ms | MB/s (median) |")
    print(f"|{'-' * 40}|--------:|----------:|--------------:|")
    for name, best, med in rows:
        size = out_mb if name.startswith("decode") else mb
        print(f"| {name:38} | {best:7.2f} | {med:9.2f} | {size / med * 1e3:13.0f} |")
    by_name = {name: best for name, best, _ in rows}
    medians = {name: med for name, _, med in rows}
    print()
    numpy_rate = mb / medians["encode request, ours, numpy tokens"] * 1e3
    print(
        f"encode of the numpy-built batch: {numpy_rate:.0f} MB/s (median; target >= 1000): "
        + ("met" if numpy_rate >= 1000 else "MISSED")
    )
    print(
        "encode ratio official/ours, list tokens (best): "
        f"{by_name['encode request, official'] / by_name['encode request, ours, list tokens']:.2f}x"
    )
    print(
        "build+encode ratio official/ours (best): "
        f"{by_name['build types + encode, official'] / by_name['build types + encode, ours, list']:.2f}x"
    )
    print(
        f"decode ratio official/ours (best): {by_name['decode output, official'] / by_name['decode output, ours']:.2f}x"
    )


if __name__ == "__main__":
    main()
