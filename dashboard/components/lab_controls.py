"""The Attack Lab's inputs: which example (by class, index, at random, among those that flip, or uploaded) and
which attack with which parameters. Each returns a small frozen record the page hands to the cached engine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from core.errors import AtlasError
from core.evaluation.bundle import eps_range
from core.evaluation.lab import LAB_STEP_BUDGET, lab_eps_grid, sweep_cost
from dashboard import cache, state
from dashboard.components import lab_views
from dashboard.components.labels import md
from dashboard.components.train_form import checked_number

GRID_POINTS = 41
# Non-widget key: the norm the user last picked, kept when another attack supports it.
NORM_CHOICE = "lab_norm_choice"
# Non-widget key: the id of the upload whose true class the picker holds; another file resets the picker.
UPLOAD_SEEN = "lab_upload_seen"
UPLOAD_LABEL = "lab_upload_label"
# The uploaded image's preview, in CSS pixels.
PREVIEW_PX = 112
# Below this temperature the tempered softmax is one-hot to float precision on a confident example.
LOW_TEMPERATURE = 0.1
MODES = ("By class", "By index", "At random", "Among those that flip", "Upload your own")


@dataclass(frozen=True)
class Example:
    key: str
    x: Any          # torch tensor, the dataset's input shape
    y: int
    label: str
    index: int | None = None  # its test index; None for an upload


@dataclass(frozen=True)
class AttackChoice:
    name: str
    items: tuple[tuple[str, Any], ...]
    grid: tuple[float, ...]
    norm: str
    label: str
    trace_label: str | None
    start_index: int
    cost: float     # gradient steps per grid point for one model (core.evaluation.lab.sweep_cost)
    settings: str = ""  # its main parameters in words ("10 steps, untargeted"), for captions and slides

    @property
    def summary(self) -> str:
        """The attack with its norm and main parameters: "PGD (ℓ∞), 10 steps, untargeted"."""
        return f"{self.label}, {self.settings}" if self.settings else self.label


# label → (registry name, fixed kwargs, norms it supports, parameters it takes, what its trace records)
ATTACK_UI: dict[str, tuple[str, dict[str, Any], tuple[str, ...], tuple[str, ...], str | None]] = {
    "PGD": ("pgd", {}, ("linf", "l2"), ("steps", "restarts", "target"), "cross-entropy loss"),
    "FGSM": ("fgsm", {}, ("linf", "l2"), (), None),
    "Temperature-PGD": ("tpgd", {}, ("linf", "l2"), ("steps", "temperature", "target"), "tempered CE loss"),
    "APGD-CE": ("apgd", {}, ("linf", "l2"), ("steps",), "cross-entropy loss"),
    "APGD-DLR, targeted (top 3)": ("apgd", {"loss": "dlr", "targets": 3}, ("linf", "l2"), ("steps",),
                                   "DLR loss (first target)"),
    "DeepFool (minimal)": ("deepfool", {}, ("linf", "l2"), (), None),
    "FMN (minimal)": ("fmn", {}, ("linf", "l2"), ("steps",), None),
    "C&W-ℓ2 (minimal)": ("cw", {}, ("l2",), ("steps",), None),
    "Square (black-box)": ("square", {}, ("linf",), ("queries",), None),
    "Quick ensemble": ("quick", {}, ("linf", "l2"), ("steps",), None),
}


def _flipping_indices(run_id: str, device: str, dataset: str, eps: float, norm: str) -> np.ndarray:
    from core.evaluation.suite import EvalSpec

    spec = EvalSpec.make(run_id=run_id, dataset=dataset, attack="pgd", attack_kwargs={"steps": 10, "norm": norm},
                         eps_grid=(eps,))
    table, _ = cache.evaluation(spec, device)
    col = [c for c in table.columns if c.startswith("pred_adv@")][0]
    return table.loc[(table["pred_clean"] == table["y"]) & (table[col] != table["y"]), "index"].to_numpy()


def _from_dataset(data: Any, index: int, how: str) -> Example:
    y = int(data.y[index])
    return Example(key=f"{data.name}:{data.split}:{index}", x=data.x[index], y=y,
                   label=f"{data.name} test #{index} (class {data.classes[y]}, {how})", index=index)


def _upload(data: Any) -> Example | None:
    from core.data.upload import MAX_UPLOAD_BYTES, image_to_input

    limit = MAX_UPLOAD_BYTES // 2**20
    # Any file type is taken: the browser's own refusal of a wrong type was a bare red chip that stayed after later
    # good uploads; here the file is read and a non-image gets a message naming the file and what was expected.
    file = st.file_uploader(f"Your image (PNG, JPEG, GIF, BMP, WebP or TIFF, ≤ {limit} MB)", key="lab_upload",
                            max_upload_size=limit)
    left, right = st.columns(2)
    invert = left.radio("Invert", ("auto", "yes", "no"), horizontal=True, key="lab_invert",
                        help="Digits and MNIST are light strokes on black; 'auto' inverts a dark drawing on white.")
    if file is None:
        st.info("Upload an image; it is converted to the dataset's size and channels. (A link or a reload opens "
                "this uploader empty: an uploaded image is never put in a link. To share a view, pick a test image "
                "by class or by index.)")
        return None
    if st.session_state.get(UPLOAD_SEEN) != file.file_id:
        # A new file (even after a removal in between) must not be attacked under the previous file's class.
        st.session_state[UPLOAD_SEEN] = file.file_id
        st.session_state.pop(UPLOAD_LABEL, None)
    raw = file.getvalue()
    background = "dark" if data.name in ("digits", "mnist", "fashion-mnist") else "light"
    try:
        array, notes = image_to_input(raw, tuple(data.input_shape), invert=invert, background=background)
    except AtlasError as exc:
        st.error(f"{md(file.name)}: {exc}")
        return None
    import torch

    # No default: a silent "0" made every upload of another digit start out misclassified.
    label = right.selectbox("True class of your image", range(len(data.classes)), index=None,
                            key=UPLOAD_LABEL, placeholder="choose its class",
                            format_func=lambda c: str(data.classes[c]))
    # What the model will see, before the class is chosen: a drawing that came out inverted or cropped shows here.
    picture, notes_column = st.columns([1, 6], vertical_alignment="center")
    picture.image(lab_views.enlarged_rgb(array, PREVIEW_PX), width=PREVIEW_PX)
    size = " × ".join(str(n) for n in data.input_shape[1:])
    notes_column.caption(f"Beside this: what the model sees ({size} pixels, enlarged). Converted: "
                         + "; ".join(notes) + ".")
    if label is None:
        st.info("Choose the **true class of your image** above: nothing is attacked until then, because an attack "
                "pushes the prediction away from the true class.")
        return None
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return Example(key=f"upload:{digest}:{invert}", x=torch.from_numpy(array), y=int(label),
                   label=f"your upload {file.name} (class {data.classes[label]})")


# The example picker's keys: in the URL, and shared by the two pages that show the picker (Attack Lab, Geometry).
PICKER_KEYS = ("lab_mode", "lab_class", "lab_which", "lab_index", "lab_flip")


# The dataset and test index of the picker's last example: the Features page starts on it where its sample holds it.
PICKED_TEST = "_picked_test"


def picked_test_index(dataset: str) -> int | None:
    """The test index the Attack Lab or Geometry showed last, if it was a test point of ``dataset``."""
    picked = st.session_state.get(PICKED_TEST)
    return picked[1] if picked and picked[0] == dataset else None


def _carry_picker(page: str) -> bool:
    """On the first run after switching to ``page``, give the picker's widgets their values again through the
    Session State API, and say whether it did. The values are still in ``st.session_state``, but a widget that took
    its value from a link (``bind``) and was never touched came back at its default on the other page (Streamlit
    1.67): a student who opened a lecturer's Attack Lab link for class 7 found class 0 on Geometry."""
    if st.session_state.get("_picker_page") == page:
        return False
    st.session_state["_picker_page"] = page
    for key in PICKER_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    return True


