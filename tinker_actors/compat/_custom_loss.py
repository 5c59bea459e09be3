"""``ServiceClient.create_custom_loss`` and ``LossHandle``: per-datum losses traced once.

A per-datum loss takes ``logprobs`` (the datum's target logprobs) and then one tensor per
``loss_fn_inputs`` key it reads, and returns ``(loss, metrics)``: a scalar tensor and a dict
of scalar tensors keyed ``custom/<name>:sum`` or ``custom/<name>:mean``::

    def neg_ll(logprobs, weights):
        loss = -(logprobs * weights).sum()
        return loss, {"custom/neg_ll:sum": loss}

    handle = service.create_custom_loss(neg_ll, {"logprobs": 1, "weights": 1}).result()
    training.forward_backward_custom(data, handle).result()

As in 0.38 the function is traced with ``torch.fx`` when the handle is created and the trace
is checked (only torch, math and operator functions, tensor methods that stay in torch, no
``nn`` modules, no captured tensors, the declared inputs and ranks); the traced graph is what
runs. It runs on this machine, through the same two-pass ``forward_backward_custom`` as a
plain callable (the losses of the data summed; ``:mean`` metrics averaged over data). Uploading
the graph for server-side execution is not done: no server this SDK knows runs them.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import inspect
import re
from typing import TYPE_CHECKING, Any, Final

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import CustomLossInput

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tinker_actors.types import Datum

__all__ = ["LossHandle", "trace_loss"]

_ALLOWED_MODULES: Final = frozenset({"torch", "math", "operator", "_operator"})
_METRIC: Final = re.compile(r"custom/[a-z0-9_./-]{1,64}:(sum|mean)")
_PARAM: Final = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_MAX_PARAMS: Final = 16
_LEAVES_TORCH: Final = frozenset({"item", "numpy", "tolist", "backward"})


@dataclasses.dataclass(frozen=True)
class LossHandle:
    """A traced per-datum loss from ``ServiceClient.create_custom_loss``."""

    name: str
    inputs: tuple[CustomLossInput, ...]
    """``logprobs`` first, then the ``loss_fn_inputs`` keys read, each with its rank."""
    session_id: str
    """The session that created it; only clients of that session may use it."""
    graph: Any = dataclasses.field(repr=False, compare=False)
    """The ``torch.fx.GraphModule`` that runs."""
    loss_id: str | None = None
    """The server's id for an uploaded loss (always None: it runs client-side)."""

    @property
    def key(self) -> str:
        """A digest of the traced code and inputs (the same loss traced twice matches)."""
        digest = hashlib.sha256(self.graph.code.encode())
        digest.update(repr(self.inputs).encode())
        return digest.hexdigest()

    @property
    def input_names(self) -> tuple[str, ...]:
        """The ``loss_fn_inputs`` keys the loss reads, in parameter order."""
        return tuple(item.name for item in self.inputs[1:])

    def as_batch_loss(
        self, session_id: str | None
    ) -> Callable[[list[Datum], list[Any]], tuple[Any, dict[str, float]]]:
        """Return the ``(data, logprobs_list) -> (loss, metrics)`` form the client runs.

        Raises:
            InvalidInputError: the handle belongs to another session.
        """
        if session_id is not None and session_id != self.session_id:
            raise InvalidInputError(
                f"loss {self.name!r} was created in session {self.session_id}; create it again "
                "with this client's ServiceClient"
            )
        return self._run

    def _run(self, data: list[Datum], logprobs_list: list[Any]) -> tuple[Any, dict[str, float]]:
        import torch

        self._check(data)
        total: Any = None
        sums: dict[str, float] = {}
        for datum, logprobs in zip(data, logprobs_list, strict=True):
            args = [datum.loss_fn_inputs[name].to_torch() for name in self.input_names]
            loss, metrics = self.graph(logprobs, *args)
            if loss.ndim != 0:
                raise InvalidInputError(
                    f"loss {self.name!r} must return a scalar, got shape {tuple(loss.shape)}"
                )
            total = loss if total is None else total + loss
            for key, value in metrics.items():
                number = value.detach().item() if isinstance(value, torch.Tensor) else value
                sums[key] = sums.get(key, 0.0) + float(number)
        count = max(len(data), 1)
        return total, {k: v / count if k.endswith(":mean") else v for k, v in sums.items()}

    def _check(self, data: list[Datum]) -> None:
        logprobs, *rest = self.inputs
        for index, datum in enumerate(data):
            for item, key in [(logprobs, "target_tokens"), *((x, x.name) for x in rest)]:
                tensor = datum.loss_fn_inputs.get(key)
                if tensor is None:
                    raise InvalidInputError(
                        f"data[{index}] has no loss_fn_inputs[{key!r}], which loss "
                        f"{self.name!r} reads"
                    )
                shape = tensor.shape
                rank = 1 if shape is None else len(shape)
                if rank != item.rank:
                    raise InvalidInputError(
                        f"data[{index}].loss_fn_inputs[{key!r}] has rank {rank}; loss "
                        f"{self.name!r} declared {item.name} with rank {item.rank}"
                    )


