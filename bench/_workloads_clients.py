"""The official client and tinker_actors running each workload (see bench/workloads.py)."""

from __future__ import annotations

from typing import Any

from _workloads_floor import floor_sampling, floor_training
from _workloads_inputs import KEY, SMALL, TINY, Meter, prompt, rl_arrays, sft_arrays

# -- the official client -------------------------------------------------------------------------


def run_official(w: str, s: dict[str, int], url: str) -> dict[str, Any]:
    import tinker

    types = tinker.types
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    out: dict[str, Any] = {}
    if w in ("B1", "B2", "B5", "B7", "B8"):
        sampler = service.create_sampling_client(
            base_model=SMALL if w in ("B2", "B5") else TINY
        ).result()
        if w in ("B1", "B2"):
            params = types.SamplingParams(max_tokens=s["max_tokens"])
            prompts = [types.ModelInput.from_ints(prompt(i, s["prompt"])) for i in range(s["n"])]
            with Meter(out):
                futures = [
                    sampler.sample(p, num_samples=1, sampling_params=params) for p in prompts
                ]
                assert all(len(f.result().sequences) == 1 for f in futures)
            out["ops"] = s["n"]
        elif w == "B5":
            prompts = [types.ModelInput.from_ints(prompt(i, s["tokens"])) for i in range(s["n"])]
            with Meter(out):
                futures = [sampler.compute_logprobs(p) for p in prompts]
                assert all(len(f.result()) == s["tokens"] for f in futures)
            out["ops"] = s["n"]
        elif w == "B7":
            import concurrent.futures as cf

            params = types.SamplingParams(max_tokens=s["max_tokens"])

            def trajectory(i: int) -> None:
                for t in range(s["turns"]):
                    p = types.ModelInput.from_ints(prompt(i, s["prompt"] + t * s["grow"]))
                    sampler.sample(p, num_samples=1, sampling_params=params).result()

            with Meter(out), cf.ThreadPoolExecutor(min(s["n"], 256)) as pool:
                list(pool.map(trajectory, range(s["n"])))
            out["ops"] = s["n"] * s["turns"]
        else:
            params = types.SamplingParams(max_tokens=1)
            p = types.ModelInput.from_ints([5, 6, 7, 8, 9])
            sampler.sample(p, num_samples=1, sampling_params=params).result()
            with Meter(out):
                for _ in range(s["n"]):
                    sampler.sample(p, num_samples=1, sampling_params=params).result()
            out["ops"] = s["n"]
    else:
        training = service.create_lora_training_client(base_model=SMALL, rank=8).result()
        if w in ("B3", "B3n", "B4"):
            if w == "B4":
                rows = rl_arrays(s["batch"], s["tokens"])
                data = [types.Datum(model_input=types.ModelInput.from_ints(inp.tolist()),
                                    loss_fn_inputs={k: types.TensorData.from_numpy(v) for k, v in f.items()})
                        for inp, f in rows]  # fmt: skip
                with Meter(out):
                    training.forward_backward(data, "importance_sampling").result()
                out["ops"] = 1
            else:
                data = [types.Datum(model_input=types.ModelInput.from_ints(inp.tolist()),
                                    loss_fn_inputs={"target_tokens": types.TensorData.from_numpy(tgt),
                                                    "weights": types.TensorData.from_numpy(wt)})
                        for inp, tgt, wt in sft_arrays(s["batch"], s["tokens"])]  # fmt: skip
                with Meter(out):
                    prev = None
                    for step in range(s["steps"]):
                        fb = training.forward_backward(data, "cross_entropy")
                        op = training.optim_step(types.AdamParams(learning_rate=1e-4 / (1 + step)))
                        if prev is not None:
                            prev[0].result(), prev[1].result()
                        prev = (fb, op)
                    assert prev is not None
                    prev[0].result(), prev[1].result()
                out["ops"] = 2 * s["steps"]
        else:  # B6
            rows = rl_arrays(s["datums"], s["tokens"])
            data = [types.Datum(model_input=types.ModelInput.from_ints(inp.tolist()),
                                loss_fn_inputs={k: types.TensorData.from_numpy(v) for k, v in f.items()})
                    for inp, f in rows]  # fmt: skip
            params = types.SamplingParams(max_tokens=32)
            with Meter(out):
                for _it in range(s["iters"]):
                    sampler = training.save_weights_and_get_sampling_client()
                    futures = [sampler.sample(types.ModelInput.from_ints(prompt(g, 64)),
                                              num_samples=1, sampling_params=params)
                               for g in range(s["groups"]) for _ in range(s["group"])]  # fmt: skip
                    for f in futures:
                        f.result()
                    fb = training.forward_backward(data, "importance_sampling")
                    op = training.optim_step(types.AdamParams(learning_rate=1e-5))
                    fb.result(), op.result()
            out["ops"] = s["iters"] * (s["groups"] * s["group"] + 3)
    service.close("success").result() if hasattr(service, "close") else None
    return out


# -- tinker_actors ---------------------------------------------------------------------------------


