"""The ``torch`` backend: real LoRA training and sampling on small seeded transformers.

Each training model is a LoRA :class:`~._torch_model.Adapter` over a shared frozen base model
(built once per catalogue spec, identical on every machine) plus a ``torch.optim.AdamW`` over
the adapter's tensors. ``forward_backward`` adds gradients; ``optim_step`` applies the sum of
every gradient since the last step, then clears it. Losses are in :mod:`._torch_losses`,
sampling in :mod:`._torch_sampling`.

All torch work runs in worker threads (``trio.to_thread.run_sync``) behind one
``trio.CapacityLimiter`` (one job at a time by default: the jobs are compute-bound and would
only contend), so the event loop keeps answering heartbeats and polls during a long step. A
cancelled call (a cancelled sample, or the server stopping) does not sit out its job: a job not
yet started never starts, and a running sample stops at its next decoding step. The call does
wait for a running job to end, though, because torch must never be left running unattended: a
busy torch thread at interpreter exit aborts the process.

Files (under the directory the engine gives): the adapter in Tinker's own layout
(``adapter_model.safetensors`` with PEFT-style names, ``adapter_config.json``), the server's
header ``adapter.json`` (format, base model, LoRA shape, step count), and ``optimizer.pt`` (the
AdamW state) for ``save_state`` with the optimizer. Sampler snapshots have no optimizer file;
exports have no header. The format is written and checked in :mod:`._torch_checkpoint`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import trio

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._batch_queue import BatchQueue, Entry, More, run_stoppable
from tinker_actors.local._sample_seeds import SampleSeeds
from tinker_actors.local._torch_checkpoint import (
    META_FILE,
    OPTIMIZER_FILE,
    read_meta,
    read_tensors,
    write_adapter,
    write_tinker_adapter,
)
from tinker_actors.local._torch_losses import TORCH_LOSSES, parse_loss_config
from tinker_actors.local._torch_model import Adapter, AdapterShape, BaseWeights, build_base
from tinker_actors.local._torch_prefix import PrefixStore
from tinker_actors.local._torch_sampling import sample_batch, sample_cost, token_limit
from tinker_actors.local._torch_train_batch import run_forward_backward

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tinker_actors.local._backend import SampleJob
    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.local._torch_sampling import Item
    from tinker_actors.types import (
        AdamParams,
        Datum,
        ForwardBackwardOutput,
        LoraConfig,
        SampleResponse,
    )

__all__ = ["DEFAULT_LORA_RANK", "TorchBackend", "default_tokenizer_loader"]

#: The rank of a model created without a LoraConfig.
DEFAULT_LORA_RANK = 32
_SAMPLER_CACHE = 8
#: The most memory (KV cache and logits, estimated by ``sample_cost``) one decoding batch of
#: sample requests takes; a request larger than this still runs, alone.
SAMPLE_BATCH_BYTES = 256 * 1024 * 1024
#: The most memory the keys and values kept for later prompts take (see ``_torch_prefix``):
#: 500k positions of local/tiny, 23k of SmolLM2-135M.
PREFIX_CACHE_BYTES = 1024 * 1024 * 1024
# base models are frozen and read-only, so every backend in the process shares them
_BASES: dict[tuple[str, str], BaseWeights] = {}
_BASES_LOCK = threading.Lock()


@dataclass
class _TrainModel:
    spec: BaseModelSpec
    adapter: Adapter
    optimizer: torch.optim.AdamW
    steps: int = 0


@dataclass(frozen=True)
class _SampleCall:
    spec: BaseModelSpec
    weights: Path | None
    job: SampleJob
    seed: int


def default_tokenizer_loader(
    cache_dir: Path,
) -> Callable[[BaseModelSpec], Callable[[list[int]], str]]:
    """Return a loader that builds (once, under ``cache_dir``) and decodes with a model's tokenizer."""

    def load(spec: BaseModelSpec) -> Callable[[list[int]], str]:
        from tinker_actors.local._tokenizer import (
            TokenizerText,
            ensure_model_tokenizer_dir,
            load_tokenizer,
        )

        return TokenizerText(load_tokenizer(ensure_model_tokenizer_dir(cache_dir, spec)))

    return load


