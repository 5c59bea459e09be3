"""The chat template of the local BPE models' tokenizers (``tokenizer_config.json``).

User code renders prompts with ``tokenizer.apply_chat_template(messages,
add_generation_prompt=True, tokenize=True)`` on the tokenizer ``TrainingClient.get_tokenizer()``
returns (the official quickstart does; so do many training scripts). A tokenizer without a
template makes that raise. This one writes exactly what the local server's own chat APIs
render (:func:`tinker_actors.local._chat.render`): ChatML turns, ``developer`` read as
``system``, a tool's answer as a user turn inside ``<tool_response>``, an assistant's calls as
``<tool_call>`` JSON after its text, declared tools appended to the system turn (one is made if
there is none), and ``<|im_start|>assistant\\n`` as the generation prompt. Arguments such as
``enable_thinking`` are accepted and ignored: the local models do not reason.

Two differences the template cannot avoid: a call's ``arguments`` given as a JSON string are
inserted as written (the server parses and re-serialises them), and non-ASCII text inside
declared tools or call arguments is written as is (the server's JSON escapes it).
``tests/unit/test_local_chat_template.py`` checks the template against ``render``.
"""

from __future__ import annotations

import json
from typing import Final

from tinker_actors.local._chat import (
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    ROLES,
    TOOL_CLOSE,
    TOOL_OPEN,
    TOOLS_AFTER,
    TOOLS_BEFORE,
)

__all__ = ["CHAT_TEMPLATE"]


def _literal(value: str | list[str]) -> str:
    """``value`` as a Jinja literal (Jinja reads JSON's strings, escapes and lists)."""
    return json.dumps(value)


# The server's own pieces (local/_chat.py), so the template cannot drift from ``render``.
_TOOLS_BEFORE, _TOOLS_AFTER = _literal(TOOLS_BEFORE), _literal(TOOLS_AFTER)
_RESPONSE_OPEN, _RESPONSE_CLOSE = _literal(RESPONSE_OPEN), _literal(RESPONSE_CLOSE)
_CALL_OPEN, _CALL_CLOSE = _literal(TOOL_OPEN + "\n"), _literal("\n" + TOOL_CLOSE)
_ROLES = _literal(list(ROLES))


CHAT_TEMPLATE: Final = (
    "{%- set ns = namespace(tools='', system=none, rest=messages) -%}"
    "{%- if tools -%}"
    "{%- for tool in tools -%}"
    "{%- set fn = tool['function'] if tool['function'] is defined else tool -%}"
    "{%- if fn['description'] is defined and fn['description'] is not none -%}"
    "{%- set declared = {'name': fn['name'], 'description': fn['description'],"
    " 'parameters': fn['parameters']} -%}"
    "{%- else -%}"
    "{%- set declared = {'name': fn['name'], 'parameters': fn['parameters']} -%}"
    "{%- endif -%}"
    "{%- set ns.tools = ns.tools + ('\\n' if ns.tools else '')"
    " + ({'type': 'function', 'function': declared} | tojson) -%}"
    "{%- endfor -%}"
    f"{{%- set ns.tools = {_TOOLS_BEFORE} + ns.tools + {_TOOLS_AFTER} -%}}"
    "{%- if messages and messages[0]['role'] in ('system', 'developer') -%}"
    "{%- set ns.system = messages[0] -%}{%- set ns.rest = messages[1:] -%}"
    "{%- endif -%}"
    "{%- endif -%}"
    "{%- macro text(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content is iterable -%}"
    "{%- for part in content -%}"
    "{%- if part is string -%}{{- part -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- else -%}{{- raise_exception('the chat template renders text only; use the"
    " server\\'s chat API for pictures') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if tools -%}"
    "{%- set system = text(ns.system['content']) if ns.system is not none else '' -%}"
    "{{- '<|im_start|>system\\n' + ((system + '\\n\\n') if system else '') + ns.tools"
    " + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in ns.rest -%}"
    "{%- set role = 'system' if message['role'] == 'developer' else message['role'] -%}"
    f"{{%- if role not in {_ROLES} -%}}"
    "{{- raise_exception('roles are system, user, assistant and tool; got ' + role) -}}"
    "{%- endif -%}"
    "{%- set body = text(message['content']) if message['content'] is defined else '' -%}"
    "{%- if role == 'tool' -%}"
    "{{- '<|im_start|>user\\n' + "
    f"{_RESPONSE_OPEN} + body + {_RESPONSE_CLOSE}"
    " + '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + role + '\\n' + body -}}"
    "{%- if role == 'assistant' and message['tool_calls'] is defined and message['tool_calls']"
    " -%}"
    "{%- if body -%}{{- '\\n' -}}{%- endif -%}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set fn = call['function'] if call['function'] is defined else call -%}"
    "{%- set arguments = fn['arguments'] if fn['arguments'] is string"
    " else (fn['arguments'] | tojson) -%}"
    "{{- ('\\n' if not loop.first else '') + "
    f"{_CALL_OPEN}"
    " + '{\"name\": ' + (fn['name'] | tojson) + ', \"arguments\": ' + arguments + '}' + "
    f"{_CALL_CLOSE}"
    " -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
