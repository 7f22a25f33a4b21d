"""Parts of the training forms that the Train page and the Trade-off Explorer's DALE launcher share: number fields
whose ranges the app checks, the ε field, the DALE fields, the class weights, and queueing with refusals that name
the fields the user sees."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import streamlit as st

from core.distributed import DistContext
from core.errors import AtlasError, ConfigError
from core.jobs import submit_job
from core.training import TrainConfig
from core.training.config import DALE_NOISES, MAX_EPS, class_weights_problem, eps_problem
from core.training.preflight import preflight
from dashboard import cache, state
from dashboard.components.labels import NOISE_LABELS, SHORT_METHOD_LABELS, WEIGHTING_LABELS, input_scale

DALE_METHODS = ("dale", "dale-kl")
WEIGHTS_LABEL = "Fixed weights (one per class, comma-separated; only with Class weighting = fixed)"
WEIGHTINGS = ("none", "adaptive", "fixed")
def eps_label(norm: str, input_shape: Sequence[int]) -> str:
    """The ε field's label in the words the analysis pages use."""
    if norm == "l2patch":
        return "ε (ℓ2 radius per patch)"
    return f"ε ({'ℓ∞' if norm == 'linf' else 'ℓ2'}, {input_scale(input_shape)})"

# The β of the methods that weigh a KL term: TrainConfig field, label, the form's default.
BETAS = {"trades": ("trades_beta", "TRADES β", 3.0), "mart": ("mart_beta", "MART β", 5.0)}
# Runs from the Train page have always carried TRADES β = 3 (its field's default): kept, so their run ids stay.
FORM_TRADES_BETA = 3.0


def eps_limit(input_shape: Sequence[int], norm: str) -> float:
    """The largest ε that means something for this data: ℓ∞ 1 (the whole [0,1] range), ℓ2 the diameter √d of
    [0,1]^d, per-patch ℓ2 (patch data is not in [0,1]) the engine's limit."""
    if norm == "l2":
        return min(MAX_EPS["l2"], round(math.sqrt(math.prod(input_shape)), 3))
    return MAX_EPS[norm]


def shown(number: float) -> str:
    """A bound or a value as the user would type it: 0.00001 rather than 1e-05."""
    if number != 0 and 1e-6 <= abs(number) < 1e-4:
        return f"{number:.10f}".rstrip("0")
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))  # a seed's bound reads 2147483647, not 2.14748e+09
    return f"{number:g}"


# The training forms' fields keep what was typed when the user leaves the page and comes back (Streamlit drops a
# widget's value on a page switch otherwise): a teacher who trained 5 epochs found 10 back on the form, beside the
# job's "5 epochs", and a second Start would have launched a longer run.
KEEP = "session"

class RangedFields:
    """Number fields whose range is checked by the app when the form is submitted, not by the browser. A field
    with min_value/max_value keeps an out-of-range entry in the browser (it only turns red) and never sends it to the
    script, so "Start training" could say nothing about it; here every entry reaches the script and :meth:`check`
    names each field that is out of its range, with the range, together with the form's other checks (ε, DALE's
    fields) registered by :meth:`require`: one refusal lists every problem, not the first only."""

    def __init__(self) -> None:
        self._checks: list[Callable[[], str | None]] = []

    def number(self, container: Any, label: str, low: float, high: float, *, checked: bool = True,
               **kwargs: Any) -> Any:
        """``container.number_input(label, **kwargs)`` without browser bounds; its value is checked against
        [low, high] by :meth:`check` (unless ``checked`` is False: a field that is off and not used)."""
        value = container.number_input(label, **{"persist_state": KEEP, **kwargs})
        if checked:
            self.require(lambda: _out_of_range(label, value, low, high))
        return value

    def require(self, problem: Callable[[], str | None]) -> None:
        """Add a check to :meth:`check`: ``problem()`` describes what is wrong, or gives None."""
        self._checks.append(problem)

    def check(self) -> None:
        """Raise ConfigError naming every problem, in the order of the fields on the form."""
        wrong = [text for problem in self._checks if (text := problem())]
        if wrong:
            raise ConfigError("; ".join(wrong))


def checked_number(container: Any, label: str, low: float, high: float, **kwargs: Any) -> tuple[Any, str | None]:
    """``container.number_input(label, **kwargs)`` without browser bounds, and what is wrong with its value (None
    when it is in [low, high]) for the caller to show and act on. With the bounds in the browser an entry outside
    them only turned red and the page went on with the previous value. For fields outside a form. A field bound to
    the URL takes a link's value outside the range as the nearer end (the app's link toast names both)."""
    if kwargs.get("bind") == state.IN_URL:
        state.clamp_url_number(kwargs["key"], low, high)
    value = container.number_input(label, **kwargs)
    return value, _out_of_range(label, value, low, high)


