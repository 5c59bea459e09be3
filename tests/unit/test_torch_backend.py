"""The torch backend on its own: model, losses, optimizer, checkpoints and sampling.

Each property is checked against an independent computation: the losses against the
documented formulas evaluated by hand, AdamW against ``torch.optim.AdamW`` on the same
gradients, accumulated gradients against one pass over the concatenated batch, sampled
logprobs against a forward pass on the sampled tokens.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

import torch

from tinker_actors.local._backend import BackendInputError, SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.local._torch_losses import LossConfig, elementwise_loss, parse_loss_config
from tinker_actors.local._torch_model import (
    Adapter,
    AdapterShape,
    adapted_names,
    build_base,
    forward,
)
from tinker_actors.local._torch_sampling import stop_rule
from tinker_actors.types import (
    AdamParams,
    Datum,
    LoraConfig,
    ModelInput,
    SampleResponse,
    SamplingParams,
    TensorData,
)

TINY = lookup_model("local/tiny")


def letters(ids: list[int]) -> str:
    """A stand-in tokenizer: token id -> one letter."""
    return "".join(chr(ord("a") + i % 26) for i in ids)


#: ``cuda`` runs these checks on a GPU (set where one is lent); the CPU otherwise
DEVICE = os.environ.get("TINKER_ACTORS_TEST_DEVICE", "cpu")


def backend() -> TorchBackend:
    return TorchBackend(device=DEVICE, tokenizer_loader=lambda spec: letters, seed=0)


def ce_datum(tokens: list[int], weights: list[float] | None = None) -> Datum:
    n = len(tokens) - 1
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(np.asarray(tokens[1:], dtype=np.int64)),
            "weights": TensorData.from_numpy(
                np.asarray(weights if weights is not None else [1.0] * n, dtype=np.float32)
            ),
        },
    )


def batch(seed: int, n: int = 3, length: int = 12) -> list[Datum]:
    rng = np.random.default_rng(seed)
    # different lengths, so padding is exercised
    return [ce_datum(rng.integers(4, 4096, length + i).tolist()) for i in range(n)]


def job(prompt: list[int], **kwargs: Any) -> SampleJob:
    params = kwargs.pop("params", SamplingParams(max_tokens=8, temperature=0.0))
    defaults: dict[str, Any] = {
        "num_samples": 1,
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
        "topk_sample_logprobs": 0,
        "prompt_logprobs_last_n": None,
    }
    defaults.update(kwargs)
    return SampleJob(prompt=ModelInput.from_ints(prompt), params=params, **defaults)


async def trained(b: TorchBackend, model_id: str = "m", steps: int = 3, seed: int = 0) -> None:
    await b.create_model(model_id, TINY, LoraConfig(rank=4, seed=seed))
    for step in range(steps):
        await b.forward_backward(model_id, batch(step), "cross_entropy", {}, forward_only=False)
        await b.optim_step(model_id, AdamParams(learning_rate=1e-2))


def tokens_of(response: SampleResponse) -> list[list[int]]:
    return [s.tokens_np.tolist() for s in response.sequences]


def _bypassing_checks(value: Any, **fields: object) -> Any:
    """Set fields that the type's own validation would refuse (force_setattr skips it)."""
    for name, field_value in fields.items():
        msgspec.structs.force_setattr(value, name, field_value)
    return value


# -- model ------------------------------------------------------------------------------------


