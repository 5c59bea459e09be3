"""The ``null`` backend: instant, deterministic results of the right shapes.

It proves the protocol without doing maths. Every output has the shape, dtype and metric keys a
real backend produces, and follows simple rules so tests can check content, not only shape:

* a model's "skill" is its number of optimizer steps; per-token logprobs rise towards 0 as it
  grows (``-ln(V) * 0.9**steps``), so the cross-entropy loss falls while a loop trains;
* outputs are functions of (model, steps, token ids), never of timing or call order;
* samples come from a generator seeded by the request's ``seed`` (or, without one, by the
  prompt and a per-sampler counter), shifted by the sampler snapshot's step count, so a sampler
  saved after training answers differently from the base model;
* saved state is a small JSON file, so save/load/restart round-trips exactly.

Latency per operation kind is configurable (:class:`~._backend.LatencyModel`), drawn from a
seeded generator, and spent with ``trio.sleep`` (virtual time in tests). Small calls compute
inline (a thread hop would cost more than they do); a large one (many datums or tokens, many
long samples) computes in a worker thread, so the server keeps answering everyone else.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt

from tinker_actors.local._backend import (
    LOSS_INPUTS,
    BackendInputError,
    LatencyModel,
    SampleJob,
    check_target_tokens,
    input_ids,
)
from tinker_actors.local._offload import offload
from tinker_actors.local._prompt_targets import (
    alt_tokens,
    answer_targets,
    check_targets,
    target_ids,
)
from tinker_actors.types import (
    ForwardBackwardOutput,
    PromptAltTokens,
    SampledSequence,
    SampleResponse,
    TensorData,
    TopkLogprobs,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.types import AdamParams, Datum, LoraConfig

__all__ = ["NullBackend"]

_STATE_FILE = "null_state.json"


class _SavedState(msgspec.Struct, frozen=True, kw_only=True):
    steps: int
    base_model: str
    rank: int = 0
    optimizer_steps: int | None = None


_FIRST_ORDINARY_TOKEN = 4  # ids 0-3 are the special tokens of the local tokenizers
_DEFAULT_MAX_TOKENS = 16
#: Work (tokens in or out) up to which a call computes inline rather than in a thread.
_INLINE_TOKENS = 1 << 14


@dataclass
class _Model:
    spec: BaseModelSpec
    rank: int
    steps: int = 0
    pending_grads: int = 0
    optimizer_steps: int = 0


@dataclass
class NullBackend:
    """Shaped, deterministic results without computation.

    Args:
        latency: per-operation latency models keyed ``forward_backward``, ``optim_step``,
            ``sample``, ``save``, ``load``, ``create_model`` (missing keys take no time).
        seed: seeds the latency draws.
        losses: the built-in losses it accepts (default all of them); a narrower set stands in
            for a server that lacks some.
    """

    latency: Mapping[str, LatencyModel] = field(default_factory=dict)
    seed: int = 0
    losses: frozenset[str] = frozenset(LOSS_INPUTS)
    _models: dict[str, _Model] = field(default_factory=dict, init=False)
    _rng: random.Random = field(init=False)
    _sample_counter: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def name(self) -> str:
        """Always ``null``."""
        return "null"

    @property
    def supported_losses(self) -> frozenset[str]:
        """The losses given at construction (all built-in losses by default)."""
        return self.losses

    async def _spend(self, kind: str) -> None:
        model = self.latency.get(kind)
        if model is not None:
            await model.sleep(self._rng)

    def _model(self, model_id: str) -> _Model:
        try:
            return self._models[model_id]
        except KeyError:
            raise BackendInputError(f"model {model_id!r} is not loaded") from None

    async def create_model(
        self, model_id: str, spec: BaseModelSpec, lora: LoraConfig | None
    ) -> None:
        """Create an untrained model."""
        await self._spend("create_model")
        self._models[model_id] = _Model(spec=spec, rank=lora.rank if lora is not None else 0)

    async def forward_backward(
        self,
        model_id: str,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str],
        *,
        forward_only: bool,
    ) -> ForwardBackwardOutput:
        """Per-token logprobs and losses from the model's step count; records a gradient."""
        model = self._model(model_id)
        await self._spend("forward" if forward_only else "forward_backward")
        work = sum(datum.loss_fn_inputs["target_tokens"].numel for datum in data)
        compute = partial(_forward, model.spec, model.steps, data, loss_fn)
        if work > _INLINE_TOKENS:
            output = await offload(compute)
        else:
            output = compute()
        if not forward_only:
            model.pending_grads += 1
        return output

    async def optim_step(self, model_id: str, params: AdamParams) -> dict[str, float]:
        """Count a step when gradients were accumulated since the last one."""
        model = self._model(model_id)
        await self._spend("optim_step")
        model.optimizer_steps += 1
        if model.pending_grads:
            model.steps += 1
            model.pending_grads = 0
        return {"learning_rate:mean": params.learning_rate}

    async def save_state(self, model_id: str, directory: Path, *, optimizer: bool) -> int:
        """Write the step count (and optimizer counter) as JSON."""
        model = self._model(model_id)
        await self._spend("save")
        state = _SavedState(
            steps=model.steps,
            rank=model.rank,
            base_model=model.spec.name,
            optimizer_steps=model.optimizer_steps if optimizer else None,
        )
        return _write_state(directory, state)

    async def load_state(
        self, model_id: str, directory: Path, *, optimizer: bool, spec: BaseModelSpec
    ) -> None:
        """Restore a model from :meth:`save_state` output."""
        await self._spend("load")
        state = _read_state(directory)
        model = _Model(spec=spec, rank=state.rank, steps=state.steps)
        if optimizer and state.optimizer_steps is not None:
            model.optimizer_steps = state.optimizer_steps
        self._models[model_id] = model

    async def save_sampler(self, model_id: str, directory: Path) -> int:
        """Snapshot the step count for sampling."""
        model = self._model(model_id)
        await self._spend("save")
        return _write_state(directory, _SavedState(steps=model.steps, base_model=model.spec.name))

    async def save_external(self, model_id: str, directory: Path) -> int:
        """Export the step count (the null backend has no weights to export)."""
        return await self.save_sampler(model_id, directory)

    async def sample(
        self, spec: BaseModelSpec, weights: Path | None, job: SampleJob
    ) -> SampleResponse:
        """Seeded pseudo-random tokens, shifted by the snapshot's step count."""
        await self._spend("sample")
        steps = _read_state(weights).steps if weights is not None else 0
        prompt = np.asarray(input_ids(job.prompt, "the prompt"), dtype=np.int64)
        if prompt.size and (prompt.min() < 0 or prompt.max() >= spec.vocab_size):
            raise BackendInputError(f"prompt token ids must be in [0, {spec.vocab_size})")
        if job.target_prompt_logprobs is not None:
            check_targets(job.target_prompt_logprobs, prompt.size, spec.vocab_size, spec.vocab_size)
        seed = job.params.seed
        if not isinstance(seed, int):
            self._sample_counter += 1
            seed = zlib.crc32(prompt.tobytes()) ^ (self._sample_counter << 16)
        max_tokens = job.params.max_tokens
        limit = max_tokens if isinstance(max_tokens, int) else _DEFAULT_MAX_TOKENS
        # never generate past the context, whatever the default
        limit = max(0, min(limit, spec.context_length - int(prompt.size)))
        compute = partial(_sample, spec, steps, prompt, job, seed, limit)
        if job.num_samples * (limit + job.topk_sample_logprobs) > _INLINE_TOKENS:
            return await offload(compute)
        return compute()

    async def drop_model(self, model_id: str) -> None:
        """Forget the model."""
        self._models.pop(model_id, None)


