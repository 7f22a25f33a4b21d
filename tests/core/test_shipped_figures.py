"""The figures a shipped model's .json file states are what its weights measure now, by the protocol every model in
the hub is measured by (the shipped ERM file said 50.7 % robust while its weights measured 50.2 %)."""

from __future__ import annotations

import pytest

from core.data import load_dataset
from core.defaults import TRAIN_DEFAULTS
from core.evaluation.headline import headline_metrics
from core.models import load_checkpoint
from core.utils import assets_models_dir


@pytest.mark.parametrize("name", list(TRAIN_DEFAULTS))
def test_a_shipped_models_stated_figures_are_measured_again_exactly(name: str) -> None:
    config = TRAIN_DEFAULTS[name]
    model, meta = load_checkpoint(assets_models_dir() / f"{name}.safetensors")
    measured = headline_metrics(model, load_dataset(config.dataset, "test"), config.norm, config.eps)
    stated = {key: meta["metrics"][key] for key in measured}
    assert stated == measured, f"run `python -m core build-defaults --metrics-only` after changing the evaluation"