def test_base_weights_are_deterministic_per_seed() -> None:
    one, two = build_base(TINY), build_base(TINY)
    assert torch.equal(one.embed, two.embed)
    assert torch.equal(one.head, two.head)
    for a, b in zip(one.layers, two.layers, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    other = build_base(lookup_model("local/small"))
    assert other.embed.shape == (4096, 256)
    assert not torch.equal(other.embed[:, :128], one.embed)


def test_untrained_adapter_leaves_outputs_unchanged() -> None:
    base = build_base(TINY)
    adapter = Adapter.create(base, AdapterShape(rank=8), seed=3)
    tokens = torch.tensor([[5, 17, 99, 400, 4000]])
    assert torch.equal(forward(base, adapter, tokens), forward(base, None, tokens))
    # A is seeded and non-zero, B zero
    assert all(a.abs().sum() > 0 for a in adapter.a.values())
    assert all(b.abs().sum() == 0 for b in adapter.b.values())
    again = Adapter.create(base, AdapterShape(rank=8), seed=3)
    assert all(torch.equal(adapter.a[k], again.a[k]) for k in adapter.a)


def test_lora_flags_choose_the_adapted_linears() -> None:
    names = adapted_names(TINY, AdapterShape(rank=2, train_mlp=False, train_unembed=False))
    assert names == ["0.q", "0.k", "0.v", "0.o", "1.q", "1.k", "1.v", "1.o"]
    names = adapted_names(TINY, AdapterShape(rank=2, train_attn=False))
    assert names == ["0.gate", "0.up", "0.down", "1.gate", "1.up", "1.down", "head"]


def test_kv_cache_decoding_matches_a_full_forward() -> None:
    from tinker_actors.local._torch_model import KVCache

    base = build_base(TINY)
    tokens = torch.tensor([[7, 8, 9, 10, 11, 12]])
    full = forward(base, None, tokens)
    cache = KVCache()
    first = forward(base, None, tokens[:, :3], cache)
    second = forward(base, None, tokens[:, 3:5], cache)  # a block after a cached prefix
    third = forward(base, None, tokens[:, 5:], cache)
    stepped = torch.cat([first, second, third], dim=1)
    assert torch.allclose(stepped, full, atol=1e-5)


# -- losses -----------------------------------------------------------------------------------


LP = torch.tensor([-0.5, -1.0, -2.0, -0.1])
Q = torch.tensor([-0.7, -0.2, -2.0, -1.5])
A = torch.tensor([1.0, -1.0, 2.0, 0.5])
W = torch.tensor([1.0, 1.0, 0.0, 1.0])


def by_hand(fn: str, lp: float, q: float, a: float, cfg: LossConfig) -> float:
    ratio = math.exp(lp - q)
    clipped = min(max(ratio, cfg.clip_low), cfg.clip_high)
    if fn == "importance_sampling":
        return -ratio * a
    if fn == "ppo":
        return -min(ratio * a, clipped * a)
    if fn == "cispo":
        return -clipped * lp * a
    return -(lp * a - 0.5 * cfg.beta * (lp - q) ** 2)


def test_cross_entropy_is_the_weighted_negative_logprob() -> None:
    loss = elementwise_loss("cross_entropy", LP, {"weights": W}, LossConfig())
    assert loss.tolist() == pytest.approx([0.5, 1.0, 0.0, 0.1])
    assert elementwise_loss("cross_entropy", LP, {}, LossConfig()).tolist() == pytest.approx(
        [0.5, 1.0, 2.0, 0.1]
    )


@pytest.mark.parametrize("fn", ["importance_sampling", "ppo", "cispo", "dro"])
def test_rl_losses_match_the_documented_formulas(fn: str) -> None:
    cfg = parse_loss_config(fn, {})
    loss = elementwise_loss(fn, LP, {"logprobs": Q, "advantages": A}, cfg)
    expected = [by_hand(fn, *map(float, x), cfg) for x in zip(LP, Q, A, strict=True)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)
    weighted = elementwise_loss(fn, LP, {"logprobs": Q, "advantages": A, "weights": W}, cfg)
    assert weighted.tolist() == pytest.approx(
        [e * w for e, w in zip(expected, W.tolist(), strict=True)]
    )


def test_ppo_clipping_stops_the_gradient_and_cispo_does_not() -> None:
    # ratio e^1 > 1.2 with a positive advantage: PPO's clipped branch is the min, no gradient
    lp = torch.tensor([0.0], requires_grad=True)
    inputs = {"logprobs": torch.tensor([-1.0]), "advantages": torch.tensor([1.0])}
    elementwise_loss("ppo", lp, inputs, parse_loss_config("ppo", {})).sum().backward()
    assert lp.grad is not None
    assert lp.grad.item() == 0.0
    # CISPO: gradient = -clip(ratio) * A (the clipped ratio is a constant coefficient)
    lp = torch.tensor([0.0], requires_grad=True)
    cfg = parse_loss_config("cispo", {"clip_high_threshold": "2.0"})
    elementwise_loss("cispo", lp, inputs, cfg).sum().backward()
    assert lp.grad is not None
    assert lp.grad.item() == pytest.approx(-2.0)


def test_loss_config_defaults_strings_and_errors() -> None:
    assert parse_loss_config("ppo", {}) == LossConfig(clip_low=0.8, clip_high=1.2)
    assert parse_loss_config("cispo", {}) == LossConfig(clip_low=0.0, clip_high=4.0)
    assert parse_loss_config("ppo", {"clip_low_threshold": "0.5"}).clip_low == 0.5
    assert parse_loss_config("dro", {"beta": 0.3}).beta == 0.3
    with pytest.raises(BackendInputError, match="unknown keys"):
        parse_loss_config("cross_entropy", {"beta": 1.0})
    with pytest.raises(BackendInputError, match="must be a number"):
        parse_loss_config("ppo", {"clip_low_threshold": "low"})
    with pytest.raises(BackendInputError, match="must not exceed"):
        parse_loss_config("ppo", {"clip_low_threshold": 2.0})
    with pytest.raises(BackendInputError, match="does not implement"):
        parse_loss_config("custom", {})


async def test_forward_outputs_and_loss_sum() -> None:
    b = backend()
    await b.create_model("m", TINY, LoraConfig(rank=4))
    data = batch(0)
    out = await b.forward_backward("m", data, "cross_entropy", {}, forward_only=True)
    assert len(out.loss_fn_outputs) == 3
    total = 0.0
    base = build_base(TINY)
    for datum, record in zip(data, out.loss_fn_outputs, strict=True):
        lp = record["logprobs"].to_numpy()
        target = datum.loss_fn_inputs["target_tokens"].to_numpy()
        assert lp.dtype == np.float32
        assert lp.shape == target.shape
        logits = forward(base, None, torch.tensor([datum.model_input.to_ints()]))[0]
        expected = torch.log_softmax(logits, -1)[torch.arange(len(target)), target]
        assert np.allclose(lp, expected.numpy(), atol=1e-5)
        assert np.allclose(record["elementwise_loss"].to_numpy(), -lp)
        total += float(-lp.sum())
    assert out.metrics["loss:sum"] == pytest.approx(total, rel=1e-5)
    # forward-only left no gradient behind
    assert all(t.grad is None for t in b.adapter("m").parameters())


async def test_topk_targets_cross_entropy() -> None:
    b = backend()
    await b.create_model("m", TINY, LoraConfig(rank=4))
    targets = np.array([[5, 6], [7, 8], [9, 10]], dtype=np.int64)
    weights = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]], dtype=np.float32)
    datum = Datum(
        model_input=ModelInput.from_ints([4, 5, 6]),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(targets),
            "weights": TensorData.from_numpy(weights),
        },
    )
    out = await b.forward_backward("m", [datum], "cross_entropy", {}, forward_only=True)
    lp = out.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert lp.shape == (3, 2)
    assert out.metrics["loss:sum"] == pytest.approx(float(-(lp * weights).sum()), rel=1e-5)