def run_ours(w: str, s: dict[str, int], url: str, floor: bool = False) -> dict[str, Any]:
    import trio

    import tinker_actors as ta
    from tinker_actors.types import (
        AdamParams,
        Datum,
        ModelInput,
        SamplingParams,
        TensorData,
    )

    out: dict[str, Any] = {}

    async def sampling(rt: Any) -> None:
        sampler = await rt.create_sampling_client(base_model=SMALL if w in ("B2", "B5") else TINY)
        if floor:
            await floor_sampling(w, s, url, sampler._sampler_id, out)
            return
        if w in ("B1", "B2", "B5"):
            if w == "B5":
                prompts = [ModelInput.from_ints(prompt(i, s["tokens"])) for i in range(s["n"])]
            else:
                prompts = [ModelInput.from_ints(prompt(i, s["prompt"])) for i in range(s["n"])]
            params = SamplingParams(max_tokens=s.get("max_tokens", 1))
            done: list[Any] = []

            async def one(p: ModelInput) -> None:
                if w == "B5":
                    done.append(await (await sampler.compute_logprobs(p)).result())
                else:
                    done.append(await (await sampler.sample(p, 1, params)).result())

            with Meter(out):
                async with trio.open_nursery() as nursery:
                    for p in prompts:
                        nursery.start_soon(one, p)
            assert len(done) == s["n"]
            out["ops"] = s["n"]
        elif w == "B7":
            params = SamplingParams(max_tokens=s["max_tokens"])

            async def trajectory(i: int) -> None:
                for t in range(s["turns"]):
                    p = ModelInput.from_ints(prompt(i, s["prompt"] + t * s["grow"]))
                    await (await sampler.sample(p, 1, params)).result()

            with Meter(out):
                async with trio.open_nursery() as nursery:
                    for i in range(s["n"]):
                        nursery.start_soon(trajectory, i)
            out["ops"] = s["n"] * s["turns"]
        else:
            params = SamplingParams(max_tokens=1)
            p = ModelInput.from_ints([5, 6, 7, 8, 9])
            await (await sampler.sample(p, 1, params)).result()
            with Meter(out):
                for _ in range(s["n"]):
                    await (await sampler.sample(p, 1, params)).result()
            out["ops"] = s["n"]

    async def training(rt: Any) -> None:
        trainer = await rt.create_lora_training_client(SMALL, rank=8)
        if w == "B6":
            rows = rl_arrays(s["datums"], s["tokens"])
            data = [Datum(model_input=ModelInput.from_ints(inp.tolist()),
                          loss_fn_inputs={k: TensorData.from_numpy(v) for k, v in f.items()})
                    for inp, f in rows]  # fmt: skip
            params = SamplingParams(max_tokens=32)
            with Meter(out):
                for _ in range(s["iters"]):
                    sampler = await trainer.save_weights_and_get_sampling_client()
                    futures = [await sampler.sample(ModelInput.from_ints(prompt(g, 64)), 1, params)
                               for g in range(s["groups"]) for _ in range(s["group"])]  # fmt: skip
                    for f in futures:
                        await f.result()
                    fb = await trainer.forward_backward(data, "importance_sampling")
                    op = await trainer.optim_step(AdamParams(learning_rate=1e-5))
                    await fb.result()
                    await op.result()
            out["ops"] = s["iters"] * (s["groups"] * s["group"] + 3)
            return
        if w == "B4":
            rows4 = rl_arrays(s["batch"], s["tokens"])
            data = [Datum(model_input=ModelInput.from_ints(inp.tolist()),
                          loss_fn_inputs={k: TensorData.from_numpy(v) for k, v in f.items()})
                    for inp, f in rows4]  # fmt: skip
            loss = "importance_sampling"
        else:
            data = [Datum(model_input=ModelInput.from_ints(inp if w == "B3n" else inp.tolist()),
                          loss_fn_inputs={"target_tokens": TensorData.from_numpy(tgt),
                                          "weights": TensorData.from_numpy(wt)})
                    for inp, tgt, wt in sft_arrays(s["batch"], s["tokens"])]  # fmt: skip
            loss = "cross_entropy"
        if floor:
            await floor_training(w, s, url, trainer.model_id, data, loss, out)
            return
        if w == "B4":
            with Meter(out):
                await (await trainer.forward_backward(data, loss)).result()
            out["ops"] = 1
            return
        with Meter(out):
            prev: tuple[Any, Any] | None = None
            for step in range(s["steps"]):
                fb = await trainer.forward_backward(data, loss)
                op = await trainer.optim_step(AdamParams(learning_rate=1e-4 / (1 + step)))
                if prev is not None:
                    await prev[0].result()
                    await prev[1].result()
                prev = (fb, op)
            assert prev is not None
            await prev[0].result()
            await prev[1].result()
        out["ops"] = 2 * s["steps"]

    async def main() -> None:
        async with ta.open(base_url=url, api_key=KEY) as rt:
            if w in ("B1", "B2", "B5", "B7", "B8"):
                await sampling(rt)
            else:
                await training(rt)

    trio.run(main)
    return out
