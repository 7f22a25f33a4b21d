"""Training page: a validated form that queues a background training job, and the live jobs panel."""

import streamlit as st

from core.distributed import DistContext
from core.errors import AtlasError
from core.jobs import submit_job
from core.training import METHODS, SCHEDULES, TrainConfig
from core.training.config import MAX_EPS, archs_for, default_eps
from core.training.preflight import preflight
from dashboard import cache, state
from dashboard.components.jobs import jobs_panel
from dashboard.components.teaching import explain

dataset = st.session_state[state.DATASET]
spec = cache.dataset_specs()[dataset]
st.title("Train a model")
explain("Training runs in a **separate process**: you can switch pages, reload or even restart the dashboard and "
        "the job goes on. Each epoch is checkpointed; an interrupted job resumes from its last finished epoch. "
        "**ERM** trains on clean inputs; **FGSM-RS / N-FGSM** on one-step attacks (fast, but watch for "
        "*catastrophic overfitting*: PGD accuracy suddenly collapsing); **PGD-AT** on multi-step attacks; "
        "**TRADES** balances clean accuracy against a KL robustness term with β.", "madry", "dale")
st.markdown(f"Dataset: **{dataset}** ({spec['description']}) — change it in the sidebar.")
if spec["needs_files"] and cache.missing_files(dataset):
    st.warning(f"**{dataset}** needs its standard files, which are not on this machine. Run "
               f"`python -m core data download {dataset}` (with a network) or place them in the data folder; "
               "until then no job can start for it.", icon=":material/folder_off:")

archs = archs_for(spec["input_shape"])
with st.form("train_form"):
    c1, c2, c3 = st.columns(3)
    arch = c1.selectbox("Architecture", archs, key="train_arch")
    method = c2.selectbox("Method", list(METHODS), index=list(METHODS).index("pgd-at"), key="train_method",
                          help="\n".join(f"- **{m}**: {METHODS[m].description}" for m in METHODS))
    norm = c3.selectbox("Threat model", ["l2patch"] if spec["kind"] == "theory" else ["linf", "l2"],
                        key="train_norm")
    c1, c2, c3, c4 = st.columns(4)
    eps = c1.number_input("ε (input scale [0,1])", min_value=0.0, max_value=MAX_EPS["l2"],
                          value=default_eps(dataset), step=0.01, format="%.3f", key=f"train_eps_{dataset}",
                          help=f"At most {MAX_EPS['linf']:g} for ℓ∞ (the whole [0,1] range)")
    steps = c2.number_input("Attack steps", min_value=1, max_value=100, value=5, key="train_steps")
    step_size = c3.number_input("Attack step size (0 = 2.5·ε/steps)", min_value=0.0, max_value=1.0, value=0.0,
                                step=0.005, format="%.4f", key="train_step_size")
    beta = c4.number_input("TRADES β (TRADES only)", min_value=0.0, max_value=50.0, value=3.0, key="train_beta")
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", min_value=1, max_value=500, value=10, key="train_epochs")
    lr = c2.number_input("Learning rate", min_value=1e-5, max_value=10.0, value=0.05, format="%.4f", key="train_lr")
    schedule = c3.selectbox("Schedule", SCHEDULES, index=SCHEDULES.index("onecycle"), key="train_schedule")
    batch = c4.number_input("Batch size", min_value=1, max_value=4096, value=32, key="train_batch")
    c1, c2, c3 = st.columns(3)
    seed = c1.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="train_seed")
    name = c2.text_input("Name (optional)", key="train_name")
    parallel = c3.checkbox("Run in parallel", key="train_parallel",
                           help="Start now even if another job is training on this device")
    gpus = len(cache.devices()) - 1
    processes = 1
    if gpus > 1:
        processes = st.selectbox("GPUs", list(range(1, gpus + 1)), index=gpus - 1, key="train_gpus",
                                 help="More than one runs the job under torchrun with DistributedDataParallel, one "
                                      "process per GPU; the batch size is the global batch and must divide evenly")
    submitted = st.form_submit_button("Start training", type="primary")

if submitted:
    try:
        config = TrainConfig(dataset=dataset, arch=arch, method=method, norm=norm, eps=float(eps),
                             attack_steps=int(steps), attack_step_size=float(step_size) or None,
                             trades_beta=float(beta), epochs=int(epochs), lr=float(lr), schedule=schedule,
                             batch_size=int(batch), seed=int(seed), name=name.strip(),
                             device=st.session_state[state.DEVICE])
        preflight(config)
        args = config.to_dict()
        if processes > 1:
            DistContext(world_size=processes).check_batch(config.batch_size)
            args["processes"] = processes
        job_id = submit_job(cache.registry(), "train", args, device=config.device, exclusive=not parallel)
        st.session_state["train_chart_job"] = job_id
        st.success(f"Queued job `{job_id}`. Progress appears below.")
    except AtlasError as exc:
        st.error(f"Not started: {exc}")

st.subheader("Jobs")
jobs_panel()
