"""The interface between the local server's protocol engine and the code that does the maths.

The engine owns ids, ordering, futures, persistence and HTTP; a :class:`Backend` owns model
weights and computes. Two implementations exist: :mod:`._null_backend` (instant, deterministic
results of the right shapes, configurable latency) and the torch backend (a real small
transformer with LoRA). Clients cannot tell which one answers except by the numbers.

Rules every backend follows:

* Calls for one model arrive one at a time, in ``seq_id`` order (the engine's Sequencer
  guarantees it); calls for different models may overlap.
* Input has been validated by :func:`validate_forward_inputs` before the call; a backend
  raises :class:`BackendInputError` only for what needs the model to detect (a token id past
  the vocabulary, a prompt longer than the context). Those become user-category failures.
* CPU-heavy work runs in a worker thread (``trio.to_thread.run_sync``) so the server keeps
  answering heartbeats and polls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import trio

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Collection, Mapping, Sequence
    from pathlib import Path

    import numpy.typing as npt

    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.types import (
        AdamParams,
        Datum,
        ForwardBackwardOutput,
        LoraConfig,
        ModelInput,
        SampleResponse,
        SamplingParams,
        TensorData,
    )

__all__ = [
    "LOSS_CLIP_DEFAULTS",
    "LOSS_CONFIG_KEYS",
    "LOSS_INPUTS",
    "STABILITY_INPUTS",
    "Backend",
    "BackendInputError",
    "LatencyModel",
    "SampleJob",
    "check_loss_config",
    "check_target_tokens",
    "input_ids",
    "validate_forward_inputs",
]

#: Required and optional ``loss_fn_inputs`` of each built-in loss (tinker loss docs).
LOSS_INPUTS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "cross_entropy": (frozenset({"target_tokens"}), frozenset({"weights"})),
    "importance_sampling": (
        frozenset({"target_tokens", "logprobs", "advantages"}),
        frozenset({"weights"}),
    ),
    "ppo": (
        frozenset({"target_tokens", "logprobs", "advantages"}),
        frozenset({"weights", "clip_low_threshold", "clip_high_threshold"}),
    ),
    "cispo": (
        frozenset({"target_tokens", "logprobs", "advantages"}),
        frozenset({"weights", "clip_low_threshold", "clip_high_threshold"}),
    ),
    "dro": (frozenset({"target_tokens", "logprobs", "advantages"}), frozenset({"weights"})),
    "gspo": (
        frozenset({"target_tokens", "logprobs", "advantages"}),
        frozenset({"weights", "sequence_ratio_mask"}),
    ),
    # the sampler's logprobs come from what the server recorded at sampling time (the datum's
    # provenance names the sequences); a ``logprobs`` input is accepted and not needed
    "stable_reinforce": (
        frozenset({"target_tokens", "advantages"}),
        frozenset({"weights", "logprobs"}),
    ),
}

#: ``loss_fn_config`` keys each built-in loss accepts (anything else is refused).
LOSS_CONFIG_KEYS: Mapping[str, frozenset[str]] = {
    "cross_entropy": frozenset(),
    "importance_sampling": frozenset(),
    "ppo": frozenset({"clip_low_threshold", "clip_high_threshold"}),
    "cispo": frozenset({"clip_low_threshold", "clip_high_threshold"}),
    "dro": frozenset({"beta"}),
    "gspo": frozenset({"clip_low_threshold", "clip_high_threshold"}),
    "stable_reinforce": frozenset({"kl_coeff", "clip_high_threshold"}),
}

#: Default ``(clip_low_threshold, clip_high_threshold)`` of the losses that clip a ratio: PPO's
#: ε = 0.2 (Tinker docs), CISPO's one-sided 4.0, the GSPO paper's 3e-4 / 4e-4, and the cap of
#: stable_reinforce's importance weight (this server's choice; see _torch_losses).
LOSS_CLIP_DEFAULTS: Mapping[str, tuple[float, float]] = {
    "ppo": (0.8, 1.2),
    "cispo": (0.0, 4.0),
    "gspo": (1.0 - 3e-4, 1.0 + 4e-4),
    "stable_reinforce": (0.0, 2.0),
}

#: Inputs the engine adds to a ``stable_reinforce`` datum from its recorded sequences before
#: the backend sees it (clients cannot send them: the loss does not accept them):
#: ``sampler_logprobs`` (the sampler's logprob of each target that is a sampled token, 0
#: elsewhere) and ``sampled_mask`` (1 where the target is a sampled token).
STABILITY_INPUTS = ("sampler_logprobs", "sampled_mask")


class BackendInputError(ValueError):
    """The request is well-formed but this model cannot run it (a user error)."""


def _bounds(tokens: list[int]) -> tuple[int, int] | None:
    """The smallest and largest token id (numpy: half the cost of builtins min + max)."""
    if not tokens:
        return None
    try:
        ids = np.fromiter(tokens, dtype=np.int64, count=len(tokens))
    except OverflowError:  # beyond int64: report the builtins' answer, slow but rare
        return min(tokens), max(tokens)
    return int(ids.min()), int(ids.max())


def _number(config: Mapping[str, float | str], key: str) -> float:
    raw = config[key]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BackendInputError(f"loss_fn_config[{key!r}] must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise BackendInputError(f"loss_fn_config[{key!r}] must be finite, got {raw!r}")
    return value


def check_loss_config(loss_fn: str, config: Mapping[str, float | str]) -> None:
    """Check ``loss_fn_config``: known keys, numeric finite values, consistent thresholds.

    Values may be numbers or numeric strings (the 0.38 client sends strings).

    Raises:
        BackendInputError: naming the key at fault and what the loss accepts.
    """
    known = LOSS_CONFIG_KEYS.get(loss_fn, frozenset())
    unknown = set(config) - known
    if unknown:
        accepted = ", ".join(sorted(known)) or "no keys"
        raise BackendInputError(
            f"loss_fn_config for {loss_fn!r} has unknown keys {sorted(unknown)}; it accepts "
            f"{accepted}"
        )
    values = {key: _number(config, key) for key in config}
    default_low, default_high = LOSS_CLIP_DEFAULTS.get(loss_fn, (None, None))
    low = values.get("clip_low_threshold", default_low)
    high = values.get("clip_high_threshold", default_high)
    if low is not None and high is not None and low > high:
        raise BackendInputError(
            f"clip_low_threshold ({low}) must not exceed clip_high_threshold ({high})"
        )
    if loss_fn == "stable_reinforce" and high is not None and high <= 0:
        raise BackendInputError(
            f"clip_high_threshold caps stable_reinforce's importance weight; it must be > 0, "
            f"got {high}"
        )
    for key in ("kl_coeff", "beta"):
        if values.get(key, 0.0) < 0:
            raise BackendInputError(f"loss_fn_config[{key!r}] must be >= 0, got {config[key]!r}")


def validate_forward_inputs(
    data: Sequence[Datum],
    loss_fn: str,
    *,
    vocab_size: int,
    context_length: int,
    token_bounds: Sequence[tuple[int, int] | None] | None = None,
    supported: Collection[str] | None = None,
) -> None:
    """Check a forward/forward_backward batch against the loss and the model.

    Args:
        token_bounds: each datum's (min, max) token id, when the caller already knows them
            (``decode_forward_backward_request(token_bounds=...)``); else computed here.
        supported: the losses the backend runs (default: every built-in loss).

    Raises:
        BackendInputError: with a message naming the datum and field at fault.
    """
    if token_bounds is not None and len(token_bounds) != len(data):
        raise ValueError(f"token_bounds has {len(token_bounds)} entries for {len(data)} datums")
    if not data:
        raise BackendInputError("forward_backward needs at least one datum; got an empty batch")
    spec = LOSS_INPUTS.get(loss_fn)
    runs = LOSS_INPUTS.keys() if supported is None else supported
    if spec is None or loss_fn not in runs:
        what = "unknown loss_fn" if spec is None else "this backend cannot run loss_fn"
        raise BackendInputError(
            f"{what} {loss_fn!r}; the local server supports: {', '.join(sorted(runs))}"
        )
    required, optional = spec
    for i, datum in enumerate(data):
        if loss_fn == "stable_reinforce" and not isinstance(datum.loss_fn_input_spans, list):
            raise BackendInputError(
                f"datum {i}: stable_reinforce needs provenance on every datum "
                "(Datum.with_provenance, naming the sampled sequences by sequence_id; sample "
                "with record_stability_info=True)"
            )
        names = set(datum.loss_fn_inputs)
        missing = required - names
        if missing:
            raise BackendInputError(
                f"datum {i}: loss {loss_fn!r} needs loss_fn_inputs {sorted(required)}; "
                f"missing {sorted(missing)}"
            )
        unknown = names - required - optional
        if unknown:
            raise BackendInputError(
                f"datum {i}: loss {loss_fn!r} does not read {sorted(unknown)}; it accepts "
                f"{sorted(required | optional)}"
            )
        tokens = input_ids(datum.model_input, f"datum {i}")
        if len(tokens) > context_length:
            raise BackendInputError(
                f"datum {i}: {len(tokens)} tokens exceed the model's context of {context_length}"
            )
        bounds = token_bounds[i] if token_bounds is not None else _bounds(tokens)
        if bounds is not None and (bounds[0] < 0 or bounds[1] >= vocab_size):
            raise BackendInputError(
                f"datum {i}: token ids must be in [0, {vocab_size}); got {bounds[0]}..{bounds[1]}"
            )
        target = datum.loss_fn_inputs["target_tokens"]
        if target.dtype != "int64":
            raise BackendInputError(f"datum {i}: target_tokens must be int64, got {target.dtype}")
        # target_tokens is [N] (one target per position) or [N, K] (K weighted targets)
        rows = target.shape[0] if target.shape else target.numel
        if rows != len(tokens):
            raise BackendInputError(
                f"datum {i}: target_tokens has {rows} rows but model_input has "
                f"{len(tokens)} tokens; position i of model_input predicts target i"
            )
        check_target_tokens(target.to_numpy(), vocab_size, f"datum {i}")
        for name in names - {"target_tokens"}:
            tensor = datum.loss_fn_inputs[name]
            if tensor.dtype != "float32":
                raise BackendInputError(f"datum {i}: {name} must be float32, got {tensor.dtype}")
            if tensor.numel != target.numel:
                raise BackendInputError(
                    f"datum {i}: {name} has {tensor.numel} entries, target_tokens has "
                    f"{target.numel}; they must align"
                )


def input_ids(model_input: ModelInput, where: str) -> list[int]:
    """``model_input``'s token ids, an image's positions as placeholders (:mod:`._images`).

    Raises:
        BackendInputError: an image the local models cannot read, or a wrong token count.
    """
    try:
        return model_input.to_ints()
    except InvalidInputError:
        # not text only; _images imports this module, so it is imported here, when needed
        from tinker_actors.local._images import flatten

        return flatten(model_input, where).ids


def check_target_tokens(targets: npt.NDArray[Any], vocab_size: int, where: str) -> None:
    """Refuse target token ids outside the vocabulary (every backend, before any maths).

    Raises:
        BackendInputError: naming ``where`` and the ids' range.
    """
    if targets.size:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= vocab_size:
            raise BackendInputError(
                f"{where}: target_tokens must be in [0, {vocab_size}); got {low}..{high}"
            )


@dataclass(frozen=True, kw_only=True)
class SampleJob:
    """One validated sample request, as a backend sees it."""

    prompt: ModelInput
    num_samples: int = 1
    params: SamplingParams
    prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    topk_sample_logprobs: int = 0
    prompt_logprobs_last_n: int | None = None
    #: int64 ``[len(prompt) - 1, K]`` ids to score, checked (see :mod:`._prompt_targets`)
    target_prompt_logprobs: TensorData | None = None
    prompt_alt_tokens_k: int = 0
    #: called, in the backend's thread, with each decoding step's new tokens per sample
    #: (``[]`` for a sample already stopped); a backend that decodes at once never calls it.
    #: Not part of the request's identity (equality, derived seeds).
    progress: Callable[[list[list[int]]], None] | None = field(
        default=None, compare=False, repr=False
    )
    #: whose request this is: a backend that reuses work between requests (computed prompts)
    #: reuses only a caller's own, so no caller learns what another sent. Not part of the
    #: request's identity either.
    cache_salt: str | None = field(default=None, compare=False, repr=False)


class Backend(Protocol):
    """What the engine asks of a model backend (see the module docstring for the rules)."""

    @property
    def name(self) -> str:
        """``null`` or ``torch``."""
        ...

    @property
    def supported_losses(self) -> frozenset[str]:
        """The built-in losses this backend runs; others are refused at submission (400)."""
        ...

    async def create_model(
        self, model_id: str, spec: BaseModelSpec, lora: LoraConfig | None
    ) -> None:
        """Create trainable weights for ``model_id`` on top of the base model ``spec``."""
        ...

    async def forward_backward(
        self,
        model_id: str,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str],
        *,
        forward_only: bool,
    ) -> ForwardBackwardOutput:
        """Compute the loss and its outputs; unless ``forward_only``, accumulate gradients."""
        ...

    async def optim_step(self, model_id: str, params: AdamParams) -> dict[str, float]:
        """Apply and clear the accumulated gradients; return step metrics."""
        ...

    async def save_state(self, model_id: str, directory: Path, *, optimizer: bool) -> int:
        """Write the trainable state (and optimizer state) under ``directory``; return bytes."""
        ...

    async def load_state(
        self, model_id: str, directory: Path, *, optimizer: bool, spec: BaseModelSpec
    ) -> None:
        """Replace (or create) ``model_id``'s trainable state from ``directory``."""
        ...

    async def save_sampler(self, model_id: str, directory: Path) -> int:
        """Snapshot the current weights for sampling under ``directory``; return bytes."""
        ...

    async def save_external(self, model_id: str, directory: Path) -> int:
        """Export the current weights under ``directory`` for use outside the server (in the
        layout the real service's exports have, where the backend has real weights); return
        bytes. The server never reads an export back."""
        ...

    async def sample(
        self, spec: BaseModelSpec, weights: Path | None, job: SampleJob
    ) -> SampleResponse:
        """Sample from the base model (``weights`` None) or a saved sampler snapshot."""
        ...

    async def drop_model(self, model_id: str) -> None:
        """Forget ``model_id`` (its session ended)."""
        ...


Distribution = Literal["fixed", "uniform", "exponential"]


@dataclass(frozen=True, kw_only=True)
class LatencyModel:
    """Seconds an operation takes, drawn from a seeded distribution.

    ``fixed``: always ``a``; ``uniform``: uniform in ``[a, b]``; ``exponential``: mean ``a``.
    """

    kind: Distribution = "fixed"
    a: float = 0.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.a < 0 or self.b < 0 or not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"latency parameters must be finite and >= 0, got {self.a}, {self.b}")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError(f"uniform latency needs a <= b, got {self.a} > {self.b}")

    def draw(self, rng: random.Random) -> float:
        """Return one duration in seconds."""
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0
        return self.a

    async def sleep(self, rng: random.Random) -> None:
        """Sleep for one drawn duration (nothing at all for zero, not even a checkpoint)."""
        seconds = self.draw(rng)
        if seconds > 0:
            await trio.sleep(seconds)