# -- optimizer --------------------------------------------------------------------------------


async def test_optim_step_is_adamw_on_the_accumulated_gradients() -> None:
    b = backend()
    await b.create_model("m", TINY, LoraConfig(rank=4))
    params = AdamParams(learning_rate=0.01, beta1=0.8, beta2=0.9, eps=1e-8, weight_decay=0.1)
    reference: list[Any] = []
    ref_opt = None
    for step in range(2):
        await b.forward_backward("m", batch(step), "cross_entropy", {}, forward_only=False)
        live = b.adapter("m").parameters()
        if ref_opt is None:
            reference = [t.detach().clone().requires_grad_(True) for t in live]
            ref_opt = torch.optim.AdamW(
                reference, lr=0.01, betas=(0.8, 0.9), eps=1e-8, weight_decay=0.1
            )
        grads = [t.grad.clone() for t in live]
        metrics = await b.optim_step("m", params)
        for ref, grad in zip(reference, grads, strict=True):
            ref.grad = grad
        ref_opt.step()
        expected_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        assert metrics["grad_norm:mean"] == pytest.approx(float(expected_norm), rel=1e-5)
        for ref, t in zip(reference, b.adapter("m").parameters(), strict=True):
            assert torch.allclose(ref, t, atol=1e-7)
            assert t.grad is None  # cleared by the step