def trace_loss(
    fn: Callable[..., Any], input_ranks: Mapping[str, int], session_id: str
) -> LossHandle:
    """Trace and check ``fn`` (see the module doc) into a :class:`LossHandle`.

    Raises:
        InvalidInputError: the function's parameters, ranks, calls or outputs break a rule.
        ImportError: torch is not installed.
    """
    try:
        import torch.fx
    except ImportError as exc:
        raise ImportError("create_custom_loss needs torch: pip install torch") from exc
    name = getattr(fn, "__name__", type(fn).__name__)
    inputs = _inputs(name, fn, input_ranks)
    try:
        graph = torch.fx.symbolic_trace(fn)
    except Exception as exc:
        raise InvalidInputError(
            f"create_custom_loss: {name} cannot be traced by torch.fx ({exc}); a custom loss "
            "may not branch on tensor values or call libraries other than torch and math"
        ) from exc
    _check_graph(name, graph)
    return LossHandle(name=name, inputs=inputs, session_id=session_id, graph=graph)


def _inputs(
    name: str, fn: Callable[..., Any], input_ranks: Mapping[str, int]
) -> tuple[CustomLossInput, ...]:
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "logprobs":
        raise InvalidInputError(
            f"create_custom_loss: {name} must take logprobs first, then the loss_fn_inputs it "
            "reads, e.g. def loss(logprobs, advantages)"
        )
    if len(params) > _MAX_PARAMS:
        raise InvalidInputError(
            f"create_custom_loss: {name} takes {len(params)} parameters; at most {_MAX_PARAMS}"
        )
    for param in params:
        if not _PARAM.fullmatch(param.name):
            raise InvalidInputError(
                f"create_custom_loss: parameter {param.name!r} of {name} must be lowercase "
                "letters, digits and underscores"
            )
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise InvalidInputError(
                f"create_custom_loss: parameter {param.name!r} of {name} must be positional "
                "(no *args, **kwargs or keyword-only parameters)"
            )
        if param.default is not param.empty:
            raise InvalidInputError(
                f"create_custom_loss: parameter {param.name!r} of {name} has a default; each "
                "names a required loss_fn_inputs key"
            )
    names = [param.name for param in params]
    if not hasattr(input_ranks, "keys") or set(input_ranks) != set(names):
        raise InvalidInputError(
            f"create_custom_loss: input_ranks must give a rank for each parameter of {name} "
            f"({', '.join(names)})"
        )
    for key in names:
        rank = input_ranks[key]
        if rank not in (0, 1, 2) or isinstance(rank, bool):
            raise InvalidInputError(f"create_custom_loss: rank of {key} must be 0, 1 or 2")
    if input_ranks["logprobs"] == 0:
        raise InvalidInputError("create_custom_loss: logprobs has rank 1 ([T]) or 2 ([T, K])")
    return tuple(CustomLossInput(name=key, rank=input_ranks[key]) for key in names)  # type: ignore[arg-type]


def _check_graph(name: str, graph: Any) -> None:
    import torch

    for node in graph.graph.nodes:
        if node.op == "call_function":
            module = (getattr(node.target, "__module__", None) or "").split(".")[0]
            if node.target is not builtins.getattr and module not in _ALLOWED_MODULES:
                raise InvalidInputError(
                    f"create_custom_loss: {name} calls "
                    f"{getattr(node.target, '__qualname__', node.target)!r} from "
                    f"{module or 'an unknown module'!r}; only torch and math are allowed"
                )
        elif node.op == "call_method":
            if not hasattr(torch.Tensor, node.target) or node.target in _LEAVES_TORCH:
                raise InvalidInputError(
                    f"create_custom_loss: {name} calls .{node.target}(); only tensor methods "
                    "that stay in torch are allowed (return the loss; backward runs for you)"
                )
        elif node.op == "call_module":
            raise InvalidInputError(
                f"create_custom_loss: {name} calls module {node.target!r}; use torch.nn."
                "functional instead of torch.nn modules"
            )
        elif node.op == "get_attr":
            raise InvalidInputError(
                f"create_custom_loss: {name} captures the tensor {node.target!r}; read only "
                "logprobs and the loss_fn_inputs it names"
            )
        elif node.op == "output":
            _check_output(name, node.args[0])


def _check_output(name: str, output: Any) -> None:
    import torch.fx

    if not (isinstance(output, tuple | list) and len(output) == 2):
        raise InvalidInputError(f"create_custom_loss: {name} must return (loss, metrics)")
    loss, metrics = output
    if not isinstance(loss, torch.fx.Node):
        raise InvalidInputError(f"create_custom_loss: {name} must return its loss as a tensor")
    if not isinstance(metrics, dict):
        raise InvalidInputError(f"create_custom_loss: {name} must return its metrics as a dict")
    for key, value in metrics.items():
        if not (isinstance(key, str) and _METRIC.fullmatch(key)):
            raise InvalidInputError(
                f"create_custom_loss: metric {key!r} of {name} must be named "
                "custom/<name>:sum or custom/<name>:mean in lowercase"
            )
        if not isinstance(value, torch.fx.Node):
            raise InvalidInputError(
                f"create_custom_loss: metric {key!r} of {name} must be a tensor"
            )
