"""The Attack Lab engine (one example, a whole ε grid in one call) and uploaded images (converted or refused)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.attacks import threat_norm
from core.data import load_dataset
from core.data.upload import MAX_UPLOAD_BYTES, image_to_input
from core.errors import ConfigError, DataError
from core.evaluation.lab import (LAB_STEP_BUDGET, kept_flips, lab_eps_grid, minimal_flip, sweep_cost,
                                 sweep_example)
from core.models import load_checkpoint

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"
GRID = np.linspace(0.0, 0.3, 31)


@pytest.fixture(scope="module")
def erm():
    model, _ = load_checkpoint(MODELS / "digits-smallcnn-erm.safetensors")
    data = load_dataset("digits", "test")
    return model, data


def test_one_call_gives_every_eps_of_the_grid(erm) -> None:
    model, data = erm
    x, y = data.x[3], int(data.y[3])
    sweep = sweep_example(model, x, y, "pgd", {"steps": 10}, GRID)
    assert sweep.x_adv.shape == (len(GRID), *x.shape) and sweep.probs_adv.shape == (len(GRID), 10)
    assert sweep.loss_trace.shape == (10, len(GRID))
    delta = torch.from_numpy(sweep.x_adv - sweep.x[None])
    assert (threat_norm(delta, "linf") <= torch.from_numpy(GRID).float() + 1e-6).all()
    assert sweep.pred_adv[0] == sweep.pred_clean == y, "ε = 0 leaves the prediction alone"
    flip = sweep.flip_index()
    assert flip is not None and (sweep.pred_adv[flip:] != y).mean() > 0.8
    assert np.allclose(sweep.probs_adv.sum(1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        sweep.x_adv[0, 0, 0, 0] = 1.0  # cached results are read-only


def test_the_grid_equals_separate_attacks_at_each_eps(erm) -> None:
    """Batching the grid changes nothing: PGD without a random start is the same alone or in the batch."""
    model, data = erm
    x, y = data.x[7], int(data.y[7])
    sweep = sweep_example(model, x, y, "pgd", {"steps": 5, "random_start": False}, GRID[::10])
    from core.attacks import PGD

    for i, eps in enumerate(GRID[::10]):
        alone = PGD(steps=5, random_start=False)(model, x[None], torch.tensor([y]), float(eps))
        assert np.allclose(alone.x_adv[0].numpy(), sweep.x_adv[i], atol=1e-6)


def test_minimal_flip_really_flips(erm) -> None:
    model, data = erm
    x, y = data.x[3], int(data.y[3])
    found = minimal_flip(model, x, y, "linf")
    assert found["eps"] is not None and 0 < found["eps"] < 0.5 and found["pred"] != y
    sweep = sweep_example(model, x, y, "pgd", {"steps": 20}, GRID)
    assert found["eps"] <= sweep.eps_grid[sweep.flip_index()] * 1.5


def test_bad_lab_requests_get_clear_messages(erm) -> None:
    model, data = erm
    x, y = data.x[0], int(data.y[0])
    with pytest.raises(ConfigError, match="true class"):
        sweep_example(model, x, y, "pgd", {"steps": 5, "target": y}, GRID)
    with pytest.raises(ConfigError, match="beyond"):
        sweep_example(model, x, y, "pgd", {"steps": 5}, [0.0, 2.0])
    with pytest.raises(ConfigError, match="steps"):
        sweep_example(model, x, y, "pgd", {"steps": 0}, GRID)
    with pytest.raises(ConfigError, match="finite"):
        sweep_example(model, x, y, "pgd", {"steps": 5}, [0.0, float("nan")])


@pytest.mark.parametrize("attack,kwargs", [
    ("pgd", {"steps": 10}), ("tpgd", {"steps": 10}), ("fgsm", {}), ("apgd", {"steps": 100}),
    ("apgd", {"steps": 100, "loss": "dlr", "targets": 3}), ("deepfool", {}), ("fmn", {"steps": 100}),
    ("cw", {"steps": 100}), ("square", {"queries": 1000}), ("quick", {"steps": 100}),
], ids=["pgd", "tpgd", "fgsm", "apgd-ce", "apgd-dlr-t3", "deepfool", "fmn", "cw", "square", "quick"])
def test_the_lab_defaults_fit_the_compute_budget_for_two_models(attack: str, kwargs: dict) -> None:
    assert 0 < 2 * sweep_cost(attack, kwargs) <= LAB_STEP_BUDGET


def test_the_compute_budget_counts_every_loop_of_an_attack() -> None:
    assert sweep_cost("pgd", {"steps": 1000, "restarts": 20, "random_start": True}) == 20_000 > LAB_STEP_BUDGET
    assert sweep_cost("pgd", {"steps": 1000}) * 2 == LAB_STEP_BUDGET, "PGD-1000 on two models is the cap"
    assert sweep_cost("apgd", {"steps": 100, "loss": "dlr", "targets": 3}) == 300
    assert sweep_cost("quick", {"steps": 100}) == 200, "APGD-CE (100) + 5 targeted APGD-DLR runs of 20"
    assert sweep_cost("cw", {"steps": 100}) == 500, "5 binary-search steps of 100 Adam steps"
    assert sweep_cost("square", {"queries": 10_000}) == 2500
    with pytest.raises(ConfigError, match="steps"):
        sweep_cost("pgd", {"steps": 0})


@pytest.mark.parametrize("top,model_eps", [(0.3, 0.1), (0.3, 0.3), (0.3, 8 / 255), (0.6, 0.2), (2.0, 0.5),
                                           (1.0, 0.3), (0.3, None), (2.0, None)])
def test_the_lab_grid_contains_the_models_own_eps(top: float, model_eps: float | None) -> None:
    grid = np.asarray(lab_eps_grid(top, model_eps, 41))
    steps = np.diff(grid)
    assert grid[0] == 0.0 and 20 <= len(grid) <= 41 and np.allclose(steps, steps[0], atol=1e-6)
    assert top * 0.95 <= grid[-1] <= top + 1e-9
    if model_eps is not None:
        assert np.abs(grid - model_eps).min() < 1e-6
    assert lab_eps_grid(0.3, 0.1, 41)[10] == 0.1, "a short step (0.01), not 0.0075, for the shipped models' ε"


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_a_dark_drawing_on_white_becomes_a_digit_in_the_dataset_format() -> None:
    image = Image.new("RGB", (120, 120), "white")
    for i in range(30, 90):
        for j in range(45, 75):
            image.putpixel((j, i), (0, 0, 0))
    array, notes = image_to_input(png(image), (1, 8, 8))
    assert array.shape == (1, 8, 8) and array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    assert array[0, 4, 4] > 0.5 and array[0, 0, 0] < 0.05, "inverted: a light stroke on black, like digits"
    assert any("inverted" in n for n in notes) and any("greyscale" in n for n in notes)


def test_transparent_and_colour_images_are_converted() -> None:
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    array, notes = image_to_input(png(rgba), (3, 8, 8), background="light")
    assert array.shape == (3, 8, 8) and np.allclose(array, 1.0), "nothing drawn: transparent pixels become white"
    assert "transparent pixels put on white (nothing is drawn)" in notes
    grey = Image.new("L", (8, 8), 128)
    array, notes = image_to_input(png(grey), (3, 8, 8), invert="no")
    assert np.allclose(array, 128 / 255, atol=1e-6) and any("repeated to RGB" in n for n in notes)


def stroke_on_transparent(colour: int, alpha: int) -> bytes:
    """A 64×64 PNG: a vertical bar (columns 24–39, rows 8–55: pixels 3–4 × 1–6 at 8×8) on a fully transparent
    canvas, as a drawing app exports a stroke without a background."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((colour, colour, colour, alpha), (24, 8, 40, 56))
    return png(image)