async def test_grad_clip_norm_clips_before_the_step() -> None:
    b = backend()
    await b.create_model("m", TINY, LoraConfig(rank=4))
    await b.forward_backward("m", batch(0), "cross_entropy", {}, forward_only=False)
    live = b.adapter("m").parameters()
    reference = [t.detach().clone().requires_grad_(True) for t in live]
    for ref, t in zip(reference, live, strict=True):
        ref.grad = t.grad.clone()
    torch.nn.utils.clip_grad_norm_(reference, 0.5)
    torch.optim.AdamW(reference, lr=0.01, betas=(0.9, 0.95), eps=1e-12, weight_decay=0.0).step()
    metrics = await b.optim_step("m", AdamParams(learning_rate=0.01, grad_clip_norm=0.5))
    assert metrics["grad_norm:mean"] > 0.5  # reported before clipping
    for ref, t in zip(reference, b.adapter("m").parameters(), strict=True):
        assert torch.allclose(ref, t, atol=1e-7)


async def test_two_forward_backwards_accumulate_like_one_concatenated_batch() -> None:
    b = backend()
    await b.create_model("split", TINY, LoraConfig(rank=4))
    await b.create_model("joined", TINY, LoraConfig(rank=4))
    one, two = batch(1), batch(2, length=7)
    await b.forward_backward("split", one, "cross_entropy", {}, forward_only=False)
    await b.forward_backward("split", two, "cross_entropy", {}, forward_only=False)
    await b.forward_backward("joined", one + two, "cross_entropy", {}, forward_only=False)
    split, joined = b.adapter("split").parameters(), b.adapter("joined").parameters()
    for s, j in zip(split, joined, strict=True):
        # float32 sums in another order: measured up to 5e-7 (CPU) and 7e-7 (CUDA, H200) of
        # the gradient's scale, so an element near zero needs an absolute margin on that scale
        scale = float(j.grad.abs().max())
        assert torch.allclose(s.grad, j.grad, rtol=1e-4, atol=1e-5 * scale)


async def test_bad_adam_params_and_unknown_model_are_user_errors() -> None:
    b = backend()
    await b.create_model("m", TINY, LoraConfig(rank=4))
    # AdamParams refuses beta1=1.5 itself; the backend checks again for other callers.
    with pytest.raises(BackendInputError, match="beta1"):
        await b.optim_step("m", _bypassing_checks(AdamParams(), beta1=1.5))
    with pytest.raises(BackendInputError, match="not loaded"):
        await b.optim_step("nope", AdamParams())
    with pytest.raises(BackendInputError, match="unknown keys"):
        await b.forward_backward("m", batch(0), "cross_entropy", {"x": 1.0}, forward_only=True)
    with pytest.raises(BackendInputError, match=r"target_tokens must be in \[0, 4096\)"):
        await b.forward_backward(
            "m", [ce_datum([5, 6, 4096])], "cross_entropy", {}, forward_only=True
        )
    with pytest.raises(BackendInputError, match="trains nothing"):
        await b.create_model(
            "x", TINY, LoraConfig(rank=4, train_attn=False, train_mlp=False, train_unembed=False)
        )


