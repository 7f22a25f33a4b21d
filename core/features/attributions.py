"""Attributions with captum, and how they change under attack.

Methods (``METHODS``): Saliency (|∇x|), Integrated Gradients (from a black baseline), SmoothGrad (NoiseTunnel over
Saliency), Input×Gradient, GradientSHAP (baselines: black and white images), Grad-CAM (last convolution, upsampled
to the input). Captum draws its noise from torch's (and numpy's) global generators: every call seeds them inside
``fork_rng`` and restores numpy's state, so results are reproducible and the caller's RNG is left alone. The
model runs in eval mode and its mode is restored. Measures: Spearman rank correlation and top-k overlap of
|attribution| between two maps (clean vs adversarial), the share of attribution energy in low DCT frequencies, and
the share of |attribution| on the image's strokes (bright pixels). Example::

    maps = attribute(model, x, y, "integrated_gradients")          # same shape as x
    rho = rank_correlation(maps, attribute(model, x_adv, y, "integrated_gradients"))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError

METHODS = ("saliency", "integrated_gradients", "smoothgrad", "input_x_gradient", "gradient_shap", "gradcam")
LABELS = {"saliency": "Saliency", "integrated_gradients": "Integrated Gradients", "smoothgrad": "SmoothGrad",
          "input_x_gradient": "Input × Gradient", "gradient_shap": "GradientSHAP", "gradcam": "Grad-CAM"}


def last_conv(model: nn.Module) -> nn.Module | None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def _attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, n_steps: int,
               samples: int) -> torch.Tensor:
    import captum.attr as ca

    if method == "saliency":
        return ca.Saliency(model).attribute(x, target=target, abs=False)
    if method == "integrated_gradients":
        return ca.IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                       n_steps=n_steps)
    if method == "smoothgrad":
        return ca.NoiseTunnel(ca.Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=samples,
                                                            stdevs=0.1, target=target, abs=False)
    if method == "input_x_gradient":
        return ca.InputXGradient(model).attribute(x, target=target)
    if method == "gradient_shap":
        baselines = torch.cat([torch.zeros_like(x[:1]), torch.ones_like(x[:1])])
        return ca.GradientShap(model).attribute(x, baselines=baselines, n_samples=samples, stdevs=0.05,
                                                target=target)
    layer = last_conv(model)
    if layer is None or x.dim() != 4:
        raise ConfigError("Grad-CAM needs a convolutional model and image inputs; choose another method")
    cam = ca.LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    cam = ca.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return cam.expand_as(x)


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, method: str = "saliency", *,
              n_steps: int = 32, samples: int = 16, seed: int = 0) -> torch.Tensor:
    """Attribution maps for ``x`` (N×…) toward ``target`` (class per sample), same shape as ``x``, on CPU."""
    if method not in METHODS:
        raise ConfigError(f"attribution method must be one of {', '.join(METHODS)}, got {method!r}")
    device = next(model.parameters()).device
    x = x.to(device).detach().clone().requires_grad_(True)
    target = torch.as_tensor(target, device=device).expand(len(x)) if torch.as_tensor(target).dim() == 0 \
        else torch.as_tensor(target, device=device)
    was_training = model.training
    model.eval()
    numpy_state = np.random.get_state()  # GradientSHAP picks its baselines with numpy's global generator
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            out = _attribute(model, x, target, method, n_steps, samples)
    finally:
        np.random.set_state(numpy_state)
        model.train(was_training)
    return out.detach().float().cpu()


def _flat(maps: torch.Tensor) -> torch.Tensor:
    return maps.abs().flatten(1).double()


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of |a| and |b| per sample, ties ranked by their average (NaN where a map is constant,
    e.g. an all-zero Grad-CAM: nothing to correlate)."""
    from scipy.stats import rankdata

    ra = torch.from_numpy(rankdata(_flat(a).numpy(), axis=1, method="average"))
    rb = torch.from_numpy(rankdata(_flat(b).numpy(), axis=1, method="average"))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = ra.norm(dim=1) * rb.norm(dim=1)
    return torch.where(denom > 0, (ra * rb).sum(1) / denom.clamp_min(1e-12), torch.nan).float()