def pick_example(data: Any, run_id: str, device: str, page: str) -> Example | None:
    """The example picker (by class, by index, at random, among those that flip, an upload) of the Attack Lab and
    Geometry; its choice is in the URL and goes along from one of the two pages to the other."""
    carried = _carry_picker(page)
    example = _pick_example(data, run_id, device)
    if example is not None and example.index is not None:
        st.session_state[PICKED_TEST] = (data.name, example.index)
    else:  # an upload, or a refused choice: no test point to carry to Features
        st.session_state.pop(PICKED_TEST, None)
    if carried:
        # Carried values are shown at once but reach the URL only at the next rerun: a reload would lose them.
        state.write_carried_to_url(PICKER_KEYS)
    return example


def pick_point(data: Any) -> Example | None:
    """Geometry's picker for 2-D data: a test point by its index. A value out of range (typed, or ``?geo_index=inf``
    in a link, which stopped the page with a traceback) is named at the field; a link's moves to the nearer end."""
    index, problem = checked_number(st, f"Test point (0–{len(data) - 1})", 0, len(data) - 1, value=0, step=1,
                                    key="geo_index", bind=state.IN_URL)
    if problem:
        st.error(problem, icon=":material/error:")
        return None
    return Example(key=f"{data.name}:{data.split}:{int(index)}", x=data.x[int(index)], y=int(data.y[int(index)]),
                   label=f"{data.name} test #{int(index)}", index=int(index))


