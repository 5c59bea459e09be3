"""Regularizers composed into a custom loss: ``loss = base + sum(weight * term)``, each reported.

``forward_backward_custom`` trains on any ``loss_fn(data, logprobs_list) -> (loss, metrics)``
(:mod:`tinker_actors.custom_loss`). RL and preference losses usually add penalties to a base
loss (a KL term to a reference model, an entropy bonus, a supervised anchor), and then want to
see each term on its own: its value, what it added, and how hard it pulls. :func:`compose`
builds such a loss from parts::

    from tinker_actors.regularizers import Regularizer, compose, kl_penalty, negative_entropy

    loss_fn = compose(
        dpo_loss,                                        # any custom loss, or None
        Regularizer("kl", kl_penalty("ref_logprobs"), weight=0.05),
        Regularizer("entropy", negative_entropy(), weight=0.01),
        grad_norms=True,
    )
    output = await (await training.forward_backward_custom(data, loss_fn)).result()
    output.metrics["regularizer/kl"], output.metrics["regularizer_total"]

The composed function is an ordinary custom loss: it works with the trio SDK and with the
0.38 surface (``tinker_actors.compat``) alike. Its metrics, beside the base loss's own:

* ``base_loss``: the base loss's value (when there is one);
* ``regularizer/<name>``: a term's value, and ``regularizer/<name>/weighted`` its weight
  times that, what it added to the loss; a term's own metrics as ``regularizer/<name>/<key>``
  (these keys, and the ones below, win over a part's own metric of the same name);
* ``regularizer_total``: the sum of the weighted terms;
* with ``grad_norms=True``: ``base_loss/grad_norm``, ``regularizer/<name>/grad_norm`` (of the
  unweighted term) and ``total_grad_norm``: L2 norms of the gradient with respect to the
  logprobs the loss was given, the only differentiable inputs on the client (not the model's
  parameters). Each costs one more backward pass through the loss's own graph, which is cheap
  next to the model's passes on the server.

Invariant: the loss returned is exactly ``base + sum(weight_i * term_i)`` as one graph, so its
gradient (what the server trains on) is the sum of the parts' weighted gradients.

The built-in terms read per-token values from each datum's ``loss_fn_inputs`` (they stay on
the client: only ``target_tokens`` and ``weights`` go to the forward pass) and average over
the batch's tokens, weighted by a mask (``weights`` by default, all tokens where a datum has
none):

* :func:`kl_penalty`: KL divergence to a reference policy from the reference's logprobs of
  the same tokens (estimators k1, k2 and k3);
* :func:`negative_entropy`: the mean logprob of the targets, an estimate of the policy's
  negative entropy when the targets are its own samples (a positive weight is an entropy
  bonus);
* :func:`cross_entropy`: the mean negative logprob of the targets (a supervised anchor).

Bad specifications raise :class:`~tinker_actors.errors.InvalidInputError` when the loss is
composed; a term that returns something other than a finite scalar tensor raises it, naming
the term, when the loss runs (before the backward pass is sent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from tinker_actors.custom_loss import CustomLossFn, metric_number, torch_module
from tinker_actors.errors import InvalidInputError
from tinker_actors.types import Datum

__all__ = [
    "ComposedLoss",
    "Regularizer",
    "RegularizerFn",
    "compose",
    "cross_entropy",
    "kl_penalty",
    "negative_entropy",
]

RegularizerFn: TypeAlias = Callable[[list[Datum], list[Any]], Any]
"""``(data, logprobs_list) -> term`` or ``-> (term, metrics)``: a scalar torch tensor."""

KLEstimator: TypeAlias = Literal["k1", "k2", "k3"]
_ESTIMATORS: Final = ("k1", "k2", "k3")
_PREFIX: Final = "regularizer"


@dataclass(frozen=True, slots=True)
class Regularizer:
    """One weighted term of a composed loss.

    Args:
        name: the term's name in the metrics (``regularizer/<name>``): letters, digits,
            ``_``, ``-`` and ``.``.
        fn: ``(data, logprobs_list) -> term`` or ``(term, metrics)``, ``term`` a scalar torch
            tensor built from the logprobs.
        weight: a finite number; the term adds ``weight * term`` to the loss.
    """

    name: str
    fn: RegularizerFn
    weight: float = 1.0

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"a Regularizer's name must be a non-empty str, got {name!r}")
        if not all(c.isascii() and (c.isalnum() or c in "_-.") for c in name):
            raise InvalidInputError(
                f"Regularizer name {name!r} may hold only letters, digits, '_', '-' and '.': "
                "it becomes a metric key"
            )
        if not callable(self.fn):
            raise InvalidInputError(
                f"Regularizer {name!r}: fn must be callable as fn(data, logprobs_list), got "
                f"{type(self.fn).__name__}"
            )
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidInputError(
                f"Regularizer {name!r}: weight must be a number, got {type(weight).__name__}"
            )
        if not math.isfinite(weight):
            raise InvalidInputError(f"Regularizer {name!r}: weight must be finite, got {weight}")
        object.__setattr__(self, "weight", float(weight))


class ComposedLoss:
    """``base + sum(weight * term)`` as a custom loss; made by :func:`compose`."""

    __slots__ = ("base", "grad_norms", "regularizers")

    def __init__(
        self, base: CustomLossFn | None, regularizers: tuple[Regularizer, ...], grad_norms: bool
    ) -> None:
        self.base = base
        self.regularizers = regularizers
        self.grad_norms = grad_norms

    def __repr__(self) -> str:
        parts = [getattr(self.base, "__name__", repr(self.base))] if self.base else []
        parts += [f"{r.weight:g} * {r.name}" for r in self.regularizers]
        return f"<ComposedLoss {' + '.join(parts)}>"

    def check_data(self, data: list[Datum]) -> None:
        """Run each part's own ``check_data`` (the training client calls this before sending).

        Raises:
            InvalidInputError: a part refused the data.
        """
        for part in (self.base, *(r.fn for r in self.regularizers)):
            check = getattr(part, "check_data", None)
            if callable(check):
                check(data)

    def __call__(self, data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        torch = torch_module()
        metrics: dict[str, float] = {}
        named: list[tuple[str, Any]] = []  # (grad-norm key, unweighted term)
        total: Any = None
        if self.base is not None:
            value, number, base_metrics = _base_result(self.base(data, logprobs), torch)
            metrics.update(base_metrics)
            metrics["base_loss"] = number
            named.append(("base_loss/grad_norm", value))
            total = value.sum()
        reg_total = 0.0
        for reg in self.regularizers:
            term, value, extra = _term_result(reg.name, reg.fn(data, logprobs), torch)
            key = f"{_PREFIX}/{reg.name}"
            for extra_key, metric in extra.items():  # first: the keys below win over them
                metrics[f"{key}/{extra_key}"] = metric
            metrics[key] = value
            metrics[f"{key}/weighted"] = reg.weight * value
            reg_total += reg.weight * value
            named.append((f"{key}/grad_norm", term))
            weighted = reg.weight * term.sum()
            total = weighted if total is None else total + weighted
        metrics["regularizer_total"] = reg_total
        if self.grad_norms:
            for key, part in [*named, ("total_grad_norm", total)]:
                metrics[key] = _grad_norm(part, logprobs, torch)
        return total, metrics


def compose(
    base: CustomLossFn | None = None, *regularizers: Regularizer, grad_norms: bool = False
) -> ComposedLoss:
    """Return the custom loss ``base + sum(r.weight * r.fn)`` (see the module doc).

    Args:
        base: a custom loss ``(data, logprobs_list) -> (loss, metrics)``, or None for a loss
            made of regularizers only.
        regularizers: the weighted terms, each name once.
        grad_norms: also report each part's gradient norm with respect to the logprobs.

    Raises:
        InvalidInputError: no parts, a part that is not a custom loss or a
            :class:`Regularizer`, a name used twice, or a non-bool ``grad_norms``.
    """
    if base is not None and not callable(base):
        raise InvalidInputError(
            f"the base loss must be callable as loss_fn(data, logprobs_list), got "
            f"{type(base).__name__}"
        )
    seen: set[str] = set()
    for index, reg in enumerate(regularizers):
        if not isinstance(reg, Regularizer):
            raise InvalidInputError(
                f"regularizers[{index}] must be a Regularizer(name, fn, weight), got "
                f"{type(reg).__name__}"
            )
        if reg.name in seen:
            raise InvalidInputError(f"two regularizers are named {reg.name!r}: names must differ")
        seen.add(reg.name)
    if base is None and not regularizers:
        raise InvalidInputError("compose() needs a base loss, at least one Regularizer, or both")
    if not isinstance(grad_norms, bool):
        raise InvalidInputError(f"grad_norms must be a bool, got {grad_norms!r}")
    return ComposedLoss(base, tuple(regularizers), grad_norms)


def _scalar(what: str, value: Any, torch: Any) -> tuple[Any, float]:
    """``value`` checked as a finite scalar tensor, and its number."""
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""
        raise InvalidInputError(
            f"{what} must be a scalar torch tensor, got {type(value).__name__}{shape}"
        )
    number = float(value.detach().sum().item())
    if not math.isfinite(number):
        raise InvalidInputError(f"{what} is not finite ({number})")
    return value, number


def _numbers(what: str, metrics: object) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise InvalidInputError(f"{what}: metrics must be a dict, got {type(metrics).__name__}")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        number = metric_number(value)
        if number is None:
            raise InvalidInputError(
                f"{what}: metric {key!r} must be a number, got {type(value).__name__}"
            )
        out[str(key)] = number
    return out


def _base_result(result: object, torch: Any) -> tuple[Any, float, dict[str, float]]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise InvalidInputError(
            "the base loss must return (loss, metrics): a scalar tensor and a dict"
        )
    return *_scalar("the base loss", result[0], torch), _numbers("the base loss", result[1])


def _term_result(name: str, result: object, torch: Any) -> tuple[Any, float, dict[str, float]]:
    what = f"regularizer {name!r}"
    if isinstance(result, tuple):
        if len(result) != 2:
            raise InvalidInputError(f"{what} must return a scalar tensor or (tensor, metrics)")
        return *_scalar(what, result[0], torch), _numbers(what, result[1])
    return *_scalar(what, result, torch), {}


def _grad_norm(part: Any, logprobs: list[Any], torch: Any) -> float:
    if part is None or not part.requires_grad or not logprobs:
        return 0.0
    # retain_graph: the composed loss's own backward pass runs after these.
    grads = torch.autograd.grad(part.sum(), logprobs, retain_graph=True, allow_unused=True)
    squares = sum(float(g.detach().pow(2).sum().item()) for g in grads if g is not None)
    return math.sqrt(squares)


# -- built-in terms ------------------------------------------------------------------------------


class _TokenTerm:
    """A built-in term: a value per target token, averaged over the batch under a mask.

    ``check_data`` refuses data it could not read before anything is sent (the training client
    calls it at ``forward_backward_custom``): once the forward pass is on the server, a loss
    that raises fails its call only after the server ran the forward pass twice.
    """

    __slots__ = ("__name__", "mask", "reads")

    def __init__(self, name: str, mask: str | None, reads: tuple[str, ...] = ()) -> None:
        if mask is not None:
            _check_key("mask", mask)
        self.__name__ = name
        self.mask = mask
        self.reads = reads

    def __repr__(self) -> str:
        return f"<{self.__name__} mask={self.mask!r}>"

    def check_data(self, data: list[Datum]) -> None:
        """Refuse data without a key this term reads, or with a count that is not the targets'.

        Raises:
            InvalidInputError: naming the datum and the key.
        """
        for index, datum in enumerate(data):
            inputs = datum.loss_fn_inputs
            target = inputs.get("target_tokens")
            if target is None:
                continue  # the custom loss's own checks name it
            for key in self.reads:
                if key not in inputs:
                    raise InvalidInputError(_missing(index, key))
            checked = (*self.reads, self.mask) if self.mask is not None else self.reads
            for name in checked:
                if name in inputs and inputs[name].numel != target.numel:
                    raise InvalidInputError(
                        _miscount(index, name, inputs[name].numel, target.numel)
                    )

    def __call__(self, data: list[Datum], logprobs: list[Any]) -> Any:
        torch = torch_module()
        if len(data) != len(logprobs):
            raise InvalidInputError(f"{len(logprobs)} logprob tensors for {len(data)} datums")
        return _masked_mean(self.per_token(data, logprobs, torch), data, self.mask, torch)

    def per_token(self, data: list[Datum], logprobs: list[Any], torch: Any) -> list[Any]:
        return list(logprobs)


class _KL(_TokenTerm):
    __slots__ = ("estimator", "reference")

    def __init__(self, reference: str, estimator: str, mask: str | None) -> None:
        if estimator not in _ESTIMATORS:
            raise InvalidInputError(
                f"estimator must be one of {', '.join(_ESTIMATORS)}, got {estimator!r}"
            )
        _check_key("reference", reference)
        super().__init__(f"kl_{estimator}", mask, (reference,))
        self.reference = reference
        self.estimator = estimator

    def per_token(self, data: list[Datum], logprobs: list[Any], torch: Any) -> list[Any]:
        out = []
        for lp, ref in zip(logprobs, _per_token(data, self.reference, logprobs), strict=True):
            r = ref - lp  # log(reference / policy) at each target token
            if self.estimator == "k1":
                out.append(-r)
            elif self.estimator == "k2":
                out.append(0.5 * r * r)
            else:
                out.append(torch.expm1(r) - r)
        return out


class _Negated(_TokenTerm):
    __slots__ = ()

    def per_token(self, data: list[Datum], logprobs: list[Any], torch: Any) -> list[Any]:
        return [-lp for lp in logprobs]


def kl_penalty(
    reference: str = "ref_logprobs", *, estimator: KLEstimator = "k3", mask: str | None = "weights"
) -> RegularizerFn:
    """KL(policy || reference) at the target tokens, from the reference's logprobs of them.

    Each datum carries ``loss_fn_inputs[reference]``: the reference model's logprob of each
    target token (for example from ``compute_logprobs`` on a base-model sampler). With
    ``r = ref - logprob`` per token, the estimators are ``k1 = -r`` (unbiased, can be
    negative), ``k2 = r**2 / 2`` and ``k3 = exp(r) - 1 - r`` (unbiased and never negative), each
    exact in expectation when the targets are the policy's own samples. The term is their
    token mean over the batch, weighted by ``mask``.

    Raises:
        InvalidInputError: an unknown estimator or a bad key (now); a datum without the
            reference values, or with a different count of them (at ``forward_backward_custom``,
            before anything is sent).
    """
    return _KL(reference, estimator, mask)


def negative_entropy(*, mask: str | None = "weights") -> RegularizerFn:
    """The token mean of the targets' logprobs: minus the policy's entropy, estimated, when
    the targets are its own samples. A positive weight rewards entropy (an entropy bonus)."""
    return _TokenTerm("negative_entropy", mask)


def cross_entropy(*, mask: str | None = "weights") -> RegularizerFn:
    """The token mean of the targets' negative logprobs: a supervised anchor on the data."""
    return _Negated("cross_entropy", mask)


