"""The Attack Lab's verdict against what the minimal-norm search knows (AppTest on the shipped digits models)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


def test_a_point_the_attack_misses_but_fmn_flips_inside_the_budget_is_not_called_robust() -> None:
    """Test #8 on the shipped PGD-AT model at ε = 0.12: PGD-10 leaves it correct, FMN flips it at 0.118. The panel
    said "still 8" and "(correct)" beside "smallest flipping ε 0.118"."""
    at = AppTest.from_file(APP, default_timeout=240)
    for key, value in {"lab_mode": "By index", "lab_index": "8", "lab_eps": "0.12"}.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("../pages/attack_lab.py").run()
    assert not at.exception, at.exception
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert badges[0].startswith(":orange-badge[still ") and badges[0].endswith(" · not robust]"), badges
    table = next(m.value for m in at.markdown if m.value.startswith("| at ε = 0.120"))
    assert "(correct against this attack; FMN flips it)" in table and "| smallest flipping ε | **0.118** |" in table
    assert any(c.value.startswith(":orange[Not robust at ε = 0.120: the chosen attack missed, but FMN's")
               for c in at.caption)
    # One notch lower FMN's flip lies outside the budget: robust as far as anyone knows.
    at.slider(key="lab_eps").set_value(0.11).run()
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert badges[0].startswith(":green-badge[still "), badges
    assert not any(c.value.startswith(":orange[Not robust") for c in at.caption)
