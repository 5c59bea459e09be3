"""A small decoder-only transformer with LoRA adapters, in plain torch.

The torch backend's models are built here. A *base model* (:class:`BaseWeights`) is a frozen
set of tensors drawn from a ``torch.Generator`` seeded with the catalogue spec's ``seed``, on
the CPU in float32, so every machine gets bit-identical weights; it is then moved to the
device. One base model is shared (read-only) by every training model and sampler built on it.

A *training model* adds an :class:`Adapter`: per adapted linear layer two trainable matrices
``A`` (r x in, seeded from ``LoraConfig.seed``) and ``B`` (out x r, zero), so that

    y = W x + (B (A x)) * alpha / r

and an untrained adapter leaves the base model's outputs exactly unchanged. Which linears are
adapted follows the LoraConfig flags: attention (q, k, v, o), MLP (gate, up, down) and the
unembedding (the output head).

Architecture (Llama-style): token embedding; per layer RMSNorm -> rotary multi-head causal
attention -> residual, RMSNorm -> SwiGLU MLP -> residual; final RMSNorm; an untied output head.
:func:`forward` runs it on a padded batch and, for sampling, with a :class:`KVCache`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from tinker_actors.local._catalogue import BaseModelSpec

__all__ = [
    "LORA_ALPHA",
    "VISION_FEATURES",
    "Adapter",
    "AdapterShape",
    "BaseWeights",
    "KVCache",
    "adapted_names",
    "build_base",
    "forward",
    "length_groups",
]

#: LoRA scaling numerator: adapters scale by ``LORA_ALPHA / rank`` (32, as in Tinker's guides).
LORA_ALPHA = 32.0
_INIT_STD = 0.02
# The output side is shaped so LoRA at ordinary learning rates visibly learns: the final norm's
# gain scales the features the head (and its adapter) read by 4, and the head's own weights are
# scaled down by as much, so an untrained model still predicts near-uniformly (loss ~ ln V).
# Measured on local/tiny (8 Adam steps at lr 2e-3, rank 16, a repeating pattern): the loss fell
# from 8.4 to 5.7 with gain 1 and std 0.02, to 2.0 with these (docs/local-server.md).
_FINAL_NORM_GAIN = 4.0
_HEAD_STD = _INIT_STD / 4
_ATTN = ("q", "k", "v", "o")
#: an image token's input: its square of pixels averaged down to 4 x 4, RGB
VISION_FEATURES = 4 * 4 * 3
_VISION_SEED = 0x1A6E
_MLP = ("gate", "up", "down")


@dataclass
class BaseWeights:
    """The frozen weights of one base model (a catalogue spec), on one device."""

    spec: BaseModelSpec
    embed: torch.Tensor  # [V, d]
    layers: list[dict[str, torch.Tensor]]  # q k v o [d, d]; gate up [f, d]; down [d, f]; norms
    norm: torch.Tensor  # [d]
    head: torch.Tensor  # [V, d]
    cos: torch.Tensor  # [ctx, head_dim]
    sin: torch.Tensor  # [ctx, head_dim]
    vision: torch.Tensor  # [d, VISION_FEATURES]: an image square's pixels -> its embedding

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.embed.device

    def linear(self, name: str) -> torch.Tensor:
        """Return the weight of an adaptable linear by its adapter name (``3.q``, ``head``)."""
        if name == "head":
            return self.head
        layer, part = name.split(".")
        return self.layers[int(layer)][part]


def _rope(spec: BaseModelSpec) -> tuple[torch.Tensor, torch.Tensor]:
    head_dim = spec.d_model // spec.n_heads
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    inv_freq = 1.0 / (spec.rope_base**exponents)
    angles = torch.outer(torch.arange(spec.context_length, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def _vision(spec: BaseModelSpec) -> torch.Tensor:
    # its own generator: the language weights (and gguf models) are drawn as before images
    gen = torch.Generator(device="cpu").manual_seed(spec.seed + _VISION_SEED)
    # a square's features lie in [-1, 1]; scaled so its embedding is about a token's size
    std = _INIT_STD * 2 / math.sqrt(VISION_FEATURES)
    return torch.randn(spec.d_model, VISION_FEATURES, generator=gen) * std


def build_base(
    spec: BaseModelSpec, device: torch.device | str = "cpu", cache_dir: Path | None = None
) -> BaseWeights:
    """Build the base model of ``spec``: seeded weights, or real ones read from its file.

    Seeded weights are drawn on the CPU in float32 from one generator seeded with
    ``spec.seed``, in a fixed order, so every machine gets the same model. ``gguf`` weights are
    read (and cached as safetensors under ``cache_dir``) by :mod:`._gguf_weights`. Either way
    the result is moved to ``device`` afterwards.
    """
    if spec.d_model % spec.n_heads or (spec.d_model // spec.n_heads) % 2:
        raise ValueError(f"{spec.name}: d_model must split into heads of even size")
    if spec.n_heads % spec.kv_heads:
        raise ValueError(f"{spec.name}: n_heads must be a multiple of n_kv_heads")
    if spec.weights == "gguf":
        from tinker_actors.local._gguf_weights import load_gguf_weights

        embed, layers, norm = load_gguf_weights(spec, cache_dir)
        cos, sin = _rope(spec)
        loaded = BaseWeights(
            spec=spec,
            embed=embed,
            layers=layers,
            norm=norm,
            head=embed,
            cos=cos,
            sin=sin,
            vision=_vision(spec),
        )
        return _to(loaded, torch.device(device))
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    d, f, v = spec.d_model, spec.d_ff, spec.vocab_size
    kv = spec.kv_heads * (d // spec.n_heads)
    # residual-branch outputs are scaled down with depth (GPT-2 style) to keep activations sane
    out_std = _INIT_STD / math.sqrt(2 * spec.n_layers)

    def draw(rows: int, cols: int, std: float = _INIT_STD) -> torch.Tensor:
        return torch.randn(rows, cols, generator=gen, dtype=torch.float32) * std

    embed = draw(v, d)
    layers = []
    for _ in range(spec.n_layers):
        layers.append(
            {
                "attn_norm": torch.ones(d),
                "q": draw(d, d),
                "k": draw(kv, d),
                "v": draw(kv, d),
                "o": draw(d, d, out_std),
                "mlp_norm": torch.ones(d),
                "gate": draw(f, d),
                "up": draw(f, d),
                "down": draw(d, f, out_std),
            }
        )
    head = embed if spec.tied_embeddings else draw(v, d, _HEAD_STD)
    cos, sin = _rope(spec)
    base = BaseWeights(
        spec=spec,
        embed=embed,
        layers=layers,
        norm=torch.full((d,), _FINAL_NORM_GAIN),
        head=head,
        cos=cos,
        sin=sin,
        vision=_vision(spec),
    )
    return _to(base, torch.device(device))


def _to(base: BaseWeights, device: torch.device) -> BaseWeights:
    if device.type == "cpu":
        return base
    embed = base.embed.to(device)
    return BaseWeights(
        spec=base.spec,
        embed=embed,
        layers=[{k: t.to(device) for k, t in layer.items()} for layer in base.layers],
        norm=base.norm.to(device),
        # a tied head stays one tensor on the device too
        head=embed if base.head is base.embed else base.head.to(device),
        cos=base.cos.to(device),
        sin=base.sin.to(device),
        vision=base.vision.to(device),
    )


@dataclass(frozen=True)
class AdapterShape:
    """Which linears an adapter covers, and its rank."""

    rank: int
    train_attn: bool = True
    train_mlp: bool = True
    train_unembed: bool = True


def adapted_names(spec: BaseModelSpec, shape: AdapterShape) -> list[str]:
    """Return the adapted linears' names in a fixed order (``0.q`` ... ``head``)."""
    names: list[str] = []
    for i in range(spec.n_layers):
        if shape.train_attn:
            names.extend(f"{i}.{p}" for p in _ATTN)
        if shape.train_mlp:
            names.extend(f"{i}.{p}" for p in _MLP)
    if shape.train_unembed:
        names.append("head")
    return names


