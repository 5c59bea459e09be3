"""Client-side checks of training and sampling input, run before anything is queued.

The server checks all of this too, but a request it refuses has already cost a round trip and,
for a training client, used a ``seq_id``. What can be checked without the model is checked
here, with an :class:`~tinker_actors.errors.InvalidInputError` (or a subclass) that names the
datum and field, says what was wrong and what to do:

* per loss: the ``loss_fn_inputs`` it needs (:data:`LOSS_INPUTS`), ``target_tokens`` rows
  equal to the model input's length, every other input aligned with ``target_tokens``;
* dtypes per key: ``target_tokens`` int64, the float inputs float32 (a float ``target_tokens``
  array is converted exactly when a Datum is built, or refused; an explicit float TensorData
  is refused here, never truncated);
* NaN or infinity in ``weights``, ``advantages`` and the clip thresholds;
* token ids below 0 and, when ``get_info`` reports them, ids at or past the vocabulary and
  inputs longer than the context (a server that reports neither is not second-guessed);
* checkpoint names (what the service stores: letters, digits, ``.``, ``_``, ``-``) and
  ``tinker://`` paths for ``load_state``;
* optimizer hyperparameters and sampling parameters in range.

The functions are pure and cheap (one pass over each tensor, in numpy), so they run on the
caller's thread in every ``prepare_*`` method, the compat layer's included.
"""

from __future__ import annotations

