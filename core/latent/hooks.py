"""Features at a named layer, taken by forward hooks, for every architecture.

``penultimate`` is the input of the model's last linear layer (the features its classifier reads). Any other name
is a submodule path (``body.2``, ``layer3``…); :func:`layer_names` lists the ones worth hooking: the model's
``feature_layers`` and their direct children. Example::

    feats = extract_features(model, x, "penultimate")        # N×128 for the digits SmallCNN
    feats = extract_features(model, x, "body.4")             # N×(64·4·4), flattened
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.errors import ConfigError

PENULTIMATE = "penultimate"


def _classifier(model: nn.Module) -> str | None:
    """Name of the last nn.Linear in registration order (the head whose input is the penultimate layer)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None


def layer_names(model: nn.Module) -> list[str]:
    """Layers one can pick: ``penultimate`` (when the model ends in a linear head), then each of the model's
    ``feature_layers`` followed by its direct children."""
    names = [PENULTIMATE] if _classifier(model) is not None else []
    for top in getattr(model, "feature_layers", ()):
        module = model.get_submodule(top)
        names.append(top)
        names += [f"{top}.{child}" for child, _ in module.named_children()]
    return list(dict.fromkeys(names))


def default_layer(model: nn.Module) -> str:
    names = layer_names(model)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no layer to take features from")
    return names[0]


def describe_layer(model: nn.Module, layer: str) -> str:
    """A readable label, e.g. ``penultimate (input of head)`` or ``body.2 · Conv2d``."""
    if layer == PENULTIMATE:
        return f"penultimate (input of {_classifier(model)})"
    return f"{layer} · {type(_module(model, layer)).__name__}"


def _module(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise ConfigError(f"the model has no layer {layer!r}; choose from {', '.join(layer_names(model))}") from None


def hook_point(model: nn.Module, layer: str) -> tuple[nn.Module, bool]:
    """(module, pre): where ``layer``'s values appear — the input of the linear head for ``penultimate`` (a
    forward pre-hook), else the named submodule's output (a forward hook)."""
    if layer == PENULTIMATE:
        head = _classifier(model)
        if head is None:
            raise ConfigError(f"{type(model).__name__} has no linear head, so no penultimate layer; choose from "
                              f"{', '.join(layer_names(model)) or 'none'}")
        return model.get_submodule(head), True
    return _module(model, layer), False


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, layer: str = PENULTIMATE, *, batch_size: int = 1024,
                     spatial_mean: bool = False, keep_shape: bool = False) -> torch.Tensor:
    """N×D float32 CPU features of ``x`` at ``layer`` (flattened from dim 1; with ``spatial_mean``, convolution
    channels averaged over space instead; with ``keep_shape``, the layer's own N×… shape), computed in eval mode in
    batches on the model's device. The model's mode is restored and its hooks removed, whatever happens."""
    target, pre = hook_point(model, layer)
    captured: list[torch.Tensor] = []

    def keep(value: Any) -> None:
        value = value[0] if isinstance(value, (tuple, list)) else value
        if spatial_mean and value.dim() > 2:
            value = value.mean(dim=tuple(range(2, value.dim())))
        value = value.detach() if keep_shape else value.detach().flatten(1)
        captured.append(value.float().cpu())

    handle = (target.register_forward_pre_hook(lambda _m, args: keep(args)) if pre
              else target.register_forward_hook(lambda _m, _args, out: keep(out)))
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size].to(device))
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        return torch.empty(0, 0)
    return torch.cat(captured)
