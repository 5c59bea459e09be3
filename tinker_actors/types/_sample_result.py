"""The result of a sample request, decoded from protobuf (protocol §4.5, §5.3).

Arrays stay numpy (``tokens_np``, ``logprobs_np``, ...; read-only views of the response body
when decoded); the Python-list properties (``tokens``, ``logprobs``, ``prompt_logprobs``, ...)
are built on first access and cached.

Top-k logprobs are two dense ``[length, k]`` matrices (:class:`TopkLogprobs`). Cells with no
data hold token 0 and logprob ``-99999.0``; in the list form a row whose first cell is such
padding becomes ``None`` and trailing padding cells are dropped::

    >>> t = TopkLogprobs.from_lists([[(5, -0.1), (7, -2.5)], None, [(9, -0.3)]], k=2)
    >>> t.token_ids.tolist(), t.to_lists()
    ([[5, 7], [0, 0], [9, 0]], [[(5, -0.1...), (7, -2.5)], None, [(9, -0.3...)]])
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.types._tensor import TensorData

__all__ = [
    "TOPK_MASK_LOGPROB",
    "PromptAltTokens",
    "SampleResponse",
    "SampledSequence",
    "StopReason",
    "TopkLogprobs",
]

StopReason: TypeAlias = Literal["length", "stop"]
"""Why a sequence ended: the token budget ran out, or a stop string/token was produced."""

TOPK_MASK_LOGPROB: Final = -99999.0
"""Logprob of a padding cell in :class:`TopkLogprobs` (its token id is 0)."""

TopkRows: TypeAlias = list[list[tuple[int, float]] | None]


def _same_array(a: npt.NDArray[Any] | None, b: npt.NDArray[Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


@dataclass(frozen=True, eq=False)
class TopkLogprobs:
    """The k most likely tokens at each position, as two dense ``[length, k]`` matrices."""

    token_ids: npt.NDArray[np.int32]
    """int32 token ids; padding cells are 0."""

    logprobs: npt.NDArray[np.float32]
    """float32 logprobs; padding cells are ``-99999.0``."""

    def __post_init__(self) -> None:
        if self.token_ids.ndim != 2 or self.token_ids.shape != self.logprobs.shape:
            raise InvalidInputError(
                "TopkLogprobs: token_ids and logprobs must be 2-D matrices of the same shape, got "
                f"{self.token_ids.shape} and {self.logprobs.shape}"
            )

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[tuple[int, float]] | None], k: int) -> TopkLogprobs:
        """Build the padded matrices from per-position lists of ``(token_id, logprob)``.

        Raises:
            InvalidInputError: a row has more than ``k`` entries.
        """
        ids = np.zeros((len(rows), k), dtype=np.int32)
        lps = np.full((len(rows), k), TOPK_MASK_LOGPROB, dtype=np.float32)
        for i, row in enumerate(rows):
            if row is None:
                continue
            if len(row) > k:
                raise InvalidInputError(f"TopkLogprobs: row {i} has {len(row)} entries, k={k}")
            for j, (token, logprob) in enumerate(row):
                ids[i, j] = token
                lps[i, j] = logprob
        return cls(token_ids=ids, logprobs=lps)

    @property
    def k(self) -> int:
        """Number of columns."""
        return int(self.token_ids.shape[1])

    def to_lists(self) -> TopkRows:
        """Return per-position lists of ``(token_id, logprob)``, ``None`` for empty rows."""
        n, k = self.token_ids.shape
        ids: list[list[int]] = self.token_ids.tolist()
        lps: list[list[float]] = self.logprobs.tolist()
        out: TopkRows = []
        for i in range(n):
            row_ids, row_lps = ids[i], lps[i]
            if k == 0 or (row_ids[0] == 0 and row_lps[0] == TOPK_MASK_LOGPROB):
                out.append(None)
                continue
            end = k
            while end > 0 and row_ids[end - 1] == 0 and row_lps[end - 1] == TOPK_MASK_LOGPROB:
                end -= 1
            out.append(list(zip(row_ids[:end], row_lps[:end], strict=True)))
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopkLogprobs):
            return NotImplemented
        return _same_array(self.token_ids, other.token_ids) and _same_array(
            self.logprobs, other.logprobs
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class PromptAltTokens:
    """``k`` draws from the next-token distribution at every prompt position after the first."""

    tokens: TensorData
    """int64 token ids, ``[len(prompt) - 1, k]``: alternatives to ``prompt[i + 1]``."""

    logprobs: TensorData
    """float32 logprobs of ``tokens``, same shape."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PromptAltTokens):
            return NotImplemented
        return self.tokens == other.tokens and self.logprobs == other.logprobs

    __hash__ = None  # type: ignore[assignment]


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


_NO_TOKENS: Final = _read_only(np.zeros(0, dtype=np.int32))