import math
import re
import struct
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from tinker_actors.errors import InvalidInputError
from tinker_actors.transport.proto._wire import pack_int32
from tinker_actors.types import (
    AdamParams,
    Datum,
    DimuonParams,
    EncodedTextChunk,
    SampleRequest,
    TinkerPath,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

    from tinker_actors.transport.proto._request_fast import KnownTokens
    from tinker_actors.types import GetInfoResponse, ModelInput, TensorData

__all__ = [
    "LOSS_INPUTS",
    "BadTrainingInputError",
    "ModelLimits",
    "check_checkpoint_name",
    "check_forward_data",
    "check_load_path",
    "check_optimizer_params",
    "check_sample_request",
]

#: The ``loss_fn_inputs`` each built-in loss needs (Tinker's loss documentation).
LOSS_INPUTS: Final[Mapping[str, frozenset[str]]] = {
    "cross_entropy": frozenset({"target_tokens"}),
    "importance_sampling": frozenset({"target_tokens", "logprobs", "advantages"}),
    "ppo": frozenset({"target_tokens", "logprobs", "advantages"}),
    "cispo": frozenset({"target_tokens", "logprobs", "advantages"}),
    "dro": frozenset({"target_tokens", "logprobs", "advantages"}),
    "gspo": frozenset({"target_tokens", "logprobs", "advantages"}),
    # the sampler's logprobs come from the server's record of the sampled sequences
    "stable_reinforce": frozenset({"target_tokens", "advantages"}),
    # the custom loss's forward pass sends target_tokens (and weights) only
    "custom": frozenset({"target_tokens"}),
}
_FLOAT_KEYS: Final = frozenset(
    {
        "weights",
        "advantages",
        "logprobs",
        "clip_low_threshold",
        "clip_high_threshold",
        "sequence_ratio_mask",
    }
)
_CUSTOM_CHECKED: Final = frozenset({"weights"})
_NOTHING: Final[frozenset[str]] = frozenset()
_TARGET_FIELD: Final = "loss_fn_inputs['target_tokens']"
#: Inputs that must be finite (``logprobs`` may hold -inf for impossible tokens).
_FINITE_KEYS: Final = frozenset(
    {"weights", "advantages", "clip_low_threshold", "clip_high_threshold", "sequence_ratio_mask"}
)
# ufunc reductions called directly: ndarray.min/max add a Python-level wrapper per call
_MIN: Final = np.minimum.reduce
_MAX: Final = np.maximum.reduce
_SUM: Final = np.add.reduce
_UNSIGNED: Final = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
#: integer dtype -> (its unsigned view, or None for an unsigned type; the cap on its ids)
_AS_UNSIGNED: dict[np.dtype[Any], tuple[np.dtype[Any] | None, int]] = {}
# What the service accepts as a checkpoint name; fullmatch ("$" would allow a final newline).
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class BadTrainingInputError(InvalidInputError):
    """A training call's data, names or hyperparameters cannot be accepted; nothing was sent.

    Attributes:
        index: the datum at fault, when the fault is in one datum.
        field: the field at fault (``"model_input"``, ``"loss_fn_inputs['weights']"``, ...).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


class ModelLimits:
    """What ``get_info`` says about a model's vocabulary and context (None: not reported)."""

    __slots__ = ("max_context_length", "vocab_size")

    def __init__(self, vocab_size: int | None = None, max_context_length: int | None = None):
        self.vocab_size = vocab_size if isinstance(vocab_size, int) and vocab_size > 0 else None
        self.max_context_length = (
            max_context_length
            if isinstance(max_context_length, int) and max_context_length > 0
            else None
        )

    @classmethod
    def from_info(cls, info: GetInfoResponse) -> ModelLimits:
        """Read the limits from a model's info."""
        data = info.model_data
        return cls(data.vocab_size, data.max_context_length)


def _fail(index: int, field: str, message: str) -> BadTrainingInputError:
    return BadTrainingInputError(f"data[{index}].{field}: {message}", index=index, field=field)


def _length(model_input: ModelInput) -> int | None:
    """The input's length in tokens; None when an image's token count is not given."""
    try:
        return model_input.length
    except InvalidInputError:
        return None  # the server counts the image's tokens itself


def _check_tokens(
    index: int, model_input: ModelInput, limits: ModelLimits, packed: KnownTokens | None
) -> int | None:
    """Check the ids and length of ``model_input``; return its length (see :func:`_length`)."""
    length = _length(model_input)
    context = limits.max_context_length
    if context is not None and length is not None and length > context:
        raise _fail(
            index,
            "model_input",
            f"{length} tokens exceed the model's context of {context}; shorten or split it",
        )
    vocab = limits.vocab_size
    for chunk in model_input.chunks:
        if not isinstance(chunk, EncodedTextChunk) or not chunk.tokens:
            continue
        ids, raw = _token_ids(chunk.tokens)
        if packed is not None and raw is not None:
            packed[id(chunk)] = (chunk, raw)
        if ids is not None and _ids_below(ids, vocab):
            continue
        # something is out of range (or beyond int32): find the bounds for the message
        tokens = chunk.tokens
        low, high = (min(tokens), max(tokens)) if ids is None else (int(_MIN(ids)), int(_MAX(ids)))
        _refuse_out_of_range(
            index,
            "model_input",
            low,
            high,
            vocab,
            ". Encode text with the model's tokenizer (TrainingClient.get_tokenizer())",
        )
    return length


def _refuse_out_of_range(
    index: int, field: str, low: int, high: int, vocab: int | None, advice: str = ""
) -> None:
    """Raise when ids spanning ``low..high`` leave [0, vocab) (only negatives without one)."""
    if low < 0 or (vocab is not None and high >= vocab):
        upper = f"{vocab}" if vocab is not None else "the vocabulary size"
        raise _fail(index, field, f"token ids must be in [0, {upper}); got {low}..{high}{advice}")


def _token_ids(tokens: list[int]) -> tuple[npt.NDArray[np.signedinteger[Any]] | None, bytes | None]:
    """Return the ids as an integer array, and a plain list's ids packed as int32 little-endian.

    Ids built from numpy keep their packed copy (returned, with None for the bytes: the
    encoder reads ``.packed`` itself); a list is packed with ``struct`` once, and those bytes
    are what the checks scan (numpy, 2.4x faster than ``min`` + ``max`` over the Python ints)
    and what the encoder sends. An id outside int32 fails the pack: (None, None) then, and
    the caller scans the list itself (the encoder refuses it too).
    """
    packed = getattr(tokens, "packed", None)
    if isinstance(packed, np.ndarray):
        return packed, None
    try:
        raw = pack_int32(tokens)
    except struct.error:
        return None, None
    return np.frombuffer(raw, "<i4"), raw


def _ids_below(ids: npt.NDArray[np.integer[Any]], vocab: int | None) -> bool:
    """Say whether every id is in [0, vocab) (in [0, 2**(bits-1)) without a vocabulary).

    One pass instead of a min and a max: read as unsigned, a negative id is larger than any
    vocabulary (and than the signed type's largest value).
    """
    dtype = ids.dtype
    found = _AS_UNSIGNED.get(dtype)
    if found is None:
        found = _as_unsigned(dtype)
    unsigned, cap = found
    top = int(_MAX(ids if unsigned is None else ids.view(unsigned), axis=None))
    return top < (cap if vocab is None or vocab > cap else vocab)


def _as_unsigned(dtype: np.dtype[Any]) -> tuple[np.dtype[Any] | None, int]:
    """How :func:`_ids_below` reads ``dtype``: the unsigned view (None: as it is) and the cap."""
    bits = 8 * dtype.itemsize
    if dtype.kind != "i":
        return None, 1 << bits
    unsigned = np.dtype(_UNSIGNED[dtype.itemsize]).newbyteorder(dtype.byteorder)
    found = (unsigned, 1 << (bits - 1))  # the signed type's non-negative values
    if len(_AS_UNSIGNED) < 64:
        _AS_UNSIGNED[dtype] = found
    return found


def _check_datum(
    index: int,
    datum: object,
    loss_fn: str,
    needed: frozenset[str],
    floats: frozenset[str],
    limits: ModelLimits,
    packed: KnownTokens | None,
) -> None:
    if not isinstance(datum, Datum):
        raise TypeError(f"data[{index}] must be a Datum, got {type(datum).__name__}")
    length = _check_tokens(index, datum.model_input, limits, packed)
    inputs = datum.loss_fn_inputs
    if not needed <= inputs.keys():
        raise _fail(
            index,
            "loss_fn_inputs",
            f"loss {loss_fn!r} needs {sorted(needed)}; missing {sorted(needed - inputs.keys())}",
        )
    target = inputs.get("target_tokens")
    if target is None:
        return
    if target.dtype != "int64":
        raise _fail(
            index,
            _TARGET_FIELD,
            f"must be int64 token ids, got a {target.dtype} TensorData; pass an integer array "
            "(or TensorData(..., dtype='int64'))",
        )
    n = target.numel
    dims = target.dims
    rows = dims[0] if dims else n
    if length is not None and rows != length:
        raise _fail(
            index,
            _TARGET_FIELD,
            f"has {rows} rows but model_input has {length} tokens; position i of model_input "
            "predicts target i, so they must be the same length",
        )
    _check_target_ids(index, _TARGET_FIELD, target, limits)
    for key, tensor in inputs.items():
        if key in floats:
            _check_float_input(index, key, tensor, n)


def _check_target_ids(index: int, field: str, target: TensorData, limits: ModelLimits) -> None:
    values = target.array
    if not values.size or _ids_below(values, limits.vocab_size):
        return
    low, high = int(_MIN(values, axis=None)), int(_MAX(values, axis=None))
    _refuse_out_of_range(index, field, low, high, limits.vocab_size)


def _check_float_input(index: int, key: str, tensor: TensorData, n: int) -> None:
    if tensor.dtype != "float32":
        raise _fail(
            index,
            f"loss_fn_inputs[{key!r}]",
            f"must be float32, got a {tensor.dtype} TensorData; pass a float array (or "
            "TensorData(..., dtype='float32'))",
        )
    if tensor.numel != n:
        raise _fail(
            index,
            f"loss_fn_inputs[{key!r}]",
            f"has {tensor.numel} entries but target_tokens has {n}; each target needs one",
        )
    if key in _FINITE_KEYS:
        values = tensor.array
        # a finite sum means every value is finite (a NaN or an infinity makes the sum one);
        # a sum that overflows float32 falls through to the exact check
        if (
            values.size
            and not math.isfinite(_SUM(values, axis=None))
            and not np.isfinite(values).all()
        ):
            bad = int(np.flatnonzero(~np.isfinite(values.ravel()))[0])
            raise _fail(
                index,
                f"loss_fn_inputs[{key!r}]",
                f"holds {values.ravel()[bad]} at flat index {bad}; every value must be finite "
                "(check the computation that produced it)",
            )


def check_forward_data(
    data: Sequence[object],
    loss_fn: str,
    limits: ModelLimits,
    packed: KnownTokens | None = None,
) -> None:
    """Check a forward / forward_backward batch for ``loss_fn`` (see the module doc).

    With ``packed``, each plain-list text chunk's ids, packed as int32 little-endian for the
    range check, are recorded there (``id(chunk) -> (chunk, bytes)``) for the encoder to send
    as they are: what was checked is what is sent, and no list is packed twice.

    Raises:
        BadTrainingInputError: naming the datum and field at fault (or a lone Datum).
        TypeError: an item is not a Datum.
    """
    if isinstance(data, Datum):
        raise BadTrainingInputError(
            "data must be a list of Datum, got a single Datum; wrap it in a list", field="data"
        )
    needed = LOSS_INPUTS.get(loss_fn, _NOTHING)
    # a custom loss reads its other inputs on its own terms (per sequence, any shape)
    floats = _CUSTOM_CHECKED if loss_fn == "custom" else _FLOAT_KEYS
    for index, datum in enumerate(data):
        _check_datum(index, datum, loss_fn, needed, floats, limits, packed)


def check_checkpoint_name(name: object, what: str = "name") -> str:
    """Return ``name`` if the service can store a checkpoint under it.

    Raises:
        BadTrainingInputError: not 1-128 letters, digits, ``.``, ``_`` or ``-`` starting with
            a letter or digit (so no ``/``, ``..`` prefix, spaces or control characters).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadTrainingInputError(
            f"{what} {name!r} is not a valid checkpoint name: use 1-128 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit (no '/'; the service places it under "
            "tinker://<model>/<kind>/<name> itself)",
            field=what,
        )
    return name


def check_load_path(path: object) -> TinkerPath:
    """Return the parsed ``tinker://<run>/weights/<name>`` path that load_state can load.

    Raises:
        BadTrainingInputError: not a tinker:// path of that shape, or not a training
            (``weights``) checkpoint.
    """
    if not isinstance(path, str):
        raise BadTrainingInputError(
            f"path must be a tinker:// string, got {type(path).__name__}", field="path"
        )
    try:
        parsed = TinkerPath.parse(path)
    except InvalidInputError as exc:
        raise BadTrainingInputError(f"load_state: {exc}", field="path") from None
    if parsed.checkpoint_type != "training":
        raise BadTrainingInputError(
            f"load_state needs a training checkpoint (tinker://<run>/weights/<name>, made by "
            f"save_state), got a {parsed.checkpoint_type} one: {path!r}",
            field="path",
        )
    check_checkpoint_name(parsed.name, "checkpoint name in path")
    return parsed


def _finite_at_least(name: str, value: float, low: float, *, strict: bool = False) -> None:
    if not math.isfinite(value) or value < low or (strict and value == low):
        relation = ">" if strict else ">="
        raise BadTrainingInputError(
            f"{name} must be a finite number {relation} {low:g}, got {value!r}", field=name
        )


def check_optimizer_params(params: AdamParams | DimuonParams) -> None:
    """Check optimizer hyperparameters beyond what their types refuse on construction.

    Raises:
        BadTrainingInputError: a value out of range (named).
    """
    if isinstance(params, AdamParams):
        _finite_at_least("AdamParams.learning_rate", params.learning_rate, 0.0)
        for name in ("beta1", "beta2"):
            value = getattr(params, name)
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise BadTrainingInputError(
                    f"AdamParams.{name} must be in [0, 1), got {value!r}", field=name
                )
        _finite_at_least("AdamParams.eps", params.eps, 0.0, strict=True)
        _finite_at_least("AdamParams.weight_decay", params.weight_decay, 0.0)
        _finite_at_least("AdamParams.grad_clip_norm", params.grad_clip_norm, 0.0)
    elif isinstance(params, DimuonParams):
        _finite_at_least("DimuonParams.learning_rate", params.learning_rate, 0.0)
        if not math.isfinite(params.grad_clip_norm):
            raise BadTrainingInputError(
                f"DimuonParams.grad_clip_norm must be finite, got {params.grad_clip_norm!r}",
                field="grad_clip_norm",
            )


def check_sample_request(request: SampleRequest) -> None:
    """Check a sampling request's counts, parameters and prompt tokens.

    Raises:
        InvalidInputError: naming the value out of range.
    """
    if request.num_samples < 1:
        raise InvalidInputError(f"num_samples must be >= 1, got {request.num_samples}")
    params = request.sampling_params
    if isinstance(params.max_tokens, int) and params.max_tokens < 1:
        raise InvalidInputError(
            f"SamplingParams.max_tokens must be >= 1 (or unset), got {params.max_tokens}"
        )
    if not math.isfinite(params.temperature) or params.temperature < 0:
        raise InvalidInputError(
            f"SamplingParams.temperature must be a finite number >= 0, got {params.temperature}"
        )
    if not (math.isfinite(params.top_p) and 0.0 < params.top_p <= 1.0):
        raise InvalidInputError(f"SamplingParams.top_p must be in (0, 1], got {params.top_p}")
    if params.top_k != -1 and params.top_k < 1:
        raise InvalidInputError(
            f"SamplingParams.top_k must be -1 (no limit) or >= 1, got {params.top_k}"
        )
    for name in ("topk_prompt_logprobs", "topk_sample_logprobs", "prompt_alt_tokens_k"):
        value = getattr(request, name)
        if value < 0:
            raise InvalidInputError(f"{name} must be >= 0, got {value}")
    for chunk in request.prompt.chunks:
        if isinstance(chunk, EncodedTextChunk) and chunk.tokens and min(chunk.tokens) < 0:
            raise InvalidInputError(
                f"prompt token ids must be >= 0, got {min(chunk.tokens)}; encode text with "
                "the model's tokenizer"
            )
