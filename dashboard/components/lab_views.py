"""Figures and panels of the Attack Lab: clean | perturbation | adversarial, probabilities, loss trace, PNG."""

from __future__ import annotations

import functools
import io
import math
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.components.charts import BASE, GRID
from dashboard.components.labels import md, slug

# The slider re-renders these figures on every move: plain dicts (charts.BASE), ~100 ms per model less than
# make_subplots with a template.
DOMAINS = ([0.0, 0.3], [0.35, 0.65], [0.7, 1.0])
DELTA_SCALE = "RdBu_r"  # the perturbation δ: on screen (the triptych) and on the slide strip alike
PIXEL_HOVER = "row %{y}, col %{x}: %{z:.3f}<extra></extra>"


def _panel(x: np.ndarray, axis: str, coloraxis: str, hover: str = PIXEL_HOVER) -> dict[str, Any]:
    """One image as a trace: greyscale as a heatmap (crisp pixels at any size), colour as an RGB image."""
    refs = dict(xaxis=f"x{axis}", yaxis=f"y{axis}")
    if x.ndim == 2 or x.shape[0] == 1:
        return dict(type="heatmap", z=x if x.ndim == 2 else x[0], coloraxis=coloraxis, hovertemplate=hover, **refs)
    return dict(type="image", z=(np.clip(x.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8), **refs)


def triptych(x: np.ndarray, x_adv: np.ndarray, titles: Sequence[str], height: int = 200) -> tuple[go.Figure, float]:
    """Clean | perturbation | adversarial in one figure, equal sizes, square pixels (C×H×W images in [0,1]).

    The perturbation (mean over channels) uses a diverging colour map centred on 0; returns its largest |δ| (0.0
    when there is no perturbation). Each title is its image's top x-axis title, so it sits centred just above the
    image wherever the square-pixel constraint puts it; titles take two short lines to fit a 1024 px window.
    """
    delta = (x_adv - x).mean(axis=0)
    scale = float(np.abs(delta).max())
    titles = [titles[0], f"{titles[1]}<br>" + (f"±{scale:.3f}" if scale > 0 else "none"), titles[2]]
    data = [_panel(x, "", "coloraxis"),
            _panel(delta, "2", "coloraxis2", "row %{y}, col %{x}: δ = %{z:+.3f}<extra></extra>"),
            _panel(x_adv, "3", "coloraxis")]
    limit = scale or 1e-3
    layout: dict[str, Any] = dict(
        BASE, height=height, margin=dict(l=5, r=5, t=44, b=5),
        coloraxis=dict(colorscale="gray", cmin=0.0, cmax=1.0, showscale=False),
        coloraxis2=dict(colorscale=DELTA_SCALE, cmid=0.0, cmin=-limit, cmax=limit, showscale=False))
    for i, (domain, title) in enumerate(zip(DOMAINS, titles)):
        suffix = "" if i == 0 else str(i + 1)
        layout[f"xaxis{suffix}"] = dict(domain=domain, side="top", showticklabels=False, showgrid=False,
                                        zeroline=False, showline=False, ticks="", constrain="domain",
                                        anchor=f"y{suffix}", title=dict(text=title, standoff=4, font=dict(size=13)))
        # Images pinned to the top: in a narrow column the spare height goes below them, not between title rows.
        layout[f"yaxis{suffix}"] = dict(visible=False, autorange="reversed", constrain="domain",
                                        constraintoward="top", scaleanchor=f"x{suffix}", anchor=f"x{suffix}")
    return go.Figure(data=data, layout=layout), scale


def probs_figure(probs_clean: np.ndarray, probs_adv: np.ndarray, classes: Sequence[str], k: int = 5) -> go.Figure:
    """Top-k probabilities before and after the attack (the union of both top-k lists, most likely first), padded
    with the next most likely clean classes to k + 2 bars, so the panels of two models line up."""
    order = list(dict.fromkeys([*np.argsort(-probs_clean)[:k], *np.argsort(-probs_adv)[:k],
                                *np.argsort(-probs_clean)]))[: k + 2]
    names = np.array([f"class {classes[i]}" for i in order])
    data = [dict(type="bar", y=names, x=probs[order], orientation="h", name=name, marker=dict(color=colour),
                 hovertemplate="%{y}: %{x:.1%}<extra>" + name + "</extra>")
            for probs, name, colour in ((probs_clean, "clean", "#2563eb"), (probs_adv, "adversarial", "#c2410c"))]
    # The legend hangs from the figure's bottom with room for two rows: at a fraction of the plot height, its
    # entries stacked in a narrow column (1024 px) and covered the "probability" axis title.
    layout = dict(BASE, title=dict(text="Top classes before and after"), barmode="group", height=330,
                  margin=dict(l=80, r=10, t=46, b=84),
                  xaxis=dict(GRID, title=dict(text="probability"), range=[0, 1.04], tickformat=".0%"),
                  yaxis=dict(autorange="reversed"),
                  legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    return go.Figure(data=data, layout=layout)


def loss_figure(trace: np.ndarray, eps: float, label: str) -> go.Figure:
    """The attack's loss at each iteration, at the slider's ε."""
    fmt = tick_format(trace)
    data = [dict(type="scatter", x=np.arange(1, len(trace) + 1), y=trace, mode="lines+markers",
                 line=dict(color="#c2410c"), hovertemplate="step %{x}: %{y:" + fmt + "}<extra></extra>")]
    layout = dict(BASE, title=dict(text=f"{label} at ε = {eps:.3g}"), height=260, margin=dict(l=70, r=10, t=46, b=50),
                  xaxis=dict(GRID, title=dict(text="iteration")),
                  yaxis=dict(GRID, title=dict(text=label), tickformat=fmt))
    return go.Figure(data=data, layout=layout)


def tick_format(values: np.ndarray, ticks: int = 10) -> str:
    """A d3 format precise enough that ticks spaced (max − min) / ``ticks`` apart read differently: a loss that
    moves only in its fourth digit must not show "1.06" on every tick. Fixed decimals, or exponent notation with
    enough significant digits (5e-6, not 0.000005, which d3's "g" wrote) for values below 0.001."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    if span <= 0:
        return ".3f"
    largest = float(np.abs(finite).max())
    if largest < 1e-3:
        digits = int(min(max(math.ceil(math.log10(largest * ticks / span)) + 1, 1), 8))
        return f".{digits - 1}~e"
    return f".{int(min(max(math.ceil(-math.log10(span / ticks)), 0), 8))}f"


def decimals(step: float) -> int:
    """Digits a slider needs so every grid point shows as itself (0.0975, not 0.098), at least 3."""
    return int(min(max(3, -math.floor(math.log10(step)) + 1), 6)) if step > 0 else 3


def png_bytes(x: np.ndarray, x_adv: np.ndarray, eps: float, norm: str) -> bytes:
    """The C×H×W adversarial image ``x_adv`` as an 8-bit PNG at its native size, rounded to levels that keep it
    inside the ε-ball around the clean ``x`` (plain rounding left it up to 0.002 outside)."""
    from PIL import Image

    from core.evaluation.lab import to_8bit

    array, _ = to_8bit(x, x_adv, eps, norm)
    image = Image.fromarray(array[0], mode="L") if x.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Each image of the slide strip is scaled up (nearest neighbour) to about this size: three of them fill a 1080p
# slide's width (at 256 px the strip was 864 px wide and blurred on a projected slide).
STRIP_PANEL_PX = 512
STRIP_GAP, STRIP_TOP = 40, 72  # px between and around the panels; the titles' band above them


def _rgb(x: np.ndarray) -> np.ndarray:
    """A C×H×W image in [0,1] as H×W×3 uint8."""
    array = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    return np.repeat(array[0][..., None], 3, axis=2) if x.shape[0] == 1 else array.transpose(1, 2, 0)


def enlarged_rgb(x: np.ndarray, size: int) -> np.ndarray:
    """A C×H×W image in [0,1] as H×W×3 uint8 scaled up by a whole factor (crisp pixels) to about ``size`` px: the
    browser's own scaling blurred an 8 × 8 digit."""
    factor = max(1, size // max(x.shape[1:]))
    return np.repeat(np.repeat(_rgb(np.clip(x, 0.0, 1.0)), factor, axis=0), factor, axis=1)


def _delta_rgb(delta: np.ndarray, scale: float) -> np.ndarray:
    """δ (H×W) in the triptych's colours (DELTA_SCALE, ±scale full): red where the image got brighter, blue where
    darker. A white-to-end blend of its own made the slide's δ paler than the screen's."""
    from plotly.colors import get_colorscale, unlabel_rgb

    stops = get_colorscale(DELTA_SCALE)
    where = np.array([float(p) for p, _ in stops])
    rgb = np.array([unlabel_rgb(c) for _, c in stops], dtype=float)
    t = (np.clip(delta / scale, -1, 1) + 1) / 2 if scale > 0 else np.full(delta.shape, 0.5)
    out = np.stack([np.interp(t, where, rgb[:, k]) for k in range(3)], axis=-1)
    return np.rint(out).astype(np.uint8)


def _font_file() -> str | None:
    """DejaVu Sans (it has → δ ε; PIL's built-in font does not): matplotlib's copy (captum needs matplotlib), else
    Debian's."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("matplotlib")
    places = [Path(p) / "mpl-data" / "fonts" / "ttf" for p in (spec.submodule_search_locations or [])] if spec else []
    places.append(Path("/usr/share/fonts/truetype/dejavu"))
    return next((str(p / "DejaVuSans.ttf") for p in places if (p / "DejaVuSans.ttf").is_file()), None)


def strip_png(x: np.ndarray, x_adv: np.ndarray, titles: Sequence[str], footer: str) -> bytes:
    """Clean | perturbation | adversarial side by side, each scaled up by a whole factor (crisp pixels) to about
    STRIP_PANEL_PX, titled, with ``footer`` (slide_footer: attack, ε, δ scale, model) underneath: a picture for a
    slide. C×H×W in [0,1]. The footer keeps its line breaks and wraps lines wider than the strip."""
    from PIL import Image, ImageDraw, ImageFont

    delta = (x_adv - x).mean(axis=0)
    scale = float(np.abs(delta).max())
    factor = max(1, STRIP_PANEL_PX // max(x.shape[1:]))
    panels = [Image.fromarray(a).resize((a.shape[1] * factor, a.shape[0] * factor), Image.Resampling.NEAREST)
              for a in (_rgb(x), _delta_rgb(delta, scale), _rgb(x_adv))]
    gap, top, line_px = STRIP_GAP, STRIP_TOP, 38
    width, height = panels[0].width, panels[0].height
    font_file = _font_file()

    def font(size: int) -> Any:
        return ImageFont.truetype(font_file, size) if font_file else ImageFont.load_default(size=size)

    def text(value: str) -> str:  # PIL's built-in font has no → δ ε
        return value if font_file else value.replace("→", "->").replace("δ", "delta").replace("ε", "eps")

    footer_font = font(26)
    lines = _wrap(text(footer), footer_font, 3 * width + 2 * gap)
    canvas = Image.new("RGB", (3 * width + 4 * gap, height + top + 24 + line_px * len(lines)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        left = gap + i * (width + gap)
        canvas.paste(panel, (left, top))
        draw.text((left + width / 2, top / 2), text(title), fill="black", font=font(32), anchor="mm")
    for i, line in enumerate(lines):
        draw.text((gap, top + height + 12 + line_px * (i + 0.5)), line, fill="#334155", font=footer_font, anchor="lm")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _wrap(value: str, font: Any, width: float) -> list[str]:
    """``value``'s lines, each broken at spaces into pieces at most ``width`` pixels wide in ``font``."""
    lines: list[str] = []
    for paragraph in value.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            wider = f"{line} {word}" if line else word
            if line and font.getlength(wider) > width:
                lines.append(line)
                line = word
            else:
                line = wider
        lines.append(line)
    return lines


def slide_footer(model: str, attack: str, eps: float, scale: float, found_at: float | None = None) -> str:
    """The slide's caption: the attack with its parameters and ε (and the smaller ε whose flip is shown, when it
    is carried), the δ scale, then the model on a second line, so slides of two attacks on one example tell
    themselves apart."""
    shown = f"δ shown ±{scale:.3g} (red brighter, blue darker)" if scale > 0 else "no perturbation"
    carried = "" if found_at is None else f" (its flip found at ε = {found_at:.3g})"
    return f"{attack} · attacked at ε = {eps:.3g}{carried} · {shown}\nModel: {model}"


def carried_sentence(sweep: Any, index: int) -> str | None:
    """Why the images at this ε come from a smaller one (None when they do not): the attack missed here what it
    found with less budget, and an example fooled inside a smaller ball is fooled inside this one too."""
    found = sweep.carried(index)
    if found is None:
        return None
    return (f"At ε = {float(sweep.eps_grid[index]):.3f} the attack's own run did not flip it, but its run at "
            f"ε = {float(sweep.eps_grid[found]):.3f} did: that adversarial image lies inside this larger budget too, "
            "so it is the one shown (a larger ε never makes a model more robust; the miss was the attack's).")


def smallest_flip(sweep: Any, flip: dict[str, Any]) -> tuple[float | None, str]:
    """The smallest ε known to flip the example: the minimal-norm attack's perturbation or the grid's first flip,
    whichever is smaller (neither search is exact), and a sentence saying which. None, and a sentence saying so,
    when the clean example is already misclassified: there is nothing to flip."""
    if int(sweep.pred_clean) != int(sweep.y):
        return None, "Already misclassified before any attack: there is no flip to measure."
    first = sweep.flip_index()
    grid_eps = float(sweep.eps_grid[first]) if first is not None else None
    found = {"grid": grid_eps, "min-norm": flip.get("eps")}
    known = {k: v for k, v in found.items() if v is not None}
    if not known:
        return None, (f"Neither {flip.get('method') or 'a minimal-norm attack'} ({flip.get('note') or 'no flip'}) "
                      "nor the attack on the ε grid flipped it.")
    source = min(known, key=known.__getitem__)
    method = (flip.get("method") or "minimal-norm").upper()
    # Found, not exact: each search gives an ε that flips it, an upper bound on the true minimum.
    if source == "grid":
        text = "Smallest flipping ε found: where the chosen attack first flips it on the ε grid" + (
            f"; {method}, a minimal-norm search, found {known['min-norm']:.3f}" if "min-norm" in known else "")
    else:
        text = f"Smallest flipping ε found: by {method}, a minimal-norm search" + (
            f"; the chosen attack first flips it at {known['grid']:.3f} on the ε grid" if "grid" in known else "")
    bound = "Both are upper bounds" if len(known) == 2 else "It is an upper bound"
    return known[source], f"{text}. {bound}: a stronger search may flip it at a smaller ε."


def flip_sentence(sweep: Any, classes: Sequence[str]) -> str:
    """Where on the grid the prediction first leaves the true class, or why that question does not apply."""
    if int(sweep.pred_clean) != int(sweep.y):
        return (f"Already misclassified before any attack (predicted {classes[sweep.pred_clean]}, true class "
                f"{classes[sweep.y]}): nothing to flip.")
    first = sweep.flip_index()
    if first is None:
        return f"On this grid the prediction never changes (up to ε = {sweep.eps_grid[-1]:.3f})."
    return f"On this grid the prediction first changes at ε = {sweep.eps_grid[first]:.3f}."


def missed_flip(sweep: Any, index: int, flip: dict[str, Any]) -> float | None:
    """The minimal-norm search's flipping ε when it lies inside this budget although the chosen attack left the
    example correct here (None otherwise): the example is not robust at this ε, whatever the badge of the chosen
    attack alone would say. A tester found "still 0 (correct)" beside "smallest flipping ε 0.086" at ε = 0.1."""
    found = flip.get("eps")
    correct = int(sweep.pred_clean) == int(sweep.y) and int(sweep.pred_adv[index]) == int(sweep.y)
    if found is None or not correct or found > float(sweep.eps_grid[index]) + 1e-9:
        return None
    return float(found)


def missed_sentence(sweep: Any, index: int, flip: dict[str, Any]) -> str | None:
    found = missed_flip(sweep, index, flip)
    if found is None:
        return None
    method = (flip.get("method") or "minimal-norm").upper()
    return (f"Not robust at ε = {float(sweep.eps_grid[index]):.3f}: the chosen attack missed, but {method}'s "
            f"minimal-norm search flipped it at ε = {found:.3f}, inside this budget. More steps, restarts or "
            "another attack (APGD-CE, the quick ensemble) may find it too.")


def numbers_table(sweep: Any, index: int, flip: dict[str, Any], classes: Sequence[str]) -> tuple[str, str]:
    """The panel's key numbers as a 2-column markdown table, one number per row (cells wrap in a narrow column
    instead of cutting the number off, as st.metric did at 1024 px), and where the smallest ε comes from."""
    pred = int(sweep.pred_adv[index])
    wrong_clean = int(sweep.pred_clean) != int(sweep.y)
    state = "already wrong" if wrong_clean else "fooled" if pred != sweep.y else "correct"
    if missed_flip(sweep, index, flip) is not None:
        state = f"correct against this attack; {(flip.get('method') or 'minimal-norm').upper()} flips it"
    p_adv, p_clean = float(sweep.probs_adv[index][sweep.y]), float(sweep.probs_clean[sweep.y])
    value, how = smallest_flip(sweep, flip)
    flip_cell = "— (already wrong)" if wrong_clean else "— (none found)" if value is None else f"**{value:.3f}**"
    eps = float(sweep.eps_grid[index])
    table = (f"| at ε = {eps:.3f} | |\n|:--|:--|\n| prediction | **{classes[pred]}** ({state}) |\n"
             f"| p(true class {classes[sweep.y]}) | **{p_adv:.1%}** (clean {p_clean:.1%}) |\n"
             f"| smallest flipping ε | {flip_cell} |")
    return table, how


def model_panel(sweep: Any, index: int, flip: dict[str, Any], classes: Sequence[str], *, label: str,
                key: str, trace_label: str | None, attack: str, norm: str, image_height: int = 200,
                target: int | None = None) -> None:
    """Everything for one model at one ε: verdict, three images, key numbers, probabilities, loss, downloads.
    ``attack`` names the attack with its parameters ("PGD (ℓ∞), 10 steps, untargeted") for the slide, ``norm``
    its threat model ("linf" or "l2");
    ``image_height`` is the images' figure height (taller for a projector); ``target`` a targeted attack's class."""
    eps = float(sweep.eps_grid[index])
    x_adv = sweep.x_adv[index]
    pred = int(sweep.pred_adv[index])
    flipped = pred != sweep.y
    # An upload's true class is the user's word: when the clean image is already misclassified, nothing the attack
    # does is a success, and the badge must not credit it.
    wrong_clean = int(sweep.pred_clean) != int(sweep.y)
    missed = missed_flip(sweep, index, flip)
    verdict = (f":orange-badge[misclassified before any attack → {classes[pred]}]" if wrong_clean
               # A targeted attack that flips the prediction to another class has missed what was asked for.
               else f":orange-badge[fooled → {classes[pred]}, not the target {classes[target]}]"
               if flipped and target is not None and pred != target
               else f":red-badge[fooled → {classes[pred]}]" if flipped
               else f":orange-badge[still {classes[pred]} · not robust]" if missed is not None
               else f":green-badge[still {classes[pred]}]")
    # Role, name and verdict on one line of body text, not a heading: a heading wrapped to 3 lines in a 1024 px
    # window and pushed one model's images below the other's. The verdict keeps its width and the name gives way,
    # cut with "…" (assets/style.css): wrapped, a long name or a long verdict put one model's images a line below
    # the other's, and a 120-character name pushed them below a 1280 × 720 window.
    role, _, name = label.partition(": ")
    head = f"**{role}**: {md(name)}" if name else f"**{md(label)}**"
    row = st.container(key=f"{key}_verdict", horizontal=True, vertical_alignment="center", gap="small")
    row.markdown(head, width="content")  # keyed row: browser tests and benches find it
    row.markdown(verdict, width="content")
    fig, scale = triptych(sweep.x, x_adv, (f"clean<br>→ {classes[sweep.pred_clean]}", "perturbation δ",
                                           f"adversarial<br>→ {classes[pred]}"), image_height)
    st.plotly_chart(fig, key=f"{key}_images", config={"displayModeBar": False})
    if scale > 0:
        st.caption(f"δ colours span ±{scale:.3f} in image units (red brighter, blue darker), i.e. amplified "
                   f"×{0.5 / scale:.1f} against the images, whose grey scale spans 0–1.")
    else:
        st.caption("No perturbation: δ is zero everywhere" + (" at ε = 0." if eps == 0 else
                                                                 " (the attack left the image unchanged)."))
    if (carried := carried_sentence(sweep, index)) is not None:
        st.caption(carried)
    if (missed_text := missed_sentence(sweep, index, flip)) is not None:
        st.caption(f":orange[{missed_text}]")
    table, how = numbers_table(sweep, index, flip, classes)
    st.container(key=f"{key}_numbers").markdown(table)
    if not wrong_clean:  # else the caption under the panel says it is already misclassified
        st.caption(how)
    st.plotly_chart(probs_figure(sweep.probs_clean, sweep.probs_adv[index], classes), key=f"{key}_probs",
                    config={"displayModeBar": False})
    if trace_label and sweep.loss_trace.size and sweep.loss_trace.shape[0] > 1:
        if eps > 0:
            # The run whose image is shown: a carried flip's curve is the smaller ε's.
            ran_at = float(sweep.eps_grid[sweep.source[index]]) if sweep.source is not None else eps
            st.plotly_chart(loss_figure(sweep.loss_trace[:, index], ran_at, trace_label), key=f"{key}_loss",
                            config={"displayModeBar": False})
        else:  # a flat line on an axis from −1 to 1 said nothing
            st.caption(f"At ε = 0 the attack cannot move the image: no {trace_label} curve to draw.")
    _downloads(sweep, index, classes, label=label, key=key, attack=attack, norm=norm, scale=scale)


def download_stem(model: str, attack: str, cls: str, eps: float) -> str:
    """A file name stem naming the model, the attack with its settings, the class and ε, so the slides of two
    attacks on one example do not overwrite each other in a downloads folder."""
    return f"{slug(model)}_{slug(attack)}_class-{slug(cls)}_eps-{eps:.4g}"


def _downloads(sweep: Any, index: int, classes: Sequence[str], *, label: str, key: str, attack: str, norm: str,
               scale: float) -> None:
    """The slide strip and the adversarial image as PNG buttons. Both files are made only when clicked (a
    callable): bytes would be re-registered under a new URL on every slider move, and the browser's check of the
    URL it had just been sent then hit a 404 when the slider moved fast ("Download Button source error")."""
    eps, x_adv, pred = float(sweep.eps_grid[index]), sweep.x_adv[index], int(sweep.pred_adv[index])
    name = label.partition(": ")[2] or label
    stem = download_stem(name, attack, classes[sweep.y], eps)
    left, right = st.columns(2)
    titles = (f"clean → {classes[sweep.pred_clean]}", "perturbation δ", f"adversarial → {classes[pred]}")
    found = sweep.carried(index)
    footer = slide_footer(name, attack, eps, scale, None if found is None else float(sweep.eps_grid[found]))
    left.download_button("Slide PNG", functools.partial(strip_png, sweep.x, x_adv, titles, footer),
                         file_name=f"attack-lab_{stem}.png", mime="image/png", key=f"{key}_strip",
                         icon=":material/download:", on_click="ignore",
                         help="Clean | perturbation | adversarial, enlarged with crisp pixels and labelled with "
                              "the attack, ε and the model: for slides and reports.")
    right.download_button("Adversarial PNG", functools.partial(png_bytes, sweep.x, x_adv, eps, norm),
                          file_name=f"adversarial_{stem}.png", mime="image/png", key=f"{key}_png",
                          icon=":material/download:", on_click="ignore",
                          help="The adversarial image itself at its native resolution, 8-bit, to feed to another "
                               "tool. Its levels are rounded inside the ε-ball, so it keeps the budget; rounding "
                               "can still undo a very small perturbation.")