@dataclass(frozen=True, eq=False)
class SampledSequence:
    """One generated sequence (positional arguments in 0.38's order)."""

    stop_reason: StopReason
    """Why generation stopped."""

    sequence_id: str | None = None
    """Session-scoped id of this sequence (from the submission, not the response body); use it
    wherever a later request refers to this exact sequence."""

    tokens_np: npt.NDArray[np.int32] = field(default_factory=lambda: _NO_TOKENS)
    """Generated token ids (int32); empty when none were given."""

    logprobs_np: npt.NDArray[np.float32] | None = None
    """Logprob of each generated token (float32), or ``None`` if not requested."""

    topk_logprobs_np: TopkLogprobs | None = None
    """Top-k alternatives at each generated position, or ``None`` if not requested."""

    # 0.38's list-based construction (what fakes in tests build): the lists are kept as the
    # list properties' values, exactly, and the arrays are made from them
    _tokens_list: InitVar[list[int] | None] = None
    _logprobs_list: InitVar[list[float] | None] = None
    _topk_logprobs_list: InitVar[TopkRows | None] = None

    def __post_init__(
        self,
        _tokens_list: list[int] | None,
        _logprobs_list: list[float] | None,
        _topk_logprobs_list: TopkRows | None,
    ) -> None:
        if self.stop_reason not in ("length", "stop"):
            raise InvalidInputError(
                f"SampledSequence.stop_reason must be 'length' or 'stop', got {self.stop_reason!r}"
            )
        tokens = _NO_TOKENS if self.tokens_np is None else self.tokens_np
        if _tokens_list is not None:
            self.__dict__["tokens"] = _tokens_list
            if tokens is _NO_TOKENS:
                tokens = _from_list(_tokens_list, np.int32, "_tokens_list")
        object.__setattr__(self, "tokens_np", _as_1d(tokens, np.int32, "tokens"))
        if _logprobs_list is not None:
            self.__dict__["logprobs"] = _logprobs_list
            if self.logprobs_np is None:
                arr = _from_list(_logprobs_list, np.float32, "_logprobs_list")
                object.__setattr__(self, "logprobs_np", arr)
        if self.logprobs_np is not None:
            object.__setattr__(
                self, "logprobs_np", _as_1d(self.logprobs_np, np.float32, "logprobs")
            )
        if _topk_logprobs_list is not None:
            self.__dict__["topk_logprobs"] = _topk_logprobs_list
            if self.topk_logprobs_np is None:
                topk = _topk_from_rows(_topk_logprobs_list, "_topk_logprobs_list")
                object.__setattr__(self, "topk_logprobs_np", topk)

    @cached_property
    def tokens(self) -> list[int]:
        """Generated token ids as a list."""
        out: list[int] = self.tokens_np.tolist()
        return out

    @cached_property
    def logprobs(self) -> list[float] | None:
        """Per-token logprobs as a list, or ``None``."""
        if self.logprobs_np is None:
            return None
        out: list[float] = self.logprobs_np.tolist()
        return out

    @cached_property
    def topk_logprobs(self) -> TopkRows | None:
        """Top-k alternatives per generated position as lists, or ``None``."""
        return None if self.topk_logprobs_np is None else self.topk_logprobs_np.to_lists()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampledSequence):
            return NotImplemented
        return (
            self.stop_reason == other.stop_reason
            and self.sequence_id == other.sequence_id
            and _same_array(self.tokens_np, other.tokens_np)
            and _same_array(self.logprobs_np, other.logprobs_np)
            and self.topk_logprobs_np == other.topk_logprobs_np
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class SampleResponse:
    """The sequences of one sample request and the prompt-level extras it asked for."""

    sequences: list[SampledSequence]
    """``num_samples`` generated sequences."""

    prompt_logprobs_np: npt.NDArray[np.float32] | None = None
    """Logprob of each prompt token (float32), NaN where not computed (always position 0)."""

    topk_prompt_logprobs_np: TopkLogprobs | None = None
    """Top-k alternatives at each prompt position, or ``None`` if not requested."""

    target_prompt_logprobs: TensorData | None = None
    """Logprobs of the requested target ids: float32, the request's shape, 0.0 where it had -1."""

    prompt_cache_hit_tokens: int = 0
    """Prompt tokens billed as prefix-cache hits."""

    prompt_alt_tokens: PromptAltTokens | None = None
    """Draws requested with ``prompt_alt_tokens_k``, or ``None``."""

    # 0.38's list-based construction, as for SampledSequence: ``None`` in the prompt logprobs
    # list is a position not computed (NaN in the array)
    _prompt_logprobs_list: InitVar[list[float | None] | None] = None
    _topk_prompt_logprobs_list: InitVar[TopkRows | None] = None

    def __post_init__(
        self,
        _prompt_logprobs_list: list[float | None] | None,
        _topk_prompt_logprobs_list: TopkRows | None,
    ) -> None:
        if _prompt_logprobs_list is not None:
            self.__dict__["prompt_logprobs"] = _prompt_logprobs_list
            if self.prompt_logprobs_np is None:
                values = [np.nan if v is None else v for v in _prompt_logprobs_list]
                arr = _from_list(values, np.float32, "_prompt_logprobs_list")
                object.__setattr__(self, "prompt_logprobs_np", arr)
        if _topk_prompt_logprobs_list is not None:
            self.__dict__["topk_prompt_logprobs"] = _topk_prompt_logprobs_list
            if self.topk_prompt_logprobs_np is None:
                topk = _topk_from_rows(_topk_prompt_logprobs_list, "_topk_prompt_logprobs_list")
                object.__setattr__(self, "topk_prompt_logprobs_np", topk)
        if self.prompt_logprobs_np is not None:
            object.__setattr__(
                self,
                "prompt_logprobs_np",
                _as_1d(self.prompt_logprobs_np, np.float32, "prompt_logprobs"),
            )

    @classmethod
    def with_prompt_logprobs(
        cls, sequences: list[SampledSequence], prompt_logprobs: Sequence[float | None], **kw: Any
    ) -> SampleResponse:
        """Build a response from a list of prompt logprobs where ``None`` = not computed."""
        arr = np.array([np.nan if v is None else v for v in prompt_logprobs], dtype=np.float32)
        return cls(sequences=sequences, prompt_logprobs_np=arr, **kw)

    @cached_property
    def prompt_logprobs(self) -> list[float | None] | None:
        """Prompt logprobs as a list with ``None`` where not computed, or ``None``."""
        if self.prompt_logprobs_np is None:
            return None
        out: list[float | None] = self.prompt_logprobs_np.tolist()
        for i in np.flatnonzero(np.isnan(self.prompt_logprobs_np)).tolist():
            out[i] = None
        return out

    @cached_property
    def topk_prompt_logprobs(self) -> TopkRows | None:
        """Top-k alternatives per prompt position as lists, or ``None``."""
        if self.topk_prompt_logprobs_np is None:
            return None
        return self.topk_prompt_logprobs_np.to_lists()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleResponse):
            return NotImplemented
        return (
            self.sequences == other.sequences
            and _same_array(self.prompt_logprobs_np, other.prompt_logprobs_np)
            and self.topk_prompt_logprobs_np == other.topk_prompt_logprobs_np
            and self.target_prompt_logprobs == other.target_prompt_logprobs
            and self.prompt_cache_hit_tokens == other.prompt_cache_hit_tokens
            and self.prompt_alt_tokens == other.prompt_alt_tokens
        )

    __hash__ = None  # type: ignore[assignment]