def topk_overlap(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.1) -> torch.Tensor:
    """Share of the top ``fraction`` of |a|'s features that are also in |b|'s top ``fraction``, per sample (NaN
    where either map is constant: its top is arbitrary)."""
    flat_a, flat_b = _flat(a), _flat(b)
    k = max(1, int(round(fraction * flat_a.shape[1])))
    top_a = torch.zeros_like(flat_a, dtype=torch.bool).scatter_(1, flat_a.topk(k, dim=1).indices, True)
    top_b = torch.zeros_like(flat_b, dtype=torch.bool).scatter_(1, flat_b.topk(k, dim=1).indices, True)
    overlap = (top_a & top_b).sum(1).float() / k
    constant = (flat_a.amax(1) == flat_a.amin(1)) | (flat_b.amax(1) == flat_b.amin(1))
    return torch.where(constant, torch.nan, overlap)


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix (rows: frequencies)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    mat = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    mat[0] /= math.sqrt(2.0)
    return mat


def low_frequency_share(maps: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Share of the attribution's energy (squared 2-D DCT coefficients, summed over channels) at frequencies
    (u, v) with u + v < cutoff·(H + W): 1 for a smooth, blob-like map, near 0 for pixel-level noise."""
    if maps.dim() != 4:
        raise ConfigError(f"the frequency share needs N×C×H×W maps, got shape {tuple(maps.shape)}")
    h, w = maps.shape[-2:]
    coeffs = torch.einsum("uh,nchw,vw->ncuv", dct_matrix(h), maps.double(), dct_matrix(w))
    energy = (coeffs ** 2).sum(1)
    u = torch.arange(h)[:, None] + torch.arange(w)[None, :]
    low = u < cutoff * (h + w)
    return (energy[:, low].sum(1) / energy.flatten(1).sum(1).clamp_min(1e-30)).float()


def stroke_share(maps: torch.Tensor, x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Share of |attribution| (summed over channels) on the image's strokes — pixels whose channel-mean intensity
    exceeds ``threshold`` — per sample; NaN where a map is all zero or the image has no stroke pixel. Meant for
    grey images on a dark background (digits, MNIST); for colour photos "strokes" are just the bright pixels."""
    if maps.dim() != 4 or maps.shape != x.shape:
        raise ConfigError(f"the stroke share needs N×C×H×W maps shaped like the images, got {tuple(maps.shape)} "
                          f"and {tuple(x.shape)}")
    mass = maps.abs().sum(1).flatten(1).double()
    strokes = (x.detach().cpu().float().mean(1).flatten(1) > threshold)
    total = mass.sum(1)
    share = (mass * strokes).sum(1) / total.clamp_min(1e-30)
    return torch.where((total > 0) & strokes.any(1), share, torch.nan).float()


def summary(clean: torch.Tensor, adversarial: torch.Tensor, fraction: float = 0.1, *,
            x: torch.Tensor | None = None, x_adv: torch.Tensor | None = None) -> dict[str, Any]:
    """Mean change measures over a sample of clean/adversarial attribution maps (with the images: the share on
    the strokes too, each map on its own image)."""
    out = {"rank_correlation": float(rank_correlation(clean, adversarial).nanmean()),
           "topk_overlap": float(topk_overlap(clean, adversarial, fraction).nanmean())}
    if clean.dim() == 4:
        out["low_freq_clean"] = float(low_frequency_share(clean).mean())
        out["low_freq_adv"] = float(low_frequency_share(adversarial).mean())
        if x is not None and x_adv is not None:
            out["strokes_clean"] = float(stroke_share(clean, x).nanmean())
            out["strokes_adv"] = float(stroke_share(adversarial, x_adv).nanmean())
    return out
