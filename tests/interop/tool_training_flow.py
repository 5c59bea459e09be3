"""Teach a model one tool-using exchange through the official tinker client, as a recipe would.

Run as a child process (the official client keeps a background thread and open sockets):
``python tests/interop/tool_training_flow.py <base_url> <api_key> <model> <steps>``. The two
conversations (a question answered with a ``get_weather`` call; the tool's answer answered in
words) are built by tinker-cookbook's recommended renderer for ``model`` and trained with
cross-entropy on their last assistant message; prints ``{"path", "loss"}`` as JSON, ``path``
being the sampler checkpoint.
"""

from __future__ import annotations

import json
import sys
import warnings

import tinker
from tinker_cookbook import model_info, renderers
from tinker_cookbook.renderers.base import ToolCall
from tinker_cookbook.supervised.data import conversation_to_datum

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"name": "get_weather", "description": "The weather in a city", "parameters": SCHEMA}
QUESTION = "What is the weather in Paris?"
RESULT = "sunny, 21 C"
ANSWER = "It is sunny in Paris."


def main(url: str, key: str, model: str, steps: int) -> None:
    service = tinker.ServiceClient(base_url=url, api_key=key)
    trainer = service.create_lora_training_client(base_model=model, rank=8, seed=0).result()
    name = model_info.get_recommended_renderer_name(model)
    renderer = renderers.get_renderer(name, trainer.get_tokenizer())
    arguments = json.dumps({"city": "Paris"})
    call = ToolCall(function=ToolCall.FunctionBody(name="get_weather", arguments=arguments))
    asked = [
        *renderer.create_conversation_prefix_with_tools([TOOL], ""),
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    answered = [
        *asked,
        {"role": "tool", "content": RESULT, "tool_call_id": "call_1"},
        {"role": "assistant", "content": ANSWER},
    ]
    last = renderers.TrainOnWhat.LAST_ASSISTANT_MESSAGE
    data = [conversation_to_datum(c, renderer, None, last) for c in (asked, answered)]
    loss = float("nan")
    for _ in range(steps):
        step = trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(tinker.types.AdamParams(learning_rate=1e-3)).result()
        loss = step.result().metrics["loss:sum"]
    path = trainer.save_weights_for_sampler("tools").result().path
    print(json.dumps({"path": path, "loss": loss, "renderer": name}))


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