def _out_of_range(label: str, value: float | None, low: float, high: float) -> str | None:
    if value is None or not math.isfinite(value) or not low <= value <= high:
        return f"{label} is {'empty' if value is None else shown(value)}; allowed: {shown(low)} to {shown(high)}"
    return None


def eps_field(container: Any, norm: str, input_shape: Sequence[int], *, key: str, default: float,
              ranged: RangedFields | None = None, method: str | None = None) -> tuple[float | None, float]:
    """A number field for ε and the largest ε that means something for the data (checked by :func:`checked_eps`,
    not by the browser, for the reason in :class:`RangedFields`; with ``ranged``, also by its ``check()``, beside
    the other fields). It can be empty: clearing it or typing something that is not a number gives None (refused by
    :func:`checked_eps`), never a silent fallback. With ``method`` too, ``check()`` also names ε = 0 for a method
    that needs ε > 0 (with the other problems, not after them)."""
    high = eps_limit(input_shape, norm)
    st.session_state.setdefault(key, min(default, high))
    diameter = f": √{math.prod(input_shape)}, the diameter of the input cube" if norm == "l2" else ""
    # "%g": a tiny ε such as 1e-07 shows as itself, not as 0.000.
    value = container.number_input(eps_label(norm, input_shape), value=None, step=0.01, format="%g", key=key,
                                   persist_state=KEEP, placeholder="a number", help=f"Between 0 and {high:g}{diameter}")
    if ranged is not None:
        ranged.require(lambda: _refusal(checked_eps, value, high))
        if method is not None:
            shown_as = SHORT_METHOD_LABELS.get(method, method)
            ranged.require(lambda: None if value is None else eps_problem(method, value, shown_as))
    return value, high


def checked_eps(eps: float | None, high: float) -> float:
    if eps is None or not math.isfinite(eps):
        raise ConfigError(f"ε is empty or not a number: type a value between 0 and {high:g}")
    if not 0 <= eps <= high:
        raise ConfigError(f"ε is {eps:g}; allowed: 0 to {high:g}")
    return float(eps)


def _refusal(check: Callable[..., Any], *args: Any) -> str | None:
    """The message of the ConfigError ``check(*args)`` raises, or None."""
    try:
        check(*args)
    except ConfigError as exc:
        return str(exc)
    return None


def beta_field(container: Any, ranged: RangedFields, method: str, *, key: str) -> dict[str, Any]:
    """The TRADES β or MART β field for those methods, as TrainConfig fields (with the form's fixed TRADES β for
    every other method); its value may be None until ``ranged.check()`` has refused it."""
    fields: dict[str, Any] = {"trades_beta": FORM_TRADES_BETA}
    if method in BETAS:
        name, label, default = BETAS[method]
        fields[name] = ranged.number(container, label, 0.0, 50.0, value=default, key=f"{key}_{name}",
                                     help="Weight of the KL term between the clean and the adversarial predictions")
    return fields


# Each DALE number field's label and whether 0 itself is refused (TrainConfig: ρ > 0, the others ≥ 0).
DALE_LOWER_BOUNDS = {"dale_rho": ("ρ (clean-loss bound)", True),
                     "dale_noise_scale": ("Langevin noise scale c", False),
                     "dale_nu": ("ν₀ (initial ν)", False),
                     "dale_dual_lr": ("η_d (dual step)", False)}


def dale_fields(key: str, ranged: RangedFields | None = None) -> dict[str, Any]:
    """ρ, the Langevin noise and its scale, ν₀ and η_d as TrainConfig fields; widget keys ``{key}_rho``,
    ``{key}_noise``, ``{key}_scale``, ``{key}_nu0``, ``{key}_dual``. With ``ranged``, its ``check()`` also names
    every one of them below its lower bound (TrainConfig's bounds, in TrainConfig's words)."""
    c1, c2, c3, c4, c5 = st.columns(5)
    # No help icons on the number fields: their buttons are labelled "Help for <label>", which makes a field's
    # label ambiguous to screen readers and browser tests.
    fields = {
        "dale_rho": float(c1.number_input("ρ (clean-loss bound)", value=0.1, format="%g", key=f"{key}_rho",
                                          persist_state=KEEP)),
        "dale_noise": c2.selectbox("Langevin noise", DALE_NOISES, key=f"{key}_noise", format_func=NOISE_LABELS.get,
                                   persist_state=KEEP,
                                   help="Laplacian: inside the sign step; Gaussian: added after it"),
        "dale_noise_scale": float(c3.number_input("Langevin noise scale c", value=1e-3, format="%g",
                                                  key=f"{key}_scale", persist_state=KEEP)),
        "dale_nu": float(c4.number_input("ν₀ (initial ν)", value=1.0, format="%g", key=f"{key}_nu0",
                                          persist_state=KEEP)),
        "dale_dual_lr": float(c5.number_input("η_d (dual step)", value=1e-3, format="%g",
                                              key=f"{key}_dual", persist_state=KEEP)),
    }
    if ranged is not None:
        for name, (label, strict) in DALE_LOWER_BOUNDS.items():
            ranged.require(lambda value=fields[name], label=label, strict=strict: _below_zero(label, value, strict))
    return fields


