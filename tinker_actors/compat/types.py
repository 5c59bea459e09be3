"""``tinker.types`` of the official SDK 0.38: every name, backed by :mod:`tinker_actors.types`.

The data types are tinker_actors' own msgspec Structs; the ones 0.38 code relies on behave as
0.38's do (keyword construction, ``ModelInput.from_ints`` / ``to_ints`` / ``length``,
``TensorData.from_numpy`` / ``from_torch``, equality, pickling). Under the import switch the
official submodules (``tinker.types.tensor_data``, ``tinker.types.datum``...) resolve here too.
"""

from __future__ import annotations

import sys

from tinker_actors.types import *  # noqa: F403
from tinker_actors.types import __all__ as _names

# A package path (empty): under the import switch, submodule names such as
# tinker.types.tensor_data resolve to this module (see tinker_actors.compat._switch).
__path__: list[str] = []

__all__ = list(_names)

# 0.38's own modules in tinker.types, each read as an attribute once tinker.types is imported
# (``tinker.types.tensor_data.TensorData``): here every one of them is this module.
_SUBMODULES = frozenset(
    [
        "audit_log_entry",
        "audit_log_response",
        "auth_token_response",
        "billing_usage_request",
        "billing_usage_response",
        "checkpoint",
        "checkpoints_list_response",
        "client_config_request",
        "client_config_response",
        "client_dynamic_config_response",
        "copy_weights_request",
        "copy_weights_response",
        "create_custom_loss_request",
        "create_custom_loss_response",
        "create_model_request",
        "create_model_response",
        "create_sampling_session_request",
        "create_sampling_session_response",
        "create_session_request",
        "create_session_response",
        "current_checkpoint_storage_usage_request",
        "current_checkpoint_storage_usage_response",
        "cursor",
        "custom_loss_graph",
        "custom_loss_input",
        "datum",
        "dmel_chunk",
        "encoded_text_chunk",
        "event_type",
        "external_weights_urls_response",
        "forward_backward_input",
        "forward_backward_output",
        "forward_backward_request",
        "forward_request",
        "future_completion",
        "future_retrieve_request",
        "future_retrieve_response",
        "futures_retrieve_request",
        "futures_retrieve_response",
        "generic_event",
        "get_info_request",
        "get_info_response",
        "get_sampler_response",
        "get_server_capabilities_response",
        "get_session_response",
        "health_response",
        "image_asset_pointer_chunk",
        "image_chunk",
        "join_sampling_session_request",
        "join_sampling_session_response",
        "list_sessions_response",
        "load_weights_request",
        "load_weights_response",
        "lora_config",
        "loss_fn_inputs",
        "loss_fn_output",
        "loss_fn_type",
        "model_id",
        "model_input",
        "model_input_chunk",
        "optim_step_request",
        "optim_step_response",
        "optimizer",
        "prompt_alt_tokens",
        "provenance_spans",
        "request_error_category",
        "request_failed_response",
        "request_id",
        "sample_request",
        "sample_response",
        "sampled_sequence",
        "sampling_client_kind",
        "sampling_params",
        "save_weights_external_request",
        "save_weights_external_response",
        "save_weights_for_sampler_request",
        "save_weights_for_sampler_response",
        "save_weights_request",
        "save_weights_response",
        "search_owner",
        "session_end_event",
        "session_heartbeat_request",
        "session_heartbeat_response",
        "session_search_cursor",
        "session_search_request",
        "session_search_response",
        "session_start_event",
        "session_status",
        "session_status_query",
        "session_summary",
        "severity",
        "shared",
        "stop_reason",
        "telemetry_batch",
        "telemetry_event",
        "telemetry_response",
        "telemetry_send_request",
        "tensor_data",
        "tensor_dtype",
        "topk_logprobs",
        "training_run",
        "training_runs_response",
        "try_again_response",
        "unhandled_exception_event",
        "unload_model_request",
        "unload_model_response",
        "weights_info_response",
        "whoami_response",
    ]
)


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return sys.modules[__name__]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
