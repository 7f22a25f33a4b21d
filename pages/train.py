"""Training page: a validated form that queues a background training job, and the live jobs panel."""

import streamlit as st

from core.training import METHODS, SCHEDULES
from core.training.config import default_eps, norms_for
from dashboard import cache, state
from dashboard.components.jobs import jobs_panel
from dashboard.components.labels import (ARCH_LABELS, METHOD_LABELS, NORM_LABELS, SCHEDULE_LABELS,
                                         SHORT_METHOD_LABELS, label)
from dashboard.components.train_form import (DALE_METHODS, KEEP, RangedFields, beta_field, checked_eps,
                                             class_weight_fields, dale_fields, eps_field, queue_training,
                                             weighting_select)
from dashboard.components.teaching import explain

dataset = st.session_state[state.DATASET]
spec = cache.dataset_specs()[dataset]
st.title("Train a model")
explain("Training runs in a **separate process**: you can switch pages, reload or even restart the dashboard and "
        "the job goes on. Each epoch is checkpointed; an interrupted job resumes from its last finished epoch. "
        "**ERM** trains on clean inputs; **FGSM-RS / N-FGSM** on one-step attacks (fast, but watch for "
        "*catastrophic overfitting*: PGD accuracy suddenly collapsing); **PGD-AT** on multi-step attacks; "
        "**TRADES** balances clean accuracy against a KL robustness term with β, and **MART** weighs a KL term on the "
        "misclassified points with its own β; **DALE** keeps the clean loss below a bound ρ with a learned weight ν "
        "and trains on Langevin samples instead of one worst case.", "madry", "dale")
st.markdown(f"Dataset: **{dataset}** ({spec['description']}) — change it in the sidebar.")
if spec["needs_files"] and cache.missing_files(dataset):
    st.warning(f"**{dataset}** needs its standard files, which are not on this machine. Run "
               f"`python -m core data download {dataset}` (with a network) or place them in the data folder; "
               "until then no job can start for it.", icon=":material/folder_off:")

archs = cache.trainable_archs(dataset)  # plugin architectures too, when they fit the data
norms = list(norms_for(spec["input_shape"]))
# Outside the form: the fields below depend on them (ε's range on the threat model, β and DALE's on the method).
c1, c2, c3, c4 = st.columns(4)
arch = c1.selectbox("Architecture", archs, key="train_arch", persist_state=KEEP,
                    format_func=lambda a: label(ARCH_LABELS, a) if a in ARCH_LABELS else f"{a} (plugin)")
method = c2.selectbox("Method", list(METHODS), index=list(METHODS).index("pgd-at"), key="train_method",
                      persist_state=KEEP,
                      format_func=lambda m: label(METHOD_LABELS, m),
                      help="\n".join(f"- **{label(SHORT_METHOD_LABELS, m)}**: {METHODS[m].description}"
                                     for m in METHODS))
norm = c3.selectbox("Threat model", norms, key="train_norm", persist_state=KEEP,
                    format_func=lambda n: label(NORM_LABELS, n))
weighting = weighting_select(c4, key="train")
ranged = RangedFields()
# No Enter-to-submit: its "Press Enter to submit form" hint overflowed these narrow fields and covered the next one.
with st.form("train_form", enter_to_submit=False):
    c1, c2, c3, c4 = st.columns(4)
    eps, eps_high = eps_field(c1, norm, spec["input_shape"], key=f"train_eps_{dataset}_{norm}",
                              default=default_eps(dataset), ranged=ranged, method=method)
    steps = ranged.number(c2, "Attack steps", 1, 100, value=5, key="train_steps")
    step_size = ranged.number(c3, "Attack step size (0 = 2.5·ε/steps)", 0.0, 1.0, value=0.0, step=0.005,
                              format="%g", key="train_step_size")
    betas = beta_field(c4, ranged, method, key="train")
    dale = {}
    if method in DALE_METHODS:
        st.caption("DALE (Robey et al. 2021): the clean loss is kept below ρ by a learned weight ν, moved by the dual "
                   "step η_d after every SGD step (η_d = 0 keeps ν at ν₀); perturbations are Langevin samples.")
        dale = dale_fields("train", ranged)
    weight_fields = class_weight_fields(weighting, len(spec["classes"]), ranged, key="train")
    c1, c2, c3, c4 = st.columns(4)
    epochs = ranged.number(c1, "Epochs", 1, 500, value=10, key="train_epochs")
    lr = ranged.number(c2, "Learning rate", 1e-5, 10.0, value=0.05, format="%g", key="train_lr")
    schedule = c3.selectbox("Schedule", SCHEDULES, index=SCHEDULES.index("onecycle"), key="train_schedule",
                            persist_state=KEEP,
                            format_func=lambda s: label(SCHEDULE_LABELS, s))
    batch = ranged.number(c4, "Batch size", 1, 4096, value=32, key="train_batch")
    c1, c2, c3 = st.columns(3)
    seed = ranged.number(c1, "Seed", 0, 2**31 - 1, value=0, key="train_seed")
    name = c2.text_input("Name (optional)", key="train_name", persist_state=KEEP)
    parallel = c3.checkbox("Run in parallel", key="train_parallel", persist_state=KEEP,
                           help="Start now even if another job is training on this device")
    gpus = len(cache.devices()) - 1
    processes = 1
    if gpus > 1:
        processes = st.selectbox("GPUs", list(range(1, gpus + 1)), index=gpus - 1, key="train_gpus", persist_state=KEEP,
                                 help="More than one runs the job under torchrun with DistributedDataParallel, one "
                                      "process per GPU; the batch size is the global batch and must divide evenly")
    submitted = st.form_submit_button("Start training", type="primary")


def form_fields() -> dict:
    ranged.check()  # every field's problem at once (ε's and DALE's too), not the first only
    return dict(dataset=dataset, arch=arch, method=method, norm=norm, eps=checked_eps(eps, eps_high),
                attack_steps=int(steps), attack_step_size=float(step_size) or None, **betas, **dale, **weight_fields(),
                epochs=int(epochs), lr=float(lr), schedule=schedule, batch_size=int(batch), seed=int(seed),
                name=name.strip(), device=st.session_state[state.DEVICE])


queued = queue_training(form_fields, exclusive=not parallel, processes=processes) if submitted else None

st.subheader("Jobs")
jobs_panel(queued=queued)  # the notes on waiting and resuming jobs come from the queue, at every rerun
