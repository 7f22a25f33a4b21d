"""Readable names of the training options, for selects (format_func), job titles and chart legends; the stored
values stay the ids. No streamlit or torch here, so any component can import it."""

from __future__ import annotations

from typing import Any

METHOD_LABELS = {"erm": "ERM (standard training)", "fgsm-rs": "FGSM-RS (Wong et al.)",
                 "n-fgsm": "N-FGSM (de Jorge et al.)", "pgd-at": "PGD-AT (Madry et al.)",
                 "trades": "TRADES (Zhang et al.)", "mart": "MART (Wang et al.)", "dale": "DALE (Robey et al.)",
                 "dale-kl": "DALE-KL (Robey et al.)"}
SHORT_METHOD_LABELS = {method: text.split(" (")[0] for method, text in METHOD_LABELS.items()}
ARCH_LABELS = {"smallcnn": "SmallCNN", "lenet": "LeNet", "mlp": "MLP", "patchnet": "PatchNet (two-layer)",
               "preact_resnet18": "PreAct ResNet-18", "wideresnet": "WideResNet"}
NORM_LABELS = {"linf": "ℓ∞", "l2": "ℓ2", "l2patch": "ℓ2 per patch"}
SCHEDULE_LABELS = {"constant": "Constant", "cosine": "Cosine", "onecycle": "One-cycle", "step": "Step"}
NOISE_LABELS = {"laplacian": "Laplacian", "gaussian": "Gaussian"}
WEIGHTING_LABELS = {"none": "None", "adaptive": "Adaptive", "fixed": "Fixed"}


def label(labels: dict[str, str], value: str) -> str:
    """The readable name of an option; an option without one (a plugin's) shows as it is stored."""
    return labels.get(value, value)


def plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