def _forward(
    spec: BaseModelSpec, steps: int, data: Sequence[Datum], loss_fn: str
) -> ForwardBackwardOutput:
    """Per-token logprobs and losses of a model with ``steps`` optimizer steps (pure)."""
    scale = math.log(spec.vocab_size) * (0.9**steps)
    outputs: list[dict[str, TensorData]] = []
    loss_sum = 0.0
    for i, datum in enumerate(data):
        target = datum.loss_fn_inputs["target_tokens"].to_numpy()
        check_target_tokens(target, spec.vocab_size, f"datum {i}")
        logprobs = -scale * (1.0 + 0.1 * _unit_noise(target))
        weights_td = datum.loss_fn_inputs.get("weights")
        weights = (
            weights_td.to_numpy().astype(np.float64)
            if weights_td is not None
            else np.ones(target.shape)
        )
        if loss_fn == "cross_entropy":
            elementwise = -logprobs * weights
        else:
            inputs = datum.loss_fn_inputs
            advantages = inputs["advantages"].to_numpy().astype(np.float64)
            # stable_reinforce's sampler logprobs are the recorded ones, on sampled targets
            recorded = loss_fn == "stable_reinforce"
            sampler_lp = inputs["sampler_logprobs" if recorded else "logprobs"].to_numpy()
            ratio = np.exp(np.clip(logprobs - sampler_lp.astype(np.float64), -20.0, 20.0))
            elementwise = -ratio * advantages * weights
            if recorded:
                elementwise = elementwise * inputs["sampled_mask"].to_numpy()
        loss_sum += float(elementwise.sum())
        outputs.append(
            {
                "logprobs": TensorData.from_numpy(logprobs.astype(np.float32)),
                "elementwise_loss": TensorData.from_numpy(elementwise.astype(np.float32)),
            }
        )
    metrics = {"loss:sum": loss_sum}
    return ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord", loss_fn_outputs=outputs, metrics=metrics
    )


