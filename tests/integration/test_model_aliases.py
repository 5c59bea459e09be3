"""Model aliases on the server: code naming a real model trains and samples a local one."""

from __future__ import annotations

import pytest
from test_local_server_extra import detail, open_api

from tinker_actors.local import CatalogueError, open_local_server
from tinker_actors.local._catalogue import CATALOGUE
from tinker_actors.types import (
    CreateModelRequest,
    CreateSamplingSessionRequest,
    LoraConfig,
    SaveWeightsForSamplerRequest,
)

QWEN = "Qwen/Qwen3.5-9B-Base"
ALIASES = {QWEN: "local/tiny", "meta-llama/Llama-3.2-1B": "local/small"}


async def test_capabilities_list_models_then_aliases_with_their_limits() -> None:
    async with open_api(model_aliases=ALIASES) as (_, api):
        response = await api.get("get_server_capabilities")
        models = {
            m["model_name"]: m["max_context_length"] for m in response.json()["supported_models"]
        }
    local = {name: spec.context_length for name, spec in CATALOGUE.items()}
    assert models == {**local, QWEN: 8192, "meta-llama/Llama-3.2-1B": 8192}
    assert list(models)[: len(local)] == list(local)  # models first, then aliases


async def test_a_model_created_under_an_alias_reports_the_alias() -> None:
    async with open_api(model_aliases=ALIASES) as (server, api):
        session_id = await api.session()
        request = CreateModelRequest(
            session_id=session_id,
            model_seq_id=0,
            base_model=f"{QWEN}:peft:1024",
            lora_config=LoraConfig(rank=4),
        )
        model_id = (await api.result(await api.ok("create_model", request)))["model_id"]
        info = await api.ok("get_info", {"model_id": model_id})
        assert info["model_name"] == QWEN
        assert info["model_data"]["model_name"] == QWEN
        assert server.engine.core.models[model_id].spec.name == "local/tiny"

        run = (await api.get(f"training_runs/{model_id}")).json()
        assert run["base_model"] == QWEN
        saved = SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=1)
        path = await api.save(saved, "save_weights_for_sampler")
        weights = await api.ok("weights_info", {"tinker_path": path})
        assert weights["base_model"] == QWEN

        sampler = CreateSamplingSessionRequest(
            session_id=session_id, sampling_session_seq_id=0, base_model=QWEN
        )
        sampler_id = (await api.ok("create_sampling_session", sampler))["sampling_session_id"]
        assert (await api.get(f"samplers/{sampler_id}")).json()["base_model"] == QWEN


async def test_an_unaliased_real_name_is_refused_with_the_fix() -> None:
    async with open_api() as (_, api):
        session_id = await api.session()
        request = CreateModelRequest(session_id=session_id, model_seq_id=0, base_model=QWEN)
        message = detail(await api.post("create_model", request), 400)
    assert f"--model-alias '{QWEN}=local/tiny'" in message


async def test_bad_aliases_stop_the_server_before_it_opens() -> None:
    with pytest.raises(CatalogueError, match="not a local model"):
        async with open_local_server(model_aliases={QWEN: "local/huge"}):
            raise AssertionError("opened")