@pytest.mark.parametrize("colour,alpha,put_on", [(255, 128, "black"), (255, 255, "black"), (0, 255, "white"),
                                                 (0, 128, "white")],
                         ids=["white-half-alpha", "white-opaque", "black-opaque", "black-half-alpha"])
def test_a_stroke_on_a_transparent_canvas_keeps_its_stroke(colour: int, alpha: int, put_on: str) -> None:
    """A white stroke (alpha 128) on transparent used to go onto white and vanish: an all-black digit. The
    background now contrasts with the drawing (black under a light one, white under a dark one, as before), and
    either way the digits format gets a bright stroke on a dark background."""
    array, notes = image_to_input(stroke_on_transparent(colour, alpha), (1, 8, 8))
    stroke = np.zeros((8, 8), dtype=bool)
    stroke[1:7, 3:5] = True
    assert array[0][stroke].min() > 0.45, array[0]
    assert array[0][~stroke].max() < 0.05, array[0]
    assert f"transparent pixels put on {put_on} (the drawing is {'light' if put_on == 'black' else 'dark'})" in notes
    assert any("inverted" in n for n in notes) == (put_on == "white"), notes


def test_a_sheet_with_transparent_margins_keeps_a_white_background() -> None:
    """A mostly opaque white sheet with a dark stroke and a transparent border (a screenshot, a cropped scan) is a
    dark drawing on paper: its margins go on white and the digit comes out light on black after inverting."""
    sheet = np.zeros((64, 64, 4), np.uint8)
    sheet[6:-6, 6:-6] = (255, 255, 255, 255)
    sheet[16:48, 24:40] = (0, 0, 0, 255)
    array, notes = image_to_input(png(Image.fromarray(sheet)), (1, 8, 8))
    assert array[0, 3:5, 3:5].min() > 0.6 and array[0, 0, 4] < 0.1 and array[0, 4, 0] < 0.1
    assert any("inverted" in n for n in notes) and any("put on white" in n for n in notes)


