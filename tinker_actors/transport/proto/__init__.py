"""Protobuf codec for the Tinker wire (``package tinker_public``, protocol §5).

The schema is ``tinker_public.proto`` next to this file. There is no generated code: the codec
reads and writes the wire format directly, straight from and into numpy buffers (numeric arrays
are never turned into Python lists), so it needs no ``protobuf`` runtime at all.

Client side::

    body = encode_forward_backward_request(request, compress=server_wants_zstd)
    output = decode_forward_backward_output(response_bytes)
    result = decode_sample_response(response_bytes, sequence_ids=future.sample_sequence_ids)

Server side (the local server): :func:`decode_forward_backward_request`,
:func:`encode_forward_backward_output`, :func:`encode_sample_response`.

Malformed bytes raise :class:`ProtobufDecodeError` (an ``InvalidInputError``): the server answers
400; the client transport wraps it in ``APIResponseValidationError``. A zstd request body that
expands past ``max_decompressed_bytes`` raises :class:`DecompressionLimitError` (a
``ProtobufDecodeError``) before its output is held in memory. Decoded arrays are
read-only views into the body they came from.
"""

from __future__ import annotations

from tinker_actors.transport.proto._request import (
    MAX_DECOMPRESSED_BYTES as MAX_DECOMPRESSED_BYTES,
)
from tinker_actors.transport.proto._request import (
    DecompressionLimitError as DecompressionLimitError,
)
from tinker_actors.transport.proto._request import (
    decode_forward_backward_request as decode_forward_backward_request,
)
from tinker_actors.transport.proto._request import (
    encode_forward_backward_request as encode_forward_backward_request,
)
from tinker_actors.transport.proto._response import (
    decode_forward_backward_output as decode_forward_backward_output,
)
from tinker_actors.transport.proto._response import (
    decode_sample_response as decode_sample_response,
)
from tinker_actors.transport.proto._response import (
    encode_forward_backward_output as encode_forward_backward_output,
)
from tinker_actors.transport.proto._response import (
    encode_sample_response as encode_sample_response,
)
from tinker_actors.transport.proto._wire import ProtobufDecodeError as ProtobufDecodeError

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "DecompressionLimitError",
    "ProtobufDecodeError",
    "decode_forward_backward_output",
    "decode_forward_backward_request",
    "decode_sample_response",
    "encode_forward_backward_output",
    "encode_forward_backward_request",
    "encode_sample_response",
]