def _sample(
    spec: BaseModelSpec,
    steps: int,
    prompt: npt.NDArray[np.int64],
    job: SampleJob,
    seed: int,
    limit: int,
) -> SampleResponse:
    """The samples of one request (pure: a function of its arguments)."""
    rng = np.random.default_rng([seed, steps])
    # ids outside the vocabulary are never drawn (and may not fit int64)
    stop_ids = sorted(t for t in _stop_token_ids(job) if 0 <= t < spec.vocab_size)
    ordinary = spec.vocab_size - _FIRST_ORDINARY_TOKEN
    sequences = []
    for _ in range(job.num_samples):
        drawn = rng.integers(0, ordinary, size=limit) + _FIRST_ORDINARY_TOKEN
        drawn = (drawn + steps) % spec.vocab_size
        reason = "length"
        if stop_ids:
            hits = np.flatnonzero(np.isin(drawn, stop_ids))
            if hits.size:
                drawn, reason = drawn[: int(hits[0]) + 1], "stop"
        lps = -rng.random(drawn.size).astype(np.float32) * 2.0 - 0.01
        topk = (
            _topk(drawn, lps, job.topk_sample_logprobs, spec.vocab_size)
            if job.topk_sample_logprobs
            else None
        )
        sequences.append(
            SampledSequence(
                stop_reason="stop" if reason == "stop" else "length",
                tokens_np=drawn.astype(np.int32),
                logprobs_np=lps,
                topk_logprobs_np=topk,
            )
        )
    prompt_lps = None
    topk_prompt = None
    if job.prompt_logprobs or job.topk_prompt_logprobs:
        prompt_lps = _shaped_logprobs(spec, steps, prompt)
        if prompt_lps.size:
            prompt_lps[0] = np.nan
        if job.prompt_logprobs_last_n is not None:
            prompt_lps[: prompt.size - job.prompt_logprobs_last_n] = np.nan
        if job.topk_prompt_logprobs:
            topk_prompt = _topk(prompt, prompt_lps, job.topk_prompt_logprobs, spec.vocab_size)
        if not job.prompt_logprobs:
            prompt_lps = None
    return SampleResponse(
        sequences=sequences,
        prompt_logprobs_np=prompt_lps,
        topk_prompt_logprobs_np=topk_prompt,
        target_prompt_logprobs=_targets(spec, steps, job),
        prompt_alt_tokens=_alt(spec, steps, job, prompt.size, rng),
    )


def _shaped_logprobs(spec: BaseModelSpec, steps: int, ids: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The null model's logprob of each id: the same at every position, falling with steps
    (a target naming the prompt's own next token gets that token's prompt logprob)."""
    scale = math.log(spec.vocab_size) * (0.9**steps)
    return (-scale * (1.0 + 0.1 * _unit_noise(ids))).astype(np.float32)


def _targets(spec: BaseModelSpec, steps: int, job: SampleJob) -> TensorData | None:
    target = job.target_prompt_logprobs
    if target is None:
        return None
    return answer_targets(target, _shaped_logprobs(spec, steps, np.maximum(target_ids(target), 0)))


def _alt(
    spec: BaseModelSpec, steps: int, job: SampleJob, length: int, rng: np.random.Generator
) -> PromptAltTokens | None:
    k = job.prompt_alt_tokens_k
    if k <= 0:
        return None
    rows = max(length - 1, 0)
    drawn = rng.integers(_FIRST_ORDINARY_TOKEN, spec.vocab_size, size=(rows, k), dtype=np.int64)
    return alt_tokens(drawn, _shaped_logprobs(spec, steps, drawn))


def _unit_noise(tokens: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """A deterministic value in [0, 1) per token id (a cheap integer hash)."""
    mixed = (tokens.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 16)
    return mixed.astype(np.float64) / float(1 << 16)


def _stop_token_ids(job: SampleJob) -> set[int]:
    stop = job.params.stop
    if isinstance(stop, list | tuple) and all(isinstance(s, int) for s in stop):
        return {int(s) for s in stop}
    return set()


def _topk(
    tokens: npt.NDArray[Any], lps: npt.NDArray[np.float32], k: int, vocab: int
) -> TopkLogprobs:
    """k alternatives per position: the actual token first, then its neighbours, descending."""
    ids = (tokens[:, None] + np.arange(k)[None, :]) % vocab
    base = np.nan_to_num(lps, nan=-1.0)[:, None]
    values = base - np.arange(k, dtype=np.float32)[None, :]
    out = TopkLogprobs(token_ids=ids.astype(np.int32), logprobs=values.astype(np.float32))
    if tokens.size and np.isnan(lps[0]):
        # the first prompt position has no prediction: mark it as padding
        out.token_ids[0, :] = 0
        out.logprobs[0, :] = -99999.0
    return out


def _write_state(directory: Path, state: _SavedState) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.encode(state)
    (directory / _STATE_FILE).write_bytes(data)
    return len(data)


def _read_state(directory: Path) -> _SavedState:
    try:
        raw = (directory / _STATE_FILE).read_bytes()
    except FileNotFoundError:
        raise BackendInputError(
            f"no null-backend state under {directory}; was it saved by another backend?"
        ) from None
    return msgspec.json.decode(raw, type=_SavedState)
