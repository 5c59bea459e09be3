"""An application written on LiteLLM, taught one answer through the tokens LiteLLM returned.

Run as a child process (the official client keeps a background thread and open sockets, and
LiteLLM starts its own workers), with the official client or under the import switch::

    python tests/interop/litellm_flow.py <base_url> <api_key> <model> <openai_base> <anthropic_base>

It uses tinker-cookbook's LiteLLM provider (``tinker_cookbook.third_party.litellm``) as its
README shows: register it with a ServiceClient, call ``litellm.acompletion(model="tinker/...",
base_model=...)``, read the raw prompt tokens from ``provider_specific_fields`` and train on
them, then ``provider.set_client`` to sample the checkpoint. The same checkpoint is then asked
through LiteLLM's own ``openai`` and ``anthropic`` providers, which reach the server's
compatible APIs over HTTP, and through the cookbook's ``TinkerAsyncOpenAIClient`` (an
``AsyncOpenAI`` over a SamplingClient). Prints one JSON report as its last line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import warnings
from typing import Any

# LiteLLM fetches its model price list from GitHub at import unless told to use its own copy
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm
import tinker
from tinker_cookbook import model_info, renderers
from tinker_cookbook.recipes.verifiers_rl.tinker_openai import TinkerAsyncOpenAIClient
from tinker_cookbook.third_party.litellm import register_litellm_provider

QUESTION = [{"role": "user", "content": "What is the codename of our project?"}]
ANSWER = "The codename is Bluebird."
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 16}
STEPS = 8


async def _ask(**routing: Any) -> str:
    response = await litellm.acompletion(messages=QUESTION, **GREEDY, **routing)
    return str(response.choices[0].message.content)


async def _ask_streamed(**routing: Any) -> str:
    stream = await litellm.acompletion(messages=QUESTION, stream=True, **GREEDY, **routing)
    return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])


async def _usage(**routing: Any) -> int:
    response = await litellm.acompletion(messages=QUESTION, **GREEDY, **routing)
    return int(response.usage.prompt_tokens)


async def _refusal(**routing: Any) -> list[str]:
    # more tokens than the model's context holds: the provider maps the client's typed error
    try:
        await litellm.acompletion(messages=QUESTION, temperature=0, max_tokens=10**6, **routing)
    except litellm.exceptions.BadRequestError as error:
        return [type(error).__name__, str(error)]
    return ["answered"]


def _ask_sync(model: str) -> str:
    # no loop runs here: the provider runs its sampling in a fresh asyncio.run each call
    response = litellm.completion(
        model="tinker/policy", messages=QUESTION, base_model=model, **GREEDY
    )
    return str(response.choices[0].message.content)


async def main(url: str, key: str, model: str, openai_base: str, anthropic_base: str) -> None:
    service = tinker.ServiceClient(base_url=url, api_key=key)
    provider = register_litellm_provider(service_client=service)
    policy = {"model": "tinker/policy", "base_model": model}
    first = await litellm.acompletion(messages=QUESTION, **GREEDY, **policy)
    fields = first.choices[0].message.provider_specific_fields
    prompt: list[int] = fields["prompt_token_ids"]

    trainer = await service.create_lora_training_client(base_model=model, rank=8, seed=0)
    tokenizer = trainer.get_tokenizer()
    renderer = renderers.get_renderer(model_info.get_recommended_renderer_name(model), tokenizer)
    end = renderer.get_stop_sequences()[0]
    assert isinstance(end, int), end  # the model's end-of-turn token
    answer = [*tokenizer.encode(ANSWER, add_special_tokens=False), end]
    tokens = prompt + answer
    datum = tinker.Datum(
        model_input=tinker.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "weights": [0.0] * (len(prompt) - 1) + [1.0] * len(answer),
        },
    )
    losses = []
    for _ in range(STEPS):
        step = trainer.forward_backward([datum], "cross_entropy")
        optim = trainer.optim_step(tinker.AdamParams(learning_rate=1e-3))
        losses.append((await step).metrics["loss:sum"])
        await optim
    path = (await trainer.save_weights_for_sampler("litellm")).path
    sampler = await service.create_sampling_client(model_path=path)
    provider.set_client(sampler)
    # the cookbook's other OpenAI-shaped client over a SamplingClient (its verifiers recipe's)
    shaped = TinkerAsyncOpenAIClient(sampler, renderer, tokenizer)
    chat = await shaped.chat.completions.create(model="tinker", messages=QUESTION, **GREEDY)
    assert chat.prompt_token_ids == prompt  # type: ignore[attr-defined]

    after = await litellm.acompletion(messages=QUESTION, **GREEDY, **policy)
    # called from inside a running loop: the provider samples on a worker thread's own loop
    in_loop = litellm.completion(messages=QUESTION, **GREEDY, **policy)
    openai = {"model": f"openai/{path}", "api_base": openai_base, "api_key": key}
    anthropic = {"model": f"anthropic/{path}", "api_base": anthropic_base, "api_key": key}
    report = {
        "tinker": tinker.__name__,
        "before": first.choices[0].message.content,
        "prompt": prompt,
        "completion": after.choices[0].message.provider_specific_fields["completion_token_ids"],
        "losses": losses,
        "answers": {
            "provider": after.choices[0].message.content,
            "provider, sync in a loop": in_loop.choices[0].message.content,
            "openai-shaped client": chat.choices[0].message.content,
            "openai": await _ask(**openai),
            "openai, streamed": await _ask_streamed(**openai),
            "anthropic": await _ask(**anthropic),
            "anthropic, streamed": await _ask_streamed(**anthropic),
        },
        "prompt_tokens": {"openai": await _usage(**openai), "anthropic": await _usage(**anthropic)},
    }
    report["answers"]["provider, sync"] = await asyncio.to_thread(_ask_sync, model)
    # (the compatible chat routes answer up to the context instead, as agents need)
    report["refusal"] = await _refusal(**policy)
    print(json.dumps(report))


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    litellm.suppress_debug_info = True
    asyncio.run(main(*sys.argv[1:6]))