def _from_list(values: Sequence[Any], dtype: type[np.generic], what: str) -> Any:
    if not isinstance(values, list | tuple):
        raise InvalidInputError(f"{what} must be a list, got {type(values).__name__}")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a flat list of numbers: {exc}") from None
    return _as_1d(arr, dtype, what)


def _topk_from_rows(rows: TopkRows, what: str) -> TopkLogprobs:
    if not isinstance(rows, list | tuple):
        raise InvalidInputError(f"{what} must be a list of rows, got {type(rows).__name__}")
    k = max((len(row) for row in rows if row is not None), default=0)
    return TopkLogprobs.from_lists(rows, k)


def _as_1d(values: object, dtype: type[np.generic], what: str) -> Any:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.dtype == dtype:
        return arr
    if arr.size and arr.dtype.kind not in "iuf":
        raise InvalidInputError(f"{what} must be numeric, got {arr.dtype}")
    if dtype is np.int32 and arr.size:
        info = np.iinfo(np.int32)
        if arr.dtype.kind == "f" or int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise InvalidInputError(f"{what} must be integers that fit int32")
    return arr.astype(dtype)


# -- what a decoder already checked ------------------------------------------------------------
#
# The protobuf decoder hands over arrays it read itself (1-D, the right dtype) and stop reasons
# it mapped from the wire, so the dataclasses' conversions in __post_init__ would find nothing to
# do; on a small sample they are a third of the decode. These set the fields directly (the
# classes keep a __dict__ for their cached properties) and are for that decoder only (not
# exported: not part of the types' API).


def decoded_sequence(
    stop_reason: StopReason,
    sequence_id: str | None,
    tokens: npt.NDArray[np.int32],
    logprobs: npt.NDArray[np.float32] | None,
    topk: TopkLogprobs | None,
) -> SampledSequence:
    """A SampledSequence of checked parts: 1-D int32 ``tokens``, 1-D float32 ``logprobs``."""
    seq = object.__new__(SampledSequence)
    seq.__dict__.update(stop_reason=stop_reason, sequence_id=sequence_id, tokens_np=tokens,
                        logprobs_np=logprobs, topk_logprobs_np=topk)  # fmt: skip
    return seq


def decoded_response(
    sequences: list[SampledSequence],
    prompt_logprobs: npt.NDArray[np.float32] | None,
    topk: TopkLogprobs | None,
    target: TensorData | None,
    cache_hits: int,
    alt: PromptAltTokens | None,
) -> SampleResponse:
    """A SampleResponse of checked parts (``prompt_logprobs`` 1-D float32)."""
    response = object.__new__(SampleResponse)
    response.__dict__.update(sequences=sequences, prompt_logprobs_np=prompt_logprobs,
                             topk_prompt_logprobs_np=topk, target_prompt_logprobs=target,
                             prompt_cache_hit_tokens=cache_hits, prompt_alt_tokens=alt)  # fmt: skip
    return response