def _pick_example(data: Any, run_id: str, device: str) -> Example | None:
    # The way to pick and its inputs on one row where the page is wide enough (they wrap below it where not): on
    # two rows they pushed the Attack Lab's images below a 1366 × 768 window.
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
    mode = row.segmented_control("Example", MODES, default=MODES[0], key="lab_mode",
                                   bind=state.IN_URL) or MODES[0]
    n = len(data)
    if mode == "By class":
        counts = np.bincount(data.y.numpy(), minlength=len(data.classes))

        def keep_in_class() -> None:
            # Another class may have fewer images: its last one, not a refusal, for a "which one" past its end.
            which = st.session_state.get("lab_which")
            if isinstance(which, (int, float)) and which > counts[st.session_state["lab_class"]]:
                st.session_state["lab_which"] = int(counts[st.session_state["lab_class"]])

        cls = row.selectbox("Class", range(len(data.classes)), key="lab_class", on_change=keep_in_class,
                            bind=state.IN_URL, format_func=lambda c: str(data.classes[c]), width=130)
        members = np.nonzero(data.y.numpy() == cls)[0]
        which, problem = checked_number(row, f"Which one (1–{len(members)})", 1, len(members), value=1, step=1,
                                        key="lab_which", width=150, bind=state.IN_URL)
        if problem:
            st.error(problem, icon=":material/error:")
            return None
        return _from_dataset(data, int(members[int(which) - 1]), f"#{which} of its class")
    if mode == "By index":
        index, problem = checked_number(row, f"Test index (0–{n - 1})", 0, n - 1, value=0, step=1, key="lab_index",
                                        width=180, bind=state.IN_URL)
        if problem:
            st.error(problem, icon=":material/error:")
            return None
        return _from_dataset(data, int(index), "by index")
    if mode == "At random":
        if row.button("Another one", icon=":material/casino:", key="lab_draw"):
            st.session_state["lab_draws"] = st.session_state.get("lab_draws", 0) + 1
        draw = st.session_state.get("lab_draws", 0)
        index = int(np.random.default_rng(draw).integers(n))
        return _from_dataset(data, index, f"random draw {draw}")
    if mode == "Among those that flip":
        run = cache.registry().get_run(run_id)
        eps, norm = float(run["eps"] or 0.1), run["norm"] if run["norm"] in ("linf", "l2") else "linf"
        with st.spinner("Finding the examples PGD-10 flips…"):
            flipping = _flipping_indices(run_id, device, data.name, eps, norm)
        if len(flipping) == 0:
            st.info(f"PGD-10 at ε = {eps:g} flips none of this model's test points; pick another way.")
            return None
        index = st.selectbox(f"{len(flipping)} test points that PGD-10 flips at the model's ε = {eps:g}",
                             flipping.tolist(), key="lab_flip", bind=state.IN_URL,
                             format_func=lambda i: f"#{i} (class {data.classes[int(data.y[i])]})")
        return _from_dataset(data, int(index), "flips under PGD-10")
    return _upload(data)