def test_an_opaque_image_with_an_alpha_channel_needs_no_background() -> None:
    image = Image.new("RGBA", (8, 8), (255, 255, 255, 255))
    image.paste((0, 0, 0, 255), (3, 1, 5, 7))
    array, notes = image_to_input(png(image), (1, 8, 8), invert="no")
    assert array[0, 4, 3] == 0.0 and array[0, 0, 0] == 1.0
    assert not any("transparent" in n for n in notes), notes


def test_16_bit_and_float_images_keep_their_contrast() -> None:
    """Pillow's own convert clips a 16-bit image at 255, so a 16-bit scan came out all white or all black."""
    ramp = np.tile(np.linspace(0, 65535, 8).round().astype(np.uint16), (8, 1))
    deep = png(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(deep)).mode.startswith("I"), "the PNG holds 16-bit greyscale"
    array, notes = image_to_input(deep, (1, 8, 8), invert="no")
    assert np.allclose(array[0, 3], ramp[0] / 65535, atol=1 / 255) and any("16-bit" in n for n in notes)
    flat = png(Image.fromarray(np.full((8, 8), 30000, np.uint16)))
    assert np.allclose(image_to_input(flat, (1, 8, 8), invert="no")[0], 30000 / 65535, atol=1 / 255)
    dim = png(Image.fromarray(np.full((8, 8), 200, np.uint16)))  # 16-bit by its mode, however dark
    if Image.open(io.BytesIO(dim)).mode.startswith("I;16"):
        assert image_to_input(dim, (1, 8, 8), invert="no")[0].max() <= 1 / 255 + 1e-6, "not 200/255 = 0.78"
    unit = png(Image.fromarray(np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))), "TIFF")
    array, notes = image_to_input(unit, (3, 8, 8), invert="no")
    assert np.allclose(array[:, 5], np.linspace(0, 1, 8), atol=1 / 255) and any("[0, 1]" in n for n in notes)
    wide = png(Image.fromarray(np.tile(np.linspace(-5, 5, 8, dtype=np.float32), (8, 1))), "TIFF")
    array, notes = image_to_input(wide, (1, 8, 8), invert="no")
    assert array.min() == 0 and array.max() == 1 and any("stretched" in n for n in notes)
    nan = png(Image.fromarray(np.full((8, 8), np.nan, np.float32)), "TIFF")
    with pytest.raises(DataError, match="NaN"):
        image_to_input(nan, (1, 8, 8))


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, with one tiny compressed row: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("data,match", [
    (b"", "empty"), (b"this is not an image at all", "not an image"), (b"\x80\x04K\x01.", "not an image"),
    (b"\0" * (MAX_UPLOAD_BYTES + 1), "MiB"), (_bomb_png(100_000, 100_000), "pixels"),
    (_bomb_png(5000, 5000), "pixels"),
], ids=["empty", "text", "pickle", "huge-file", "bomb-header", "too-many-pixels"])
def test_bad_uploads_are_refused_with_a_clear_message(data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        image_to_input(data, (1, 8, 8))


def test_a_truncated_image_is_refused() -> None:
    good = png(Image.new("L", (64, 64), 200), "JPEG")
    with pytest.raises(DataError, match="decoded"):
        image_to_input(good[: len(good) // 2], (1, 8, 8))


def test_non_image_datasets_refuse_uploads() -> None:
    with pytest.raises(DataError, match="not an image"):
        image_to_input(png(Image.new("L", (8, 8))), (2,))


@pytest.mark.parametrize("norm,attack", [("linf", "pgd"), ("l2", "pgd")])
def test_the_adversarial_png_keeps_the_budget(erm, norm: str, attack: str) -> None:
    """Rounding each pixel to 8 bits moved an exported example up to 0.002 outside its ε-ball (ℓ∞ 0.102 at
    ε = 0.1); the PNG's levels now stay inside and differ from plain rounding only where they had to."""
    from dashboard.components.lab_views import png_bytes

    model, data = erm
    grid = GRID if norm == "linf" else GRID * 10
    hits = 0
    for i in range(6):
        x, y = data.x[i], int(data.y[i])
        sweep = sweep_example(model, x, y, attack, {"steps": 10, "norm": norm}, grid)
        for eps, x_adv in zip(grid[1::5], sweep.x_adv[1::5]):
            image = np.asarray(Image.open(io.BytesIO(png_bytes(sweep.x, x_adv, float(eps), norm))), dtype=float)
            saved = image[None] / 255
            naive = np.rint(np.clip(x_adv.astype(float), 0, 1) * 255) / 255
            dist = threat_norm(torch.from_numpy(saved - sweep.x)[None], norm).item()
            assert dist <= eps + 1e-9, (norm, eps, dist)
            hits += threat_norm(torch.from_numpy(naive - sweep.x)[None], norm).item() > eps + 1e-9
            changed = saved != naive
            assert np.abs(saved - naive)[changed].max(initial=0) < 1.5 / 255, "one level at most"
            if norm == "linf":  # exactly the pixels whose nearest level broke the budget moved
                assert (changed == (np.abs(naive - sweep.x) > eps + 1e-9)).all()
    assert hits, "plain rounding does leave the ball here: the test sees the bug"


def test_8_bit_levels_on_an_image_off_the_levels() -> None:
    """digits' pixels are multiples of 1/16, not of 1/255: a perturbation smaller than a level cannot be kept in
    ℓ2, and the distance returned says how far the file is (never beyond the nearest levels)."""
    from core.evaluation.lab import to_8bit

    x = np.full((1, 2, 2), 1 / 16)
    levels, dist = to_8bit(x, x + 1e-4, 1e-4 * 2, "l2")
    assert dist == pytest.approx(2 * abs(np.rint(255 / 16) / 255 - 1 / 16))
    levels, dist = to_8bit(x, x + 0.1, 0.1, "linf")
    assert dist <= 0.1 and (levels == np.floor((1 / 16 + 0.1) * 255)).all()
    with pytest.raises(ConfigError):
        to_8bit(x, x, 0.1, "l2patch")


def test_kept_flips_carries_the_last_flip_forward_only() -> None:
    assert kept_flips(np.array([False, True, False, True, False, False])).tolist() == [0, 1, 1, 3, 3, 3]
    assert kept_flips(np.array([False, False, False])).tolist() == [0, 1, 2]


def test_a_flip_found_at_a_smaller_eps_is_shown_at_every_larger_one(erm) -> None:
    """PGD-10 on the ERM model flipped test #4 at some ε and not at a larger one (4 of the first 60 test points,
    8 on PGD-AT): the slider went fooled → correct → fooled. The worst case found up to each ε is shown instead,
    with the grid point it comes from, and stays inside the ε-ball of both."""
    from dashboard.components.lab_views import carried_sentence, slide_footer

    model, data = erm
    grid = np.array(lab_eps_grid(0.3, 0.1, 31))
    x, y = data.x[4], int(data.y[4])
    sweep = sweep_example(model, x, y, "pgd", {"norm": "linf"}, grid)
    carried = [i for i in range(len(grid)) if sweep.carried(i) is not None]
    assert carried, "test #4 no longer shows the miss this test is about"
    flipped = sweep.pred_adv != y
    first = sweep.flip_index()
    assert not flipped[:first].any() and flipped[first:].all(), "once fooled, fooled at every larger ε"
    delta = torch.from_numpy(sweep.x_adv - sweep.x[None])
    source_eps = torch.from_numpy(grid[sweep.source]).float()
    assert (threat_norm(delta, "linf") <= source_eps + 1e-6).all() and (sweep.source <= np.arange(len(grid))).all()
    with torch.no_grad():
        again = model(torch.from_numpy(np.array(sweep.x_adv))).argmax(1).numpy()
    assert (again == sweep.pred_adv).all(), "the prediction shown is the shown image's"
    i = carried[0]
    found = float(grid[sweep.carried(i)])
    assert sweep.loss_trace[:, i].tolist() == sweep.loss_trace[:, sweep.carried(i)].tolist()
    assert f"its run at ε = {found:.3f} did" in carried_sentence(sweep, i)
    assert carried_sentence(sweep, first) is None
    assert f"attacked at ε = {grid[i]:.3g} (its flip found at ε = {found:.3g})" in slide_footer(
        "m", "PGD", float(grid[i]), 0.1, found)


def test_an_upload_preview_is_the_models_input_enlarged_by_whole_repeats() -> None:
    from dashboard.components.lab_views import enlarged_rgb

    grey = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    out = enlarged_rgb(grey, 112)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert (out[::14, ::14, 0] == np.rint(grey[0] * 255)).all() and (out[13::14, 13::14] == out[::14, ::14]).all()
    assert enlarged_rgb(np.random.default_rng(1).random((3, 32, 32)), 112).shape == (96, 96, 3)