def _missing(index: int, key: str) -> str:
    return (
        f"data[{index}] has no loss_fn_inputs[{key!r}]: a regularizer reads it per token (it "
        "stays on the client)"
    )


def _miscount(index: int, key: str, count: int, targets: int) -> str:
    return f"data[{index}].loss_fn_inputs[{key!r}] has {count} values for {targets} target tokens"


def _per_token(data: list[Datum], key: str, like: list[Any]) -> list[Any]:
    """Each datum's ``loss_fn_inputs[key]`` as a tensor of its logprobs' dtype and shape."""
    out = []
    for index, (datum, lp) in enumerate(zip(data, like, strict=True)):
        tensor = datum.loss_fn_inputs.get(key)
        if tensor is None:
            raise InvalidInputError(_missing(index, key))
        value = tensor.to_torch().to(dtype=lp.dtype, device=lp.device)
        if value.numel() != lp.numel():
            raise InvalidInputError(_miscount(index, key, value.numel(), lp.numel()))
        out.append(value.reshape(lp.shape))
    return out


def _masked_mean(values: list[Any], data: list[Datum], mask: str | None, torch: Any) -> Any:
    """The batch's token mean of ``values``, weighted by ``mask`` where a datum has it."""
    total: Any = None
    count = 0.0
    for datum, value in zip(data, values, strict=True):
        if mask is not None and mask in datum.loss_fn_inputs:
            weight = _per_token([datum], mask, [value])[0]
            part = (value * weight).sum()
            count += float(weight.detach().sum().item())
        else:
            part = value.sum()
            count += float(value.numel())
        total = part if total is None else total + part
    if total is None:
        raise InvalidInputError("a regularizer got no data")
    # No counted token: the term is zero, still a function of the logprobs (zero gradient).
    return total / count if count > 0 else total * 0.0


def _check_key(what: str, key: object) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(
            f"{what} must name a loss_fn_inputs key (a non-empty str), got {key!r}"
        )