def pick_attack(data: Any, run_id: str, example: Example | None) -> AttackChoice | None:
    """The attack and its parameters; ``example`` None (none picked yet) skips the check of a target class."""
    from core.attacks import ATTACKS

    run = cache.registry().get_run(run_id)
    labels = [k for k, v in ATTACK_UI.items() if v[0] in ATTACKS]
    # Wide enough at a 1024 px window with the sidebar open for "untargeted" and a 4-digit step count.
    cols = st.columns([3, 2, 2, 2, 3])
    label = cols[0].selectbox("Attack", labels, key="lab_attack", bind=state.IN_URL)
    name, fixed, norms, params, trace_label = ATTACK_UI[label]
    norm = _pick_norm(cols[1], label, norms, run["norm"], key=f"lab_norm_{name}")
    kwargs: dict[str, Any] = {**fixed, "norm": norm}
    problems: list[str] = []

    def number(target: Any, label: str, low: float, high: float, **field: Any) -> Any:
        value, problem = checked_number(target, label, low, high, **field)
        if problem:
            problems.append(problem)
        return value if value is not None else low

    slot = 2
    for param in params:
        target = cols[slot] if slot < len(cols) else st
        slot += 1
        if param == "steps":
            kwargs["steps"] = int(number(target, "Steps", 1, 1000, value=10 if name in ("pgd", "tpgd") else 100,
                                         step=1, key=f"lab_steps_{name}", bind=state.IN_URL))
        elif param == "restarts":
            kwargs["restarts"] = int(number(target, "Restarts", 1, 20, value=1, step=1, key="lab_restarts",
                                            bind=state.IN_URL))
            if kwargs["restarts"] > 1:
                kwargs["random_start"] = True
        elif param == "temperature":
            kwargs["temperature"] = float(number(target, "Temperature T", 0.01, 100.0, value=1.0, step=0.1,
                                                 key="lab_temperature", format="%g", bind=state.IN_URL))
        elif param == "queries":
            kwargs["queries"] = int(number(target, "Queries", 10, 10000, value=1000, step=100, key="lab_queries",
                                            bind=state.IN_URL))
        elif param == "target":
            # -1, not None, for "untargeted": Streamlit shows a None value as an empty picker.
            options = [-1, *range(len(data.classes))]
            chosen = target.selectbox("Target class", options, key=f"lab_target_{name}", bind=state.IN_URL,
                                      format_func=lambda c: "untargeted" if c < 0 else str(data.classes[c]))
            if chosen >= 0:
                if example is not None and chosen == example.y:
                    st.error(f"The target class {data.classes[chosen]} is this example's true class: a targeted "
                             "attack needs another class.")
                    return None
                kwargs["target"] = int(chosen)
    if problems:
        st.error("Not attacked: " + "; ".join(problems), icon=":material/error:")
        return None
    if name == "tpgd" and kwargs["temperature"] < LOW_TEMPERATURE:
        st.info(f"At T = {kwargs['temperature']:g} the softmax saturates: the tempered loss is flat and its "
                "gradients vanish, so the attack barely moves. If nothing flips, that is gradient masking, not "
                "robustness — try T between 0.1 and 10.")
    own_eps = float(run["eps"]) if run["eps"] and run["norm"] == norm else None
    top = eps_range(norm, tuple(data.input_shape), own_eps)
    grid = lab_eps_grid(top, own_eps, GRID_POINTS)
    start_eps = own_eps if own_eps is not None else top / 4
    start = int(np.abs(np.asarray(grid) - start_eps).argmin())
    return AttackChoice(name=name, items=tuple(sorted(kwargs.items())), grid=grid, norm=norm,
                        label=f"{label} ({'ℓ∞' if norm == 'linf' else 'ℓ2'})", trace_label=trace_label,
                        start_index=start, cost=sweep_cost(name, kwargs),
                        settings=_settings(kwargs, params, data.classes))