async def test_models_are_isolated() -> None:
    b = backend()
    await b.create_model("other", TINY, LoraConfig(rank=4))
    before = await b.forward_backward("other", batch(5), "cross_entropy", {}, forward_only=True)
    await trained(b, "m")
    after = await b.forward_backward("other", batch(5), "cross_entropy", {}, forward_only=True)
    assert before.metrics == after.metrics
    moved = await b.forward_backward("m", batch(5), "cross_entropy", {}, forward_only=True)
    assert moved.metrics != after.metrics


# -- checkpoints ------------------------------------------------------------------------------


async def test_save_and_load_state_round_trip(tmp_path: Path) -> None:
    b = backend()
    await trained(b, "m")
    size = await b.save_state("m", tmp_path / "ckpt", optimizer=True)
    assert size == sum(p.stat().st_size for p in (tmp_path / "ckpt").iterdir())
    await b.load_state("copy", tmp_path / "ckpt", optimizer=True, spec=TINY)
    await b.load_state("fresh", tmp_path / "ckpt", optimizer=False, spec=TINY)
    probe = batch(9)
    outs = [
        await b.forward_backward(m, probe, "cross_entropy", {}, forward_only=True)
        for m in ("m", "copy", "fresh")
    ]
    assert outs[0].metrics == outs[1].metrics == outs[2].metrics
    # one more step: with the optimizer state restored it matches the original exactly,
    # with a fresh optimizer it does not
    for m in ("m", "copy", "fresh"):
        await b.forward_backward(m, batch(10), "cross_entropy", {}, forward_only=False)
        await b.optim_step(m, AdamParams(learning_rate=1e-2))
    outs = [
        await b.forward_backward(m, probe, "cross_entropy", {}, forward_only=True)
        for m in ("m", "copy", "fresh")
    ]
    assert outs[0].metrics == outs[1].metrics
    assert outs[0].metrics != outs[2].metrics


async def test_loading_foreign_or_mismatched_checkpoints_fails_clearly(tmp_path: Path) -> None:
    b = backend()
    await trained(b, "m", steps=1)
    await b.save_state("m", tmp_path / "no-opt", optimizer=False)
    with pytest.raises(BackendInputError, match="no optimizer state"):
        await b.load_state("x", tmp_path / "no-opt", optimizer=True, spec=TINY)
    with pytest.raises(BackendInputError, match="trained on local/tiny"):
        await b.load_state(
            "x", tmp_path / "no-opt", optimizer=False, spec=lookup_model("local/small")
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendInputError, match="another backend"):
        await b.load_state("x", tmp_path / "empty", optimizer=False, spec=TINY)


async def test_an_export_is_the_adapter_under_tinkers_names(tmp_path: Path) -> None:
    # save_weights_external's layout (adapter_model.safetensors + adapter_config.json), which
    # tinker-cookbook's weights tools read; the tensors are the adapter's own, renamed
    from safetensors.torch import load_file

    b = backend()
    await trained(b, "m")
    size = await b.save_external("m", tmp_path / "x")
    files = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    assert size == sum(p.stat().st_size for p in (tmp_path / "x").iterdir())
    config = msgspec.json.decode((tmp_path / "x" / "adapter_config.json").read_bytes())
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (
        4, 32.0, "local/tiny"
    )  # fmt: skip
    assert config["target_modules"] == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "unembed_tokens", "up_proj",
        "v_proj",
    ]  # fmt: skip
    exported = load_file(str(tmp_path / "x" / "adapter_model.safetensors"))
    ours = b._model("m").adapter.state_dict()
    assert len(exported) == len(ours)
    prefix = "base_model.model.model."
    pairs = {
        "0.q.lora_A": "layers.0.self_attn.q_proj.lora_A.weight",
        "1.o.lora_B": "layers.1.self_attn.o_proj.lora_B.weight",
        "1.down.lora_A": "layers.1.mlp.down_proj.lora_A.weight",
        "0.gate.lora_B": "layers.0.mlp.gate_proj.lora_B.weight",
        "head.lora_B": "unembed_tokens.lora_B.weight",
    }
    for name, tinker_name in pairs.items():
        assert torch.equal(exported[prefix + tinker_name], ours[name]), name
    # PEFT's shapes: A is [r, in], B is [out, r]
    assert exported[prefix + "unembed_tokens.lora_A.weight"].shape[0] == 4
    assert exported[prefix + "unembed_tokens.lora_B.weight"].shape == (TINY.vocab_size, 4)