class TorchBackend:
    """LoRA training and sampling with torch (see the module docstring).

    Args:
        device: ``cuda``/``cpu``/a torch device; default CUDA when available, else CPU.
        max_concurrent: torch jobs run at once (worker threads behind one CapacityLimiter).
        num_threads: if set, ``torch.set_num_threads`` (process-wide) to this value.
        tokenizer_loader: spec -> decode function, used for stop strings; default builds the
            local tokenizer under ``cache_dir``.
        cache_dir: where the default loader builds tokenizers and real (GGUF) weights are
            cached as safetensors (default: a directory in the system temp dir; both are
            deterministic and content-addressed).
        seed: makes the seeds of sample requests that carry none repeat from run to run
            (derived from this seed and each request; see :mod:`._sample_seeds`); without
            it they are random.
        prefix_cache_bytes: the most memory kept for the keys and values of sequences
            already sampled, which later prompts that start with them reuse (see
            :mod:`._torch_prefix`); 0 keeps none.
    """

    def __init__(
        self,
        *,
        device: str | torch.device | None = None,
        max_concurrent: int = 1,
        num_threads: int | None = None,
        tokenizer_loader: Callable[[BaseModelSpec], Callable[[list[int]], str]] | None = None,
        cache_dir: Path | None = None,
        seed: int | None = None,
        prefix_cache_bytes: int = PREFIX_CACHE_BYTES,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self._limiter = trio.CapacityLimiter(max_concurrent)
        import tempfile

        root = cache_dir or Path(tempfile.gettempdir()) / "tinker-actors-cache"
        self._cache_root = root
        if tokenizer_loader is None:
            tokenizer_loader = default_tokenizer_loader(root / "tokenizers")
        self._tokenizer_loader = tokenizer_loader
        self._decoders: dict[str, Callable[[list[int]], str]] = {}
        self._models: dict[str, _TrainModel] = {}
        self._samplers: OrderedDict[tuple[str, int], Adapter] = OrderedDict()
        self._lock = threading.Lock()  # guards the caches above across worker threads
        self._seeds = SampleSeeds(seed)
        self.prefixes = PrefixStore(prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self._samples: BatchQueue[_SampleCall, SampleResponse] = BatchQueue(
            self._run, self._sample_batch, budget=SAMPLE_BATCH_BYTES
        )

    @property
    def name(self) -> str:
        """Always ``torch``."""
        return "torch"

    @property
    def supported_losses(self) -> frozenset[str]:
        """Every built-in loss (see :mod:`._torch_losses`)."""
        return TORCH_LOSSES

    async def _run(
        self, fn: Callable[..., Any], *args: Any, stop: threading.Event | None = None
    ) -> Any:
        """Run ``fn(*args)`` in a worker thread behind the limiter; on cancellation stop it
        (see the module doc and :func:`._batch_queue.run_stoppable`)."""
        return await run_stoppable(self._limiter, fn, *args, stop=stop)

    # -- shared state ---------------------------------------------------------------------

    def base(self, spec: BaseModelSpec) -> BaseWeights:
        """The frozen base model of ``spec`` on this backend's device (built once)."""
        key = (spec.name, str(self.device))
        with _BASES_LOCK:
            found = _BASES.get(key)
            if found is None or found.spec != spec:
                found = _BASES[key] = build_base(spec, self.device, self._cache_root)
        return found

    def _model(self, model_id: str) -> _TrainModel:
        model = self._models.get(model_id)
        if model is None:
            raise BackendInputError(f"model {model_id!r} is not loaded")
        return model

    def adapter(self, model_id: str) -> Adapter:
        """The live adapter of a training model (for tests and benchmarks)."""
        return self._model(model_id).adapter

    def _new_model(self, spec: BaseModelSpec, shape: AdapterShape, seed: int) -> _TrainModel:
        adapter = Adapter.create(self.base(spec), shape, seed)
        optimizer = torch.optim.AdamW(adapter.parameters(), lr=0.0)
        return _TrainModel(spec=spec, adapter=adapter, optimizer=optimizer)

    # -- Backend protocol -----------------------------------------------------------------

    async def create_model(
        self, model_id: str, spec: BaseModelSpec, lora: LoraConfig | None
    ) -> None:
        """Create a LoRA adapter (B = 0, so the model starts equal to its base)."""
        if lora is None:
            shape, seed = AdapterShape(rank=DEFAULT_LORA_RANK), 0
        else:
            shape = AdapterShape(
                rank=lora.rank,
                train_attn=lora.train_attn,
                train_mlp=lora.train_mlp,
                train_unembed=lora.train_unembed,
            )
            seed = lora.seed if isinstance(lora.seed, int) else 0
        if not (shape.train_attn or shape.train_mlp or shape.train_unembed):
            raise BackendInputError("LoraConfig trains nothing: enable attn, mlp or unembed")
        self._models[model_id] = await self._run(self._new_model, spec, shape, seed)

    async def forward_backward(
        self,
        model_id: str,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str],
        *,
        forward_only: bool,
    ) -> ForwardBackwardOutput:
        """Compute the loss and outputs; unless ``forward_only``, add to the gradients."""
        model = self._model(model_id)
        result: ForwardBackwardOutput = await self._run(
            self._forward_backward_sync, model, data, loss_fn, loss_fn_config, forward_only
        )
        return result

    def _forward_backward_sync(
        self,
        model: _TrainModel,
        data: Sequence[Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str],
        forward_only: bool,
    ) -> ForwardBackwardOutput:
        config = parse_loss_config(loss_fn, loss_fn_config)
        return run_forward_backward(
            self.base(model.spec), model.adapter, data, loss_fn, config, forward_only=forward_only
        )

    async def optim_step(self, model_id: str, params: AdamParams) -> dict[str, float]:
        """AdamW over the adapter with the gradients accumulated since the last step."""
        model = self._model(model_id)
        _check_adam(params)
        metrics: dict[str, float] = await self._run(self._optim_step_sync, model, params)
        return metrics

    def _optim_step_sync(self, model: _TrainModel, params: AdamParams) -> dict[str, float]:
        tensors = model.adapter.parameters()
        grads = [t.grad for t in tensors if t.grad is not None]
        norm = (
            float(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            )
            if grads
            else 0.0
        )
        if params.grad_clip_norm > 0 and grads:
            torch.nn.utils.clip_grad_norm_(tensors, params.grad_clip_norm)
        for group in model.optimizer.param_groups:
            group["lr"] = params.learning_rate
            group["betas"] = (params.beta1, params.beta2)
            group["eps"] = params.eps
            group["weight_decay"] = params.weight_decay
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)
        model.steps += 1
        return {"grad_norm:mean": norm, "learning_rate:mean": params.learning_rate}

    async def save_state(self, model_id: str, directory: Path, *, optimizer: bool) -> int:
        """Write the adapter (and the AdamW state) under ``directory``; return bytes written."""
        model = self._model(model_id)
        size: int = await self._run(self._save_sync, model, directory, optimizer)
        return size

    def _save_sync(self, model: _TrainModel, directory: Path, optimizer: bool) -> int:
        written = write_adapter(directory, model.spec, model.adapter, model.steps)
        if optimizer:
            path = directory / OPTIMIZER_FILE
            torch.save(model.optimizer.state_dict(), path)
            written.append(path)
        return sum(p.stat().st_size for p in written)

    async def load_state(
        self, model_id: str, directory: Path, *, optimizer: bool, spec: BaseModelSpec
    ) -> None:
        """Replace (or create) ``model_id`` from a :meth:`save_state` directory."""
        self._models[model_id] = await self._run(self._load_sync, directory, optimizer, spec)

    def _load_sync(self, directory: Path, optimizer: bool, spec: BaseModelSpec) -> _TrainModel:
        meta = read_meta(directory, spec)
        model = self._new_model(spec, meta.shape, 0)
        model.adapter.load_state_dict(read_tensors(directory))
        model.steps = meta.steps
        if optimizer:
            path = directory / OPTIMIZER_FILE
            if not path.is_file():
                raise BackendInputError(f"{directory.name} holds no optimizer state")
            model.optimizer.load_state_dict(torch.load(path, weights_only=True))
        return model

    async def save_sampler(self, model_id: str, directory: Path) -> int:
        """Snapshot the adapter's current weights for sampling."""
        model = self._model(model_id)
        size: int = await self._run(self._save_sampler_sync, model, directory)
        return size

    def _save_sampler_sync(self, model: _TrainModel, directory: Path) -> int:
        written = write_adapter(directory, model.spec, model.adapter, model.steps)
        return sum(p.stat().st_size for p in written)

    async def save_external(self, model_id: str, directory: Path) -> int:
        """Export the adapter in Tinker's own layout (``adapter_model.safetensors`` and
        ``adapter_config.json``), which tinker-cookbook's ``weights`` tools read."""
        model = self._model(model_id)
        written = await self._run(write_tinker_adapter, directory, model.spec, model.adapter)
        return sum(p.stat().st_size for p in written)

    async def sample(
        self, spec: BaseModelSpec, weights: Path | None, job: SampleJob
    ) -> SampleResponse:
        """Sample from the base model or a saved sampler snapshot (see _torch_sampling).

        Requests on the same weights that wait together decode together (see
        :mod:`._batch_queue`)."""
        seed = job.params.seed
        if not isinstance(seed, int):
            seed = self._seeds.draw(job)
        cost = sample_cost(spec, job)
        call = _SampleCall(spec=spec, weights=weights, job=job, seed=seed)
        return await self._samples.submit((spec.name, weights), cost, call)

    def _sample_batch(
        self,
        batch: list[Entry[_SampleCall, SampleResponse]],
        finish: Callable[[Entry[_SampleCall, SampleResponse], Any], None],
        more: More[_SampleCall, SampleResponse],
    ) -> None:
        spec, weights = batch[0].payload.spec, batch[0].payload.weights
        base = self.base(spec)
        try:
            key, adapter = (
                self._sampler_adapter(spec, weights) if weights is not None else (None, None)
            )
        except BackendInputError as exc:
            for entry in batch:
                finish(entry, exc)
            return

        def items(entries: list[Entry[_SampleCall, SampleResponse]]) -> list[Item]:
            # the tokenizer is loaded only when a request stops on strings
            needs_text = any(_has_stop_strings(e.payload.job.params.stop) for e in entries)
            decode = self._decoder(spec) if needs_text else None
            return [(e, e.payload.job, e.payload.seed, decode, e.stop.is_set) for e in entries]

        def joining(left: int) -> list[Item]:
            # only requests that draw at most ``left`` tokens: a join never lengthens the batch
            return items(more(lambda call: token_limit(call.spec, call.job) <= left))

        # a snapshot's key names its files and their time: weights saved again never match
        prefixes = self.prefixes.view((spec.name, key)) if self.prefixes is not None else None
        sample_batch(base, adapter, items(batch), finish, joining, prefixes)

    async def drop_model(self, model_id: str) -> None:
        """Forget ``model_id`` and its optimizer state."""
        self._models.pop(model_id, None)

    # -- helpers --------------------------------------------------------------------------

    def _sampler_adapter(
        self, spec: BaseModelSpec, directory: Path
    ) -> tuple[tuple[str, int], Adapter]:
        meta_path = directory / META_FILE
        try:
            key = (str(directory), meta_path.stat().st_mtime_ns)
        except FileNotFoundError:
            raise BackendInputError(
                f"no torch-backend weights under {directory.name}; were they saved by another "
                "backend?"
            ) from None
        with self._lock:
            found = self._samplers.get(key)
            if found is not None:
                self._samplers.move_to_end(key)
                return key, found
        meta = read_meta(directory, spec)
        adapter = Adapter.create(self.base(spec), meta.shape, 0, trainable=False)
        adapter.load_state_dict(read_tensors(directory))
        with self._lock:
            self._samplers[key] = adapter
            while len(self._samplers) > _SAMPLER_CACHE:
                self._samplers.popitem(last=False)
        return key, adapter

    def _decoder(self, spec: BaseModelSpec) -> Callable[[list[int]], str]:
        with self._lock:
            found = self._decoders.get(spec.name)
        if found is None:
            found = self._tokenizer_loader(spec)
            with self._lock:
                self._decoders[spec.name] = found
        return found


def _has_stop_strings(stop: object) -> bool:
    if isinstance(stop, str):
        return bool(stop)
    return isinstance(stop, list | tuple) and any(isinstance(s, str) for s in stop)


def _check_adam(params: AdamParams) -> None:
    problems = []
    if not params.learning_rate >= 0:
        problems.append(f"learning_rate must be >= 0, got {params.learning_rate}")
    for name, value in (("beta1", params.beta1), ("beta2", params.beta2)):
        if not 0 <= value < 1:
            problems.append(f"{name} must be in [0, 1), got {value}")
    if not params.eps >= 0:
        problems.append(f"eps must be >= 0, got {params.eps}")
    if not params.weight_decay >= 0:
        problems.append(f"weight_decay must be >= 0, got {params.weight_decay}")
    if problems:
        raise BackendInputError("invalid adam_params: " + "; ".join(problems))