def _settings(kwargs: dict[str, Any], params: tuple[str, ...], classes: Any) -> str:
    """The parameters the user set for this attack, in words, so two slides of different attacks differ."""
    parts = []
    if "steps" in params:
        parts.append(f"{kwargs['steps']} step{'s' if kwargs['steps'] != 1 else ''}")
    if kwargs.get("restarts", 1) > 1:
        parts.append(f"{kwargs['restarts']} restarts")
    if "temperature" in params:
        parts.append(f"T = {kwargs['temperature']:g}")
    if "queries" in params:
        parts.append(f"{kwargs['queries']:,} queries")
    if "target" in params:
        parts.append(f"targeted at class {classes[kwargs['target']]}" if "target" in kwargs else "untargeted")
    return ", ".join(parts)


def _pick_norm(column: Any, label: str, norms: tuple[str, ...], own_norm: str | None, *, key: str) -> str:
    """The norm picker of one attack. It starts on the norm the user last picked for any attack when this attack
    supports it, else on the model's own norm; a forced change is said on screen."""
    names = {"linf": "ℓ∞", "l2": "ℓ2"}
    chosen = st.session_state.get(NORM_CHOICE)
    if key not in st.session_state:  # the picker is new on screen (first visit or another attack before)
        st.session_state[key] = chosen if chosen in norms else own_norm if own_norm in norms else norms[0]
    norm = column.selectbox("Norm", norms, key=key, format_func=names.__getitem__, bind=state.IN_URL,
                            on_change=lambda: st.session_state.__setitem__(NORM_CHOICE, st.session_state[key]))
    if chosen is not None and chosen not in norms:
        st.caption(f"{label} supports only {', '.join(names[n] for n in norms)}, so the norm is "
                   f"{names[norm]} here; your {names[chosen]} choice returns with the other attacks.")
    return norm


def within_budget(attack: AttackChoice, runs: list[str]) -> bool:
    """Refuse, on screen and before any work, a sweep whose cost over all models is beyond LAB_STEP_BUDGET."""
    n_models = len(runs)
    total = attack.cost * n_models
    if total <= LAB_STEP_BUDGET:
        return True
    items = dict(attack.items)
    shown = {k: items[k] for k in ("steps", "restarts", "queries", "target") if k in items}
    settings = ", ".join(f"{k} {v}" for k, v in shown.items() if k != "target")
    cli = " ".join([f"python -m core eval --run {runs[0]} --attack {attack.name} --norm {attack.norm}",
                    *(f"--{k} {v}" for k, v in shown.items())])
    per_model = LAB_STEP_BUDGET / n_models
    st.error(
        f"Too much work for a live page: {attack.label} with {settings or 'these settings'} costs about "
        f"{attack.cost:,.0f} gradient steps per model{f' × {n_models} models' if n_models > 1 else ''} = "
        f"{total:,.0f}; the Attack Lab allows {LAB_STEP_BUDGET:,} (about half a minute on a laptop CPU), so "
        "nothing was attacked.\n\n"
        f"Instead: lower the steps, restarts or queries (at most {per_model:,.0f} gradient steps per model"
        + (", or set the comparison model to none in the sidebar" if n_models > 1 else "") + "), or run long "
        f"attacks on many test points from the **Robustness** page (background evaluations) or the command line: "
        f"`{cli}`.",
        icon=":material/timer:")
    return False