async def test_a_checkpoint_is_a_peft_adapter_and_the_first_format_still_loads(
    tmp_path: Path,
) -> None:
    import json

    from safetensors.torch import save_file

    b = backend()
    await trained(b, "m")
    state = b._model("m").adapter.state_dict()
    await b.save_state("m", tmp_path / "c", optimizer=True)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "adapter.json", "adapter_config.json", "adapter_model.safetensors", "optimizer.pt",
    ]  # fmt: skip
    header = json.loads((tmp_path / "c" / "adapter.json").read_text())
    assert (header["format"], header["tensors"]) == (2, "adapter_model.safetensors")
    # format 1, as earlier versions wrote it: the backend's own tensor names
    old = tmp_path / "old"
    old.mkdir()
    save_file(state, str(old / "adapter.safetensors"))
    (old / "adapter.json").write_text(
        json.dumps({**header, "format": 1, "tensors": "adapter.safetensors"})
    )
    (old / "optimizer.pt").write_bytes((tmp_path / "c" / "optimizer.pt").read_bytes())
    for name, directory in (("new", tmp_path / "c"), ("old", old)):
        await b.load_state(name, directory, optimizer=True, spec=TINY)
        loaded = b._model(name).adapter.state_dict()
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state), name


# -- sampling ---------------------------------------------------------------------------------


async def test_sampler_snapshot_freezes_the_weights(tmp_path: Path) -> None:
    b = backend()
    await trained(b, "m")
    await b.save_sampler("m", tmp_path / "s")
    prompt = [10, 20, 30]
    snap = await b.sample(TINY, tmp_path / "s", job(prompt))
    base = await b.sample(TINY, None, job(prompt))
    assert tokens_of(snap) != tokens_of(base)
    await b.forward_backward("m", batch(7), "cross_entropy", {}, forward_only=False)
    await b.optim_step("m", AdamParams(learning_rate=0.1))
    assert tokens_of(await b.sample(TINY, tmp_path / "s", job(prompt))) == tokens_of(snap)


async def test_greedy_seeded_and_top_k_one() -> None:
    b = backend()
    prompt = [100, 200, 300]
    greedy = await b.sample(TINY, None, job(prompt, num_samples=2))
    assert tokens_of(greedy) == tokens_of(await b.sample(TINY, None, job(prompt, num_samples=2)))
    assert tokens_of(greedy)[0] == tokens_of(greedy)[1]
    seeded = SamplingParams(max_tokens=8, seed=42, stop=[])
    first = await b.sample(TINY, None, job(prompt, num_samples=4, params=seeded))
    again = await b.sample(TINY, None, job(prompt, num_samples=4, params=seeded))
    assert tokens_of(first) == tokens_of(again)
    assert len({tuple(t) for t in tokens_of(first)}) > 1  # the samples differ from each other
    other = SamplingParams(max_tokens=8, seed=43, stop=[])
    assert tokens_of(await b.sample(TINY, None, job(prompt, num_samples=4, params=other))) != (
        tokens_of(first)
    )
    top1 = SamplingParams(max_tokens=8, seed=7, top_k=1, stop=[])
    assert tokens_of(await b.sample(TINY, None, job(prompt, params=top1))) == [tokens_of(greedy)[0]]
    tiny_p = SamplingParams(max_tokens=8, seed=7, top_p=1e-6, stop=[])
    assert tokens_of(await b.sample(TINY, None, job(prompt, params=tiny_p))) == [
        tokens_of(greedy)[0]
    ]


