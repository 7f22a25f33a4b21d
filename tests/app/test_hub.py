"""The Model hub under AppTest: what its chart, captions and cards say about how the models were measured."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def test_the_hub_names_what_its_robust_accuracy_measured() -> None:
    """The shipped patch models' robust accuracy is the worst case over PGD-10 and a probe, not PGD-20: the axis
    and the caption said "PGD-20" beside a note that said otherwise, and the card's help shouted the attack's
    description in capitals ("WORST OF PGD-10 (NO START, …")."""
    at = AppTest.from_file(APP, default_timeout=90).run()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert figure["layout"]["yaxis"]["title"]["text"] == "robust accuracy (PGD-20, own ε)"
    at.selectbox(key="_sb_dataset").select("patches").run()
    assert not at.exception
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert figure["layout"]["yaxis"]["title"]["text"] == "robust accuracy (worst case, own ε)"
    caption = next(c.value for c in at.caption if c.value.startswith("Each dot is a model"))
    assert "Robust accuracy is the worst case of PGD-10 (no start, random start) and the feature-shift probe" in caption
    assert "PGD-20" not in caption
    helps = [m.proto.help for m in at.markdown if m.value.startswith("Clean **")]
    assert len(helps) == 2 and all("robust accuracy under the worst case of PGD-10" in h for h in helps), helps
    assert not any("WORST" in h for h in helps)


def test_the_measure_is_named_once_per_kind() -> None:
    """Two "worst of …" descriptions read "worst case or worst case"; other attacks' names were left in lower case."""
    from dashboard.components.charts import robust_measure

    assert robust_measure(["worst of A", "worst of B"]) == ("worst case", "the worst case of A or the worst case of B")
    assert robust_measure(["fgsm", "pgd-100", "pgd-20", None]) == ("PGD-20 or PGD-100 or FGSM",) * 2
    assert robust_measure([float("nan")]) == ("PGD-20", "PGD-20"), "no measure recorded: the headline one"