def _below_zero(label: str, value: float, strict: bool) -> str | None:
    if not math.isfinite(value):
        return f"{label} must be a finite number, got {value!r}"
    if value < 0 or (strict and value == 0):
        return f"{label} must be {'>' if strict else '≥'} 0, got {value!r}"
    return None


def weighting_select(container: Any, *, key: str) -> str:
    """The Class-weighting choice. It sits outside the form: the weight fields inside follow it."""
    return container.selectbox("Class weighting", WEIGHTINGS, key=f"{key}_weighting", format_func=WEIGHTING_LABELS.get,
                               persist_state=KEEP,
                               help="How much each class's samples count in the training loss. Adaptive: weights "
                                    "follow each class's robust accuracy in the last epoch (the weakest classes "
                                    "count more); its strength 0 keeps equal weights, 1 makes each class's weight "
                                    "proportional to its robust error (the mean weight stays 1). Fixed: your "
                                    "weights, one per class")


def class_weight_fields(weighting: str, num_classes: int, ranged: RangedFields, *,
                        key: str) -> Callable[[], dict[str, Any]]:
    """Inside a form: the Fixed-weights box and the adaptive strength, each enabled only with its weighting. Gives
    a function that reads them into TrainConfig fields once ``ranged.check()`` has passed."""
    c1, c2 = st.columns([3, 1])
    text = c1.text_input(WEIGHTS_LABEL, key=f"{key}_weights", persist_state=KEEP, disabled=weighting != "fixed",
                         placeholder="e.g. " + ",".join(["1"] * (num_classes - 1) + ["2"]))
    if weighting == "fixed":
        ranged.require(lambda: weights_problem(text, num_classes))
    # No help icon (see dale_fields); the Class-weighting choice's help explains the strength.
    strength = ranged.number(c2, "Adaptive strength (0–1)", 0.0, 1.0, value=0.5, key=f"{key}_strength",
                             disabled=weighting != "adaptive", checked=weighting == "adaptive")

    def fields() -> dict[str, Any]:
        weights = parse_weights(text, num_classes) if weighting == "fixed" else ()
        adaptive = {"class_weight_strength": float(strength)} if weighting == "adaptive" else {}
        return dict(class_weighting=weighting, class_weights=weights, **adaptive)

    return fields


def parse_weights(text: str, num_classes: int) -> tuple[float, ...]:
    """The Fixed-weights box as one number per class; the values themselves are checked by TrainConfig."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigError(f"Fixed weights is empty: type one positive number per class ({num_classes}), "
                          "separated by commas")
    bad = next((part for part in parts if not _is_number(part)), None)
    if bad is not None:
        raise ConfigError(f"Fixed weights: {bad!r} is not a number; type one number per class, separated by commas")
    if len(parts) != num_classes:
        raise ConfigError(f"Fixed weights: {len(parts)} values but the dataset has {num_classes} classes; "
                          "type one per class")
    return tuple(float(part) for part in parts)


def weights_problem(text: str, num_classes: int) -> str | None:
    """What is wrong with the Fixed-weights box (its text or a value), or None: for ``RangedFields.require``."""
    try:
        weights = parse_weights(text, num_classes)
    except ConfigError as exc:
        return str(exc)
    return class_weights_problem(weights)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def queue_training(fields: Callable[[], dict[str, Any]], *, exclusive: bool = True,
                   processes: int = 1) -> str | None:
    """Read the form (``fields`` raises ConfigError on a value it cannot use), validate it as a TrainConfig, run
    the preflight checks and queue the job. A refusal is shown (``Not started: …``) and gives None: among them,
    settings whose run is already completed (core/jobs/reuse.py). Settings whose run exists unfinished resume it:
    the jobs panel says so while the job is queued or running (core.jobs.resume_text), not a note written here
    once, which stayed after the job was cancelled."""
    try:
        config = TrainConfig(**fields())
        preflight(config)
        args = config.to_dict()
        if processes > 1:
            DistContext(world_size=processes).check_batch(config.batch_size)
            args["processes"] = processes
        return submit_job(cache.registry(), "train", args, device=config.device, exclusive=exclusive)
    except AtlasError as exc:
        st.error(f"Not started: {exc}")
        # The message sits under the form, often below the fold when the button is at the bottom of the view.
        st.toast("Not started: see the message under the form.", icon=":material/error:")
        return None