async def test_max_tokens_stop_tokens_and_stop_strings() -> None:
    b = backend()
    prompt = [100, 200, 300]
    free = await b.sample(
        TINY, None, job(prompt, params=SamplingParams(max_tokens=8, temperature=0, stop=[]))
    )
    run = free.sequences[0].tokens_np.tolist()
    assert len(run) == 8
    assert free.sequences[0].stop_reason == "length"
    # stop at the third greedy token (by id): it is included, reason "stop"
    target = run[2]
    cut = run.index(target)
    by_id = await b.sample(
        TINY, None, job(prompt, params=SamplingParams(max_tokens=8, temperature=0, stop=[target]))
    )
    assert by_id.sequences[0].tokens_np.tolist() == run[: cut + 1]
    assert by_id.sequences[0].stop_reason == "stop"
    # a stop string that the decoded text reaches at the fourth token
    text = letters(run[:4])
    needle = text[-2:]
    expected = next(i for i in range(1, 9) if needle in letters(run[:i]))
    by_text = await b.sample(
        TINY, None, job(prompt, params=SamplingParams(max_tokens=8, temperature=0, stop=[needle]))
    )
    assert by_text.sequences[0].tokens_np.tolist() == run[:expected]
    assert by_text.sequences[0].stop_reason == "stop"


def test_stop_rules() -> None:
    assert stop_rule(SamplingParams()).token_ids == {0}
    assert stop_rule(SamplingParams(stop=[])).token_ids == frozenset()
    assert stop_rule(SamplingParams(stop=[5, 6])).token_ids == {5, 6}
    rule = stop_rule(SamplingParams(stop="\n"))
    assert rule.strings == ("\n",)
    assert rule.token_ids == {0}


async def test_bad_sampling_params_are_user_errors() -> None:
    b = backend()
    # the request types refuse most bad values (NaN too); the backend checks again
    for params, match in (
        (_bypassing_checks(SamplingParams(max_tokens=4), temperature=float("nan")), "temperature"),
        (SamplingParams(max_tokens=9000), "exceeds the context"),
    ):
        with pytest.raises(BackendInputError, match=match):
            await b.sample(TINY, None, job([1, 2, 3], params=params))
    with pytest.raises(BackendInputError, match="token ids"):
        await b.sample(TINY, None, job([1, 5000]))


async def test_sample_compute_and_forward_logprobs_agree(tmp_path: Path) -> None:
    b = backend()
    await trained(b, "m")
    await b.save_sampler("m", tmp_path / "s")
    prompt = [40, 41, 42, 43]
    # at temperature 1 the sampling distribution is the model's own (other temperatures: below)
    params = SamplingParams(max_tokens=10, temperature=1.0, seed=3, stop=[])
    sampled = await b.sample(TINY, tmp_path / "s", job(prompt, num_samples=3, params=params))
    for seq in sampled.sequences:
        full = prompt + seq.tokens_np.tolist()
        out = await b.forward_backward(
            "m", [ce_datum(full)], "cross_entropy", {}, forward_only=True
        )
        fw = out.loss_fn_outputs[0]["logprobs"].to_numpy()
        assert seq.logprobs_np is not None
        assert np.abs(seq.logprobs_np - fw[-len(seq.tokens_np) :]).max() <= 1e-4
        # compute_logprobs: a one-token sample with prompt logprobs over the same tokens
        computed = await b.sample(
            TINY,
            tmp_path / "s",
            job(full, params=SamplingParams(max_tokens=1), prompt_logprobs=True),
        )
        lps = computed.prompt_logprobs_np
        assert lps is not None
        assert math.isnan(lps[0])
        assert np.abs(lps[1:] - fw).max() <= 1e-4


