"""What the server records at sampling time for ``stable_reinforce``, and how datums use it.

A sample request with ``record_stability_info`` has each of its sequences recorded under the
``sequence_id`` the client gets (``<request_id>:seq:<i>``): the prompt, the sampled tokens and
the sampler's logprob of each. A ``stable_reinforce`` datum names, through its provenance
spans, which recorded tokens it trains on; :meth:`StabilityRecords.resolve` checks those claims
against the records and returns the sampler's logprobs aligned with the datum's targets.

Rules (Tinker's docs for StableReinforce): records belong to the session that sampled them;
they can be trained on for one day after sampling, and each use restarts that day. This server
keeps them in memory (a restart forgets them) and bounds them by total tokens, dropping the
least recently used first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from tinker_actors.local._backend import STABILITY_INPUTS, BackendInputError, input_ids
from tinker_actors.types import PromptProvenanceSpan, SampledProvenanceSpan, TensorData

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from tinker_actors.types import Datum, ProvenanceSpan

__all__ = ["RecordedSequence", "StabilityRecords"]

#: How long an unused record stays trainable (Tinker: one day after sampling or last use).
RECORD_TTL_SECONDS = 24 * 3600.0
#: Tokens (prompt + sampled, over all records) kept before the least recently used go.
MAX_RECORDED_TOKENS = 20_000_000


@dataclass
class RecordedSequence:
    """One sampled sequence as the sampler produced it."""

    session_id: str
    prompt: npt.NDArray[np.int64]
    tokens: npt.NDArray[np.int64]
    logprobs: npt.NDArray[np.float32]
    last_used: float

    @property
    def size(self) -> int:
        """Tokens held (prompt + sampled)."""
        return int(self.prompt.size + self.tokens.size)


class StabilityRecords:
    """Recorded sequences by ``sequence_id`` (see the module docstring).

    Args:
        clock: POSIX seconds (the server's wall clock, so tests can move it).
        ttl: seconds an unused record stays trainable.
        max_tokens: total tokens kept; beyond it the least recently used records go.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        ttl: float = RECORD_TTL_SECONDS,
        max_tokens: int = MAX_RECORDED_TOKENS,
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max_tokens = max_tokens
        self._records: OrderedDict[str, RecordedSequence] = OrderedDict()
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._records)

    def record(
        self,
        session_id: str,
        sequence_id: str,
        prompt: Sequence[int],
        tokens: npt.NDArray[np.integer],
        logprobs: npt.NDArray[np.floating] | None,
    ) -> None:
        """Keep one sequence (a sampler without logprobs cannot be recorded: refused)."""
        if logprobs is None or logprobs.shape != tokens.shape:
            raise ValueError(
                f"sequence {sequence_id}: stability records need one logprob per token"
            )
        self._drop(sequence_id)
        entry = RecordedSequence(
            session_id=session_id,
            prompt=np.asarray(prompt, dtype=np.int64),
            tokens=tokens.astype(np.int64),
            logprobs=logprobs.astype(np.float32),
            last_used=self._clock(),
        )
        self._records[sequence_id] = entry
        self._tokens += entry.size
        while self._tokens > self._max_tokens and len(self._records) > 1:
            self._drop(next(iter(self._records)))

    def _drop(self, sequence_id: str) -> None:
        old = self._records.pop(sequence_id, None)
        if old is not None:
            self._tokens -= old.size

    def _get(self, session_id: str, sequence_id: str, where: str) -> RecordedSequence:
        entry = self._records.get(sequence_id)
        now = self._clock()
        if entry is not None and entry.last_used + self._ttl <= now:
            self._drop(sequence_id)
            entry = None
        if entry is None or entry.session_id != session_id:
            # another session's sequence is reported as unknown: ids do not cross sessions
            raise BackendInputError(
                f"{where}: no recorded sequence {sequence_id!r} in this session; "
                "stable_reinforce trains on sequences sampled in the same session with "
                "record_stability_info=True, within a day of their last use"
            )
        entry.last_used = now
        self._records.move_to_end(sequence_id)
        return entry

    def annotate(self, session_id: str, data: Sequence[Datum]) -> list[Datum]:
        """Return the datums with the engine's inputs added (:data:`STABILITY_INPUTS`).

        Raises:
            BackendInputError: a datum's provenance does not match the records (see
                :meth:`resolve`).
        """
        out = []
        for i, datum in enumerate(data):
            logprobs, mask = self.resolve(session_id, i, datum)
            extra = dict(zip(STABILITY_INPUTS, (logprobs, mask), strict=True))
            inputs = {**datum.loss_fn_inputs}
            inputs.update((k, TensorData.from_numpy(v)) for k, v in extra.items())
            out.append(msgspec.structs.replace(datum, loss_fn_inputs=inputs))
        return out

    def resolve(
        self, session_id: str, index: int, datum: Datum
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Check a datum's provenance; return (sampler logprobs, sampled mask) per target.

        The runs of ``model_input_spans`` must tile the input tokens and repeat the tokens
        they name (a prompt run the request's prompt, a sampled run the sampled tokens). The
        runs of ``loss_fn_input_spans`` must tile the targets; their sampled runs must repeat
        the sampled tokens, and their prompt runs must lie within the prompt (the tokens there
        are not compared: real code pads prompt targets, which carry no advantage).

        Raises:
            BackendInputError: naming the datum, the span and what disagrees.
        """
        target = datum.loss_fn_inputs["target_tokens"]
        if target.shape is not None and len(target.shape) != 1:
            raise BackendInputError(
                f"datum {index}: stable_reinforce needs one target per position ([N]), got "
                f"shape {target.shape}"
            )
        targets = target.to_numpy().astype(np.int64).reshape(-1)
        inputs = np.asarray(input_ids(datum.model_input, f"datum {index}"), dtype=np.int64)
        logprobs = np.zeros(targets.shape, dtype=np.float32)
        mask = np.zeros(targets.shape, dtype=np.float32)
        spans = datum.loss_fn_input_spans
        input_spans = datum.model_input_spans
        assert isinstance(spans, list)  # validate_forward_inputs required them
        self._walk(session_id, f"datum {index} loss_fn_input_spans", spans, targets, logprobs, mask)
        if isinstance(input_spans, list):
            self._walk(session_id, f"datum {index} model_input_spans", input_spans, inputs)
        return logprobs, mask

    def _walk(
        self,
        session_id: str,
        where: str,
        spans: list[ProvenanceSpan],
        tokens: npt.NDArray[np.int64],
        logprobs: npt.NDArray[np.float32] | None = None,
        mask: npt.NDArray[np.float32] | None = None,
    ) -> None:
        total = sum(span.length for span in spans)
        if total != tokens.size:
            raise BackendInputError(
                f"{where}: the runs cover {total} positions but the field has {tokens.size}; "
                "they must tile it exactly"
            )
        position = 0
        for k, span in enumerate(spans):
            entry = self._get(session_id, span.sequence_id, f"{where}[{k}]")
            source = entry.prompt if isinstance(span, PromptProvenanceSpan) else entry.tokens
            what = "prompt" if isinstance(span, PromptProvenanceSpan) else "sampled tokens"
            end = span.offset + span.length
            if end > source.size:
                raise BackendInputError(
                    f"{where}[{k}]: positions {span.offset}..{end} are past the {source.size} "
                    f"{what} of sequence {span.sequence_id!r}"
                )
            claimed = tokens[position : position + span.length]
            # a prompt run over the *targets* is not compared: the cookbook's rl_loop pads
            # prompt targets with 0 (they carry no advantage), and the service accepts that
            check = logprobs is None or isinstance(span, SampledProvenanceSpan)
            if check and not np.array_equal(claimed, source[span.offset : end]):
                raise BackendInputError(
                    f"{where}[{k}]: the datum's tokens at {position}..{position + span.length} "
                    f"are not the {what} {span.offset}..{end} of sequence {span.sequence_id!r}"
                )
            if isinstance(span, SampledProvenanceSpan) and logprobs is not None:
                assert mask is not None
                logprobs[position : position + span.length] = entry.logprobs[span.offset : end]
                mask[position : position + span.length] = 1.0
            position += span.length