@dataclass
class Adapter:
    """Trainable LoRA matrices keyed by linear name: ``a[name]`` is [r, in], ``b[name]`` [out, r]."""

    shape: AdapterShape
    a: dict[str, torch.Tensor] = field(default_factory=dict)
    b: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """``alpha / r``."""
        return LORA_ALPHA / self.shape.rank

    @classmethod
    def create(
        cls, base: BaseWeights, shape: AdapterShape, seed: int, *, trainable: bool = True
    ) -> Adapter:
        """Make a fresh adapter: A uniform in ±1/sqrt(in) from ``seed`` (CPU), B zero."""
        if shape.rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {shape.rank}")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        adapter = cls(shape=shape)
        for name in adapted_names(base.spec, shape):
            out_dim, in_dim = base.linear(name).shape
            bound = 1.0 / math.sqrt(in_dim)
            a = (torch.rand(shape.rank, in_dim, generator=gen) * 2 - 1) * bound
            adapter.a[name] = a.to(base.device).requires_grad_(trainable)
            adapter.b[name] = torch.zeros(out_dim, shape.rank, device=base.device).requires_grad_(
                trainable
            )
        return adapter

    def parameters(self) -> list[torch.Tensor]:
        """Every trainable tensor, in a fixed order (A then B per linear)."""
        out: list[torch.Tensor] = []
        for name in self.a:
            out.extend((self.a[name], self.b[name]))
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies keyed ``<name>.lora_A`` / ``<name>.lora_B``."""
        out = {}
        for name in self.a:
            out[f"{name}.lora_A"] = self.a[name].detach().cpu().contiguous()
            out[f"{name}.lora_B"] = self.b[name].detach().cpu().contiguous()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy tensors saved by :meth:`state_dict` into this adapter (shapes must match)."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(
                f"adapter tensors do not match: missing {sorted(expected - set(state))[:4]}, "
                f"unexpected {sorted(set(state) - expected)[:4]}"
            )
        with torch.no_grad():
            for name in self.a:
                self.a[name].copy_(state[f"{name}.lora_A"])
                self.b[name].copy_(state[f"{name}.lora_B"])

    def frozen_copy(self) -> Adapter:
        """A detached copy (for a sampler snapshot)."""
        copy = Adapter(shape=self.shape)
        copy.a = {k: t.detach().clone() for k, t in self.a.items()}
        copy.b = {k: t.detach().clone() for k, t in self.b.items()}
        return copy


@dataclass
class KVCache:
    """Keys and values of the positions seen so far, per layer: [B, heads, capacity, head_dim],
    of which the first :attr:`length` positions are filled.

    Decoding writes each step's keys and values into spare capacity in place. Growing by
    concatenation copied the whole cache every step, so a long completion cost time
    quadratic in its length (60 % of a 40-row decode after 2,300-token prompts). A cache with
    no room left grows geometrically (never past :attr:`most`, when set), so appends stay
    amortised linear either way.
    """

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    length: int = 0  # positions filled (the same in every layer between forward passes)
    most: int = 0  # the most positions it will ever hold, when known (0: unknown)

    @property
    def capacity(self) -> int:
        """Positions the buffers hold without growing."""
        return self.keys[0].shape[2] if self.keys else 0

    def extend(
        self, layer: int, start: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write positions ``start``.. of one layer; return its keys and values up to them.

        :func:`forward` calls this once per layer and sets :attr:`length` after the last."""
        end = start + keys.shape[2]
        if layer == len(self.keys):  # the first block: the buffers are exactly its size
            if start:
                raise ValueError("a cache's first keys start at position 0")
            self.keys.append(keys)
            self.values.append(values)
            return keys, values
        held_k, held_v = self.keys[layer], self.values[layer]
        if end > held_k.shape[2]:
            room = 2 * held_k.shape[2]
            room = max(end, min(room, self.most) if self.most else room)
            held_k, held_v = _regrown(held_k, start, room), _regrown(held_v, start, room)
            self.keys[layer], self.values[layer] = held_k, held_v
        held_k[:, :, start:end] = keys
        held_v[:, :, start:end] = values
        return held_k[:, :, :end], held_v[:, :, :end]

    def expand(self, batch: int) -> KVCache:
        """Repeat a batch-1 cache ``batch`` times (num_samples continuations of one prompt)."""
        return KVCache(
            keys=[k.expand(batch, -1, -1, -1).contiguous() for k in self.keys],
            values=[v.expand(batch, -1, -1, -1).contiguous() for v in self.values],
            length=self.length,
        )

    @classmethod
    def stack(
        cls,
        sources: Sequence[tuple[KVCache, int, int]],
        repeats: Sequence[int],
        capacity: int = 0,
        most: int = 0,
    ) -> KVCache:
        """One batch from rows of other caches: ``sources[i]`` is ``(cache, row, length)``, the
        first ``length`` positions of that row, repeated ``repeats[i]`` times. Rows are
        right-padded with zeros to the longest; :func:`forward`'s ``key_mask`` hides the
        padding. ``capacity``: positions to hold now (room for what decoding appends);
        ``most``: the most it will need (see :attr:`most`)."""
        longest = max(length for _, _, length in sources)
        rows = sum(repeats)

        def merge(parts: list[torch.Tensor]) -> torch.Tensor:
            shape = (rows, parts[0].shape[1], max(longest, capacity), parts[0].shape[3])
            merged = parts[0].new_zeros(shape)
            start = 0
            for part, (_, row, length), count in zip(parts, sources, repeats, strict=True):
                merged[start : start + count, :, :length] = part[row, :, :length]
                start += count
            return merged

        layers = range(len(sources[0][0].keys))
        return cls(
            keys=[merge([c.keys[i] for c, _, _ in sources]) for i in layers],
            values=[merge([c.values[i] for c, _, _ in sources]) for i in layers],
            length=longest,
            most=most,
        )

    def join(self, other: KVCache, capacity: int, most: int) -> KVCache:
        """This cache's rows, then ``other``'s, in one cache of ``capacity`` positions. Its
        length is the longer of the two: the other's rows are padded with zeros up to it,
        for :func:`forward`'s ``key_mask`` to hide."""
        length = max(self.length, other.length)

        def merged(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            rows = a.shape[0]
            out = a.new_zeros(rows + b.shape[0], a.shape[1], max(capacity, length), a.shape[3])
            out[:rows, :, : self.length] = a[:, :, : self.length]
            out[rows:, :, : other.length] = b[:, :, : other.length]
            return out

        return KVCache(
            keys=[merged(a, b) for a, b in zip(self.keys, other.keys, strict=True)],
            values=[merged(a, b) for a, b in zip(self.values, other.values, strict=True)],
            length=length,
            most=most,
        )

    def select(self, rows: torch.Tensor) -> KVCache:
        """Keep only ``rows`` (a 1-D index) of the batch."""
        return KVCache(
            keys=[k.index_select(0, rows) for k in self.keys],
            values=[v.index_select(0, rows) for v in self.values],
            length=self.length,
            most=self.most,
        )


def _regrown(held: torch.Tensor, filled: int, capacity: int) -> torch.Tensor:
    grown = held.new_empty(held.shape[0], held.shape[1], capacity, held.shape[3])
    grown[:, :, :filled] = held[:, :, :filled]
    return grown


def kv_position_bytes(spec: BaseModelSpec) -> int:
    """The bytes of one position's float32 keys and values over every layer."""
    return spec.n_layers * 2 * spec.kv_heads * (spec.d_model // spec.n_heads) * 4


def length_groups(lengths: Sequence[int], fits: Callable[[int, int], bool]) -> list[list[int]]:
    """Indices of ``lengths`` shortest first (ties in order), cut into padded batches: a group
    grows while ``fits(rows, longest)``; a single item that does not fit is a group alone."""
    out: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        # sorted: the newcomer is the group's longest
        if current and not fits(len(current) + 1, lengths[i]):
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


def _linear(x: torch.Tensor, base: BaseWeights, adapter: Adapter | None, name: str) -> torch.Tensor:
    y = F.linear(x, base.linear(name))
    if adapter is not None and name in adapter.a:
        y = y + F.linear(F.linear(x, adapter.a[name]), adapter.b[name]) * adapter.scale
    return y


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def forward(
    base: BaseWeights,
    adapter: Adapter | None,
    tokens: torch.Tensor,
    cache: KVCache | None = None,
    *,
    positions: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
    logits_at: torch.Tensor | None = None,
    images: Sequence[tuple[int, int, torch.Tensor]] = (),
) -> torch.Tensor:
    """Return float32 logits ``[B, T, V]`` for ``tokens`` ``[B, T]``.

    Without ``cache`` the batch is causal from position 0 (right padding is harmless: no
    real position attends to a later one). With ``cache`` the tokens continue the cached
    positions, and their keys/values are appended to it.

    Rows of different lengths decode together (one token per row, ``T`` = 1) from a cache
    built by :meth:`KVCache.stack`: ``positions`` [B] is each row's own position, and
    ``key_mask`` [B, cache length + 1] says which keys each row attends to (its own cached
    ones and the new one, not another row's padding).

    ``logits_at`` [B] returns the logits of one position per row only (``[B, 1, V]``): a
    prefill that needs just each prompt's last distribution skips the output head elsewhere.

    ``images``: ``(row, column, features [n, VISION_FEATURES])`` put an image's ``n`` squares
    in place of the token embeddings at ``tokens[row, column : column + n]``.
    """
    spec = base.spec
    batch, length = tokens.shape
    heads, kv_heads = spec.n_heads, spec.kv_heads
    head_dim = spec.d_model // heads
    eps = spec.norm_eps
    start = cache.length if cache is not None else 0
    if positions is not None:
        if length != 1 or key_mask is None or cache is None:
            raise ValueError("per-row positions decode one token per row, with a cache and mask")
        if int(positions.max()) >= spec.context_length:
            raise ValueError(f"a position exceeds the context of {spec.context_length}")
        # [B, 1, 1, head_dim]: broadcast over heads and the single query
        cos = base.cos[positions][:, None, None, :]
        sin = base.sin[positions][:, None, None, :]
    else:
        if start + length > spec.context_length:
            raise ValueError(
                f"{start + length} positions exceed the context of {spec.context_length}"
            )
        cos = base.cos[start : start + length]
        sin = base.sin[start : start + length]
    x = F.embedding(tokens, base.embed)
    for row, column, features in images:
        # the embedding table is frozen, so writing into its output needs no autograd care
        x[row, column : column + features.shape[0]] = features @ base.vision.T
    for i, layer in enumerate(base.layers):
        h = _rms_norm(x, layer["attn_norm"], eps)
        q, k, v = (
            _linear(h, base, adapter, f"{i}.{p}").view(batch, length, n, head_dim).transpose(1, 2)
            for p, n in (("q", heads), ("k", kv_heads), ("v", kv_heads))
        )
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.extend(i, start, k, v)
        # a query block that starts at position 0 is causal; single decode steps see everything
        causal = start == 0 and length > 1
        folded = kv_heads != heads and length == 1
        if folded:
            # grouped-query decoding: each kv head's queries become rows of one query block
            # that reads its keys and values in place. Repeating them per query head copied
            # the whole cache in every layer of every step (SmolLM2, 8 rows of 600 positions:
            # 4.8 ms of a layer's attention against 0.6)
            q = q.reshape(batch, kv_heads, heads // kv_heads, head_dim)
        elif kv_heads != heads:  # a block of positions: one copy serves all of them
            k = k.repeat_interleave(heads // kv_heads, dim=1)
            v = v.repeat_interleave(heads // kv_heads, dim=1)
        if key_mask is not None:
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        elif start > 0 and length > 1:
            mask = torch.ones(length, start + length, dtype=torch.bool, device=x.device).tril(start)
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        if folded:
            attn = attn.reshape(batch, heads, 1, head_dim)
        attn = attn.transpose(1, 2).reshape(batch, length, spec.d_model)
        x = x + _linear(attn, base, adapter, f"{i}.o")
        h = _rms_norm(x, layer["mlp_norm"], eps)
        gated = F.silu(_linear(h, base, adapter, f"{i}.gate")) * _linear(
            h, base, adapter, f"{i}.up"
        )
        x = x + _linear(gated, base, adapter, f"{i}.down")
    if cache is not None:
        cache.length = start + length
    if logits_at is not None:
        x = x[torch.arange(batch, device=x.device), logits_at][:, None, :]
    x = _rms_norm(x, base.norm, eps)
    return _linear(x, base, adapter, "head").float()