@pytest.mark.parametrize("temperature", [0.5, 0.8, 1.7, 0.0])
async def test_sampled_logprobs_are_the_sampling_distributions(temperature: float) -> None:
    # as Tinker's: log softmax(z / T) of the sampled token, so against the model's own
    # logprobs (compute_logprobs) lp_T(t) - lp_1(t) / T is one constant over the tokens t (the
    # check of tinker-cookbook's tests/validate_temperature_logprobs.py, on pairs); greedy
    # (temperature 0) reports the model's own
    b = backend()
    prompt = [40, 41, 42, 43]
    drawn: dict[int, float] = {}
    for seed in range(12):
        params = SamplingParams(max_tokens=1, temperature=temperature, seed=seed, stop=[])
        seq = (await b.sample(TINY, None, job(prompt, params=params))).sequences[0]
        assert seq.logprobs_np is not None
        drawn[int(seq.tokens_np[0])] = float(seq.logprobs_np[0])
    own = {}
    for token in drawn:
        scored = job([*prompt, token], params=SamplingParams(max_tokens=1), prompt_logprobs=True)
        lps = (await b.sample(TINY, None, scored)).prompt_logprobs_np
        assert lps is not None
        own[token] = float(lps[-1])
    if temperature == 0:
        assert len(drawn) == 1
        assert drawn == pytest.approx(own, abs=1e-4)
        return
    assert len(drawn) >= 3  # local/tiny's next-token distribution is wide
    offsets = [drawn[t] - own[t] / temperature for t in drawn]
    assert max(offsets) - min(offsets) <= 1e-4, (drawn, own)
    assert all(lp <= 0 for lp in drawn.values())
    if temperature != 1:
        assert drawn != pytest.approx(own, abs=1e-3)


async def test_prompt_and_sample_topk_logprobs() -> None:
    b = backend()
    prompt = [40, 41, 42, 43, 44]
    response = await b.sample(
        TINY,
        None,
        job(
            prompt,
            params=SamplingParams(max_tokens=3, seed=1, stop=[]),
            prompt_logprobs=True,
            topk_prompt_logprobs=3,
            topk_sample_logprobs=2,
            prompt_logprobs_last_n=2,
        ),
    )
    lps = response.prompt_logprobs_np
    assert lps is not None
    assert np.isnan(lps[:3]).all()
    assert not np.isnan(lps[3:]).any()
    topk = response.topk_prompt_logprobs_np
    assert topk is not None
    assert topk.token_ids.shape == (5, 3)
    assert (topk.logprobs[:3] == -99999.0).all()
    # scored rows are sorted and their best is at least the actual token's logprob
    assert (np.diff(topk.logprobs[3:], axis=1) <= 0).all()
    assert (topk.logprobs[3:, 0] >= lps[3:] - 1e-6).all()
    seq = response.sequences[0]
    assert seq.topk_logprobs_np is not None
    assert seq.topk_logprobs_np.token_ids.shape == (3, 2)
    assert seq.logprobs_np is not None
    assert (seq.topk_logprobs_np.logprobs[:, 0] >= seq.logprobs_np - 1e-6).all()


async def test_files_serve_a_new_backend_after_a_restart(tmp_path: Path) -> None:
    first = backend()
    await trained(first, "m")
    await first.save_state("m", tmp_path / "state", optimizer=True)
    await first.save_sampler("m", tmp_path / "sampler")
    probe = job([9, 8, 7], params=SamplingParams(max_tokens=6, seed=11, stop=[]), num_samples=2)
    expected = await first.sample(TINY, tmp_path / "sampler", probe)
    restarted = backend()  # nothing in memory: only the files
    again = await restarted.sample(TINY, tmp_path / "sampler", probe)
    assert tokens_of(again) == tokens_of(expected)
    await restarted.load_state("m", tmp_path / "state", optimizer=True, spec=TINY)
    before = await first.forward_backward("m", batch(3), "cross_entropy", {}, forward_only=True)
    after = await restarted.forward_backward("m", batch(3), "cross_entropy", {}, forward_only=True)
    assert before.metrics == after.metrics
