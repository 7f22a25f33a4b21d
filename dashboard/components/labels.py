"""Readable names of the training options, for selects (format_func), job titles and chart legends; the stored
values stay the ids. No streamlit or torch here, so any component can import it."""

from __future__ import annotations

import re
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


def input_scale(input_shape: Any) -> str:
    """The unit ε is given in, as every page words it: images are on the scale 0–1, toy points are not."""
    return "image scale 0–1" if len(input_shape) == 3 else "input units"


def plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def drop_shared_prefix(names: list[str], separator: str = " · ") -> tuple[str, list[str]]:
    """("digits SmallCNN", ["TRADES ε=0.1", "ERM"]) for ["digits SmallCNN · TRADES ε=0.1", "digits SmallCNN · ERM"]:
    the leading part every name shares up to ``separator``, and the names without it, for table headers and legends
    where four full names did not fit. ("", names) when there are fewer than two names or they share no such part,
    or when dropping it would leave two names the same."""
    heads = {name.split(separator, 1)[0] for name in names}
    if len(names) < 2 or len(heads) != 1 or not all(separator in name for name in names):
        return "", names
    short = [name.split(separator, 1)[1] for name in names]
    return (heads.pop(), short) if len(set(short)) == len(short) else ("", names)


def slug(text: str) -> str:
    """``text`` as a safe file-name part: "digits SmallCNN · PGD-AT ε=0.1" → "digits-smallcnn-pgd-at-0-1"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("ℓ∞", "linf").replace("ℓ2", "l2")).strip("-")


# The characters that format text in the middle of a line (a name is never a line's start): emphasis, code, links,
# Streamlit's ":colour[…]" / ":material/…:" directives and emoji codes, LaTeX, strikethrough.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]$:~])")


def md(text: Any) -> str:
    """``text`` (a model's name, a file's name: what a user typed) for a place Streamlit renders as markdown, with
    the characters that would format it escaped: a model renamed "**big** [x](y)" showed in bold with a link in
    "Renamed to …", and ":red[…]" or "$…$" would colour or typeset it."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
