"""Training and evaluation under ``torchrun`` on CPU (gloo): real process groups, real subprocesses.

* DDP on 2 processes ends with the weights of one process on the same global batches (measured difference ~3e-8;
  asserted ≤ 1e-5: the only difference is the order of float additions in the gradient all-reduce), also with a
  random attack (DALE's Langevin chain): each rank draws for the whole global batch and keeps its rows.
* A sharded evaluation writes exactly the single-process per-sample table.
* A rank killed mid-run fails the run cleanly (one-line error, registry says failed, last epoch kept); the same
  command resumes it and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from core.distributed import DistContext
from core.errors import ConfigError
from core.evaluation import per_sample_table
from core.attacks import FGSM, PGD, Langevin
from core.attacks.shard import batch_shard
from core.attacks.trades import TRADESAttack
from core.data import load_dataset
from core.models import load_checkpoint
from core.store import Registry
from core.training import TrainConfig, run_id_for, train

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 4
TRAIN_FLAGS = ["--dataset", "digits", "--method", "erm", "--epochs", str(EPOCHS), "--batch-size", "64",
               "--eval-n", "32", "--eval-steps", "2", "--device", "cpu", "--quiet", "--json"]
CONFIG = TrainConfig(dataset="digits", method="erm", epochs=EPOCHS, batch_size=64, eval_n=32, eval_steps=2,
                     device="cpu")
ERM = ROOT / "assets" / "models" / "digits-smallcnn-erm.safetensors"


def torchrun(args: list[str], home: Path, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "ATLAS_HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    # "--" ends torchrun's own options: without it, torchrun reads our --n as an abbreviation of one of its own.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "core", "--",
           *args]
    return subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def ranks_said(err: str) -> str:
    """What a failed torchrun job's ranks said themselves, without the elastic agent's log lines and its summary
    (which name the failing rank and signal but not why): a fault's Python traceback comes from PYTHONFAULTHANDLER."""
    agent = ("torch/distributed/elastic", "torch/distributed/run.py", "torch/distributed/launcher")
    own = [line for line in err.splitlines() if not any(a in line for a in agent)]
    return "\n".join(own)[-4000:] + "\n--- end of the job: ---\n" + err[-1500:]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0].state_dict()


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("ddp")
    code, out, err = finish(torchrun(["train", *TRAIN_FLAGS], home))
    assert code == 0, ranks_said(err)
    return {"home": home, "result": json.loads(out.strip().splitlines()[-1])}


def test_ddp_training_matches_one_process_on_the_same_global_batch(ddp_run: dict, tmp_path: Path) -> None:
    result = ddp_run["result"]
    assert result["status"] == "completed" and result["epochs_done"] == EPOCHS
    assert result["run_id"] == run_id_for(CONFIG) and result["metrics"]["world_size"] == 2
    # Rank 0 alone wrote the registry: one run, one row per epoch.
    registry = Registry(ddp_run["home"])
    assert [r["id"] for r in registry.list_runs()] == [result["run_id"]]
    ddp_history = [e["metrics"] for e in registry.epochs(result["run_id"])]
    assert [m["epoch"] for m in ddp_history] == list(range(1, EPOCHS + 1))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(CONFIG, registry=Registry(tmp_path))
    finally:
        torch.set_num_threads(threads)
    # Equal up to float rounding: a shard of 32 sums its weight gradients in another order than a batch of 64. With
    # contiguous weights that left 1 ulp (1.2e-7) after 4 epochs; oneDNN's channels-last convolutions (the layout
    # core.models.registry.preferred_layout gives every conv model) leave ≈ 2e-5 on weights of size ≈ 0.1–0.5.
    assert max_diff(weights(single.checkpoint_path), weights(Path(result["checkpoint"]))) <= 1e-4
    # The epoch loss follows from those weights, also summed in another order: 4.6e-6 apart (relative 9e-6) on an
    # AVX-512 machine, 1e-7 on an AVX2 one.
    for one, two in zip(single.history, ddp_history):
        assert one["loss"] == pytest.approx(two["loss"], rel=1e-4)
        assert one["train_acc"] == two["train_acc"] and one["clean_acc"] == two["clean_acc"]
    # The run learned something, so equal weights are not equal untrained weights.
    assert single.history[-1]["clean_acc"] > 0.5


@pytest.mark.parametrize("attack", [PGD(steps=3), PGD(steps=3, norm="l2"), FGSM(random_start=True),
                                    Langevin(steps=3), Langevin(steps=3, noise="gaussian"), TRADESAttack(steps=3)],
                         ids=["pgd", "pgd-l2", "fgsm-rs", "langevin-laplace", "langevin-gauss", "trades"])
def test_an_attack_on_shares_of_a_batch_equals_the_attack_on_the_batch(attack) -> None:
    """Inside batch_shard every random draw is the global batch's, so the shares' adversarial examples are exactly
    the rows of the whole batch's (what makes torchrun training with random attacks equal one process)."""
    data = load_dataset("digits", "test")
    x, y = data.x[:48], data.y[:48]
    model = load_checkpoint(ERM)[0]
    whole = attack.perturb(model, x, y, 0.1, generator=torch.Generator().manual_seed(5))[0]
    shares = []
    for rows in torch.arange(48).tensor_split(3):
        with batch_shard(int(rows[0]), len(rows), 48):
            shares.append(attack.perturb(model, x[rows], y[rows], 0.1, generator=torch.Generator().manual_seed(5))[0])
    assert torch.equal(torch.cat(shares), whole)
    alone = attack.perturb(model, x[16:32], y[16:32], 0.1, generator=torch.Generator().manual_seed(5))[0]
    assert not torch.equal(alone, whole[16:32]), "without the shard a share draws its own numbers"


def test_ddp_adversarial_training_matches_one_process(tmp_path: Path) -> None:
    """DALE under torchrun: each rank draws the Langevin chain's start and noise for the whole global batch and keeps
    its rows, divides by the global batch size, and starts the chain's gradients at x as one process does. Measured:
    3e-8 after one epoch (6 steps of batch 256) on an AVX2 machine, 1.3e-5 on an AVX-512 one (oneDNN's kernels
    there round a shard of 128 differently from a batch of 256); before, with a random stream per rank, 1e-3."""
    flags = ["--dataset", "digits", "--method", "dale", "--epochs", "1", "--batch-size", "256", "--attack-steps", "3",
             "--eval-n", "32", "--eval-steps", "2", "--device", "cpu", "--quiet", "--json"]
    config = TrainConfig(dataset="digits", method="dale", epochs=1, batch_size=256, attack_steps=3, eval_n=32,
                         eval_steps=2, device="cpu")
    (tmp_path / "ddp").mkdir()
    code, out, err = finish(torchrun(["train", *flags], tmp_path / "ddp"))
    assert code == 0, ranks_said(err)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["run_id"] == run_id_for(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(config, registry=Registry(tmp_path / "single"))
    finally:
        torch.set_num_threads(threads)
    assert max_diff(weights(single.checkpoint_path), weights(Path(result["checkpoint"]))) <= 1e-4
    (one,), (two,) = single.history, [e["metrics"] for e in Registry(tmp_path / "ddp").epochs(result["run_id"])]
    assert one["loss"] == pytest.approx(two["loss"], rel=1e-4) and one["nu"] == pytest.approx(two["nu"], rel=1e-4)
    assert one["train_acc"] == two["train_acc"]


def test_sharded_evaluation_equals_one_process_exactly(tmp_path: Path) -> None:
    table_file = tmp_path / "sharded.parquet"
    code, out, err = finish(torchrun(["eval", "--checkpoint", str(ERM), "--attack", "pgd", "--steps", "5",
                                      "--n", "300", "--batch-size", "64", "--device", "cpu", "--json",
                                      "--table", str(table_file)], tmp_path))
    assert code == 0, ranks_said(err)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["world_size"] == 2 and report["n"] == 300
    model, _ = load_checkpoint(ERM)
    data = load_dataset("digits", "test").subset(300)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = per_sample_table(model, data, PGD(norm="linf", steps=5), [0.1], seed=0, batch_size=64,
                                  device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    sharded = pd.read_parquet(table_file)
    # 5 batches over 2 ranks, each with its own random start: a wrong merge or a shared generator would show.
    assert len(sharded) == 300 and (sharded["pred_adv@0.1"] != sharded["y"]).sum() > 10
    pd.testing.assert_frame_equal(sharded, single, check_exact=True)
    assert report["robust_acc"] == float((single["pred_adv@0.1"] == single["y"]).mean())


def _rank_pid(home: Path, rank: int) -> int | None:
    """The pid of torchrun's worker ``rank`` for this ATLAS_HOME (read from /proc, as a user would find it)."""
    marks = (f"ATLAS_HOME={home}".encode(), f"RANK={rank}".encode(), f"LOCAL_RANK={rank}".encode())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(m in environ for m in marks):
            return int(proc.name)
    return None


def test_a_killed_rank_fails_the_run_cleanly_and_it_resumes(ddp_run: dict, tmp_path: Path) -> None:
    proc = torchrun(["train", *TRAIN_FLAGS], tmp_path)
    pointer = tmp_path / "runs" / run_id_for(CONFIG) / "checkpoints" / "last.json"
    deadline = time.monotonic() + 180
    while not (pointer.exists() and json.loads(pointer.read_text())["epoch"] >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first epoch"
        time.sleep(0.02)
    pid = _rank_pid(tmp_path, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    code, _, err = finish(proc)
    assert code != 0
    ours = [line for line in err.splitlines() if line.startswith("python -m core train: error:")]
    assert len(ours) == 1 and "another process of this torchrun job stopped" in ours[0], err[-3000:]
    assert "run the same command again to resume" in ours[0] and "Traceback" not in ours[0]
    run = Registry(tmp_path).get_run(run_id_for(CONFIG))
    # Interrupted, as when rank 0 itself is killed, with one readable line rather than gloo's message.
    assert run["status"] == "interrupted" and 1 <= run["epochs_done"] < EPOCHS
    assert run["error"].startswith("another process of this torchrun job stopped (") and "\n" not in run["error"]

    code, out, err = finish(torchrun(["train", *TRAIN_FLAGS], tmp_path))
    assert code == 0, ranks_said(err)
    resumed = json.loads(out.strip().splitlines()[-1])
    assert resumed["status"] == "completed" and resumed["epochs_done"] == EPOCHS
    epochs = [e["epoch"] for e in Registry(tmp_path).epochs(run_id_for(CONFIG))]
    assert epochs == list(range(1, EPOCHS + 1))
    uninterrupted = weights(Path(ddp_run["result"]["checkpoint"]))
    assert max_diff(weights(Path(resumed["checkpoint"])), uninterrupted) == 0.0


CARRIER_PROBE = """
import copy, json
import torch, torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel
from core.distributed import StepCarrier, shutdown
tdist.init_process_group("gloo")
rank = tdist.get_rank()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
plain, carried = DistributedDataParallel(copy.deepcopy(net)), DistributedDataParallel(net)
carrier = StepCarrier(tdist.get_world_size())
carried.register_comm_hook(None, carrier.hook)
calls = []
all_reduce = tdist.all_reduce
tdist.all_reduce = lambda tensor, *a, **k: calls.append(tensor.numel()) or all_reduce(tensor, *a, **k)
x = torch.randn(8, 3, generator=torch.Generator().manual_seed(rank))
plain(x).square().sum().backward()
carrier.send(torch.tensor([rank + 1.0, 0.25 * rank], dtype=torch.float64))
carried(x).square().sum().backward()
summed = carrier.take()
out = {"summed": summed.tolist(), "calls": calls, "grads_equal": all(torch.equal(p.grad, q.grad) for p, q in
       zip(plain.parameters(), carried.parameters())), "again": carrier.take()}
carried(x).sum().backward()
out["unsent"] = carrier.take()
with open(f"rank{rank}.json", "w") as f:  # the ranks' stdout interleaves
    json.dump(out, f)
# shutdown(), not destroy_process_group(): the first DDP wrapper's reference cycle kept the gloo group alive, and
# freed at interpreter exit it aborted a rank ("terminate called without an active exception", seen under load).
del plain, carried
shutdown()
"""


def test_the_steps_numbers_ride_in_the_gradient_all_reduce(tmp_path: Path) -> None:
    """DDP training sends the step's loss and stop flag with the gradients: one collective per step, not two (each
    is a cross-process wake-up, ≈ 2 ms on a 2-vCPU VM). The gradients are DDP's own average, bit for bit; the
    numbers come back summed over the ranks; a backward pass with nothing sent carries nothing."""
    probe = tmp_path / "probe.py"
    probe.write_text(CARRIER_PROBE)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(probe)], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        out = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert out["summed"] == [3.0, 0.25] and out["grads_equal"]
        # One all-reduce for the whole step: 4·3 + 4 + 2·4 + 2 = 26 gradient numbers and the 2 sent.
        assert out["calls"][0] == 28 and len(out["calls"]) == 2 and out["calls"][1] == 26
        assert out["again"] is None and out["unsent"] is None


SHUTDOWN_PROBE = """
import gc, sys, weakref
import torch, torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel
from core.distributed import shutdown
tdist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
gc.disable()  # nothing but shutdown() may collect
ddp = DistributedDataParallel(torch.nn.Linear(3, 2))
ddp(torch.randn(4, 3)).sum().backward()
alive = weakref.ref(ddp)
del ddp
print("held", alive() is not None)
shutdown()
print("freed", not tdist.is_initialized() and alive() is None)
"""


def test_shutdown_frees_the_group_a_ddp_wrapper_still_holds(tmp_path: Path) -> None:
    """A process's first DDP wrapper sits in a reference cycle and keeps the gloo group alive after
    destroy_process_group; freed at interpreter exit, the group can abort the process. shutdown() frees it while the
    interpreter is whole. A fresh process, like each torchrun worker (a later wrapper in the same process is not in
    a cycle)."""
    done = subprocess.run([sys.executable, "-c", SHUTDOWN_PROBE, str(tmp_path / "store")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["held", "True", "freed", "True"], done.stdout


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(ConfigError, match=r"batch size 64 .* 3 processes .* use 63 or 66"):
        train(CONFIG, registry=registry, dist=DistContext(rank=0, world_size=3))
    assert registry.list_runs() == []


def test_a_diverging_ddp_run_stops_at_the_step_it_diverged_on_every_rank(tmp_path: Path) -> None:
    """Under torchrun the loss was checked only at the epoch's end, so a learning rate of 1e6 trained on NaN
    weights for the rest of the epoch. Now every rank stops at the same step (the loss is the global one on each):
    a rank that stopped alone would leave the other waiting in the all-reduce until the timeout."""
    flags = [f for f in TRAIN_FLAGS if f != "--quiet"]
    flags[flags.index("--epochs") + 1] = "2"
    started = time.monotonic()
    code, out, err = finish(torchrun(["train", *flags, "--lr", "1e6", "--schedule", "constant"], tmp_path), 120)
    assert code != 0 and time.monotonic() - started < 100, ranks_said(err)
    [run] = Registry(tmp_path).list_runs()
    assert run["status"] == "failed" and run["epochs_done"] == 0 and run["checkpoint_path"] is None
    said = re.fullmatch(r"TrainingDiverged: training diverged in epoch 1 \(by batch (\d+) of (\d+)\): the loss "
                        r"became (NaN|infinite)\. .*lower the learning rate \(it was 1e\+06.*", run["error"])
    assert said, run["error"]
    assert int(said[1]) < int(said[2]) == 22, "stopped at the step, not at the epoch's end (22 batches of 64)"
    assert err.count("training diverged in epoch 1 (by batch") >= 2, ranks_said(err)  # both ranks said it


def test_a_training_job_with_two_processes_runs_under_torchrun(tmp_path: Path) -> None:
    """What the Training page's "GPUs: N" submits, on CPU processes: the real queue, job process and torchrun."""
    from core.jobs import get_job, submit_job

    config = TrainConfig(dataset="digits", method="erm", epochs=2, batch_size=64, eval_n=0, device="cpu")
    registry = Registry(tmp_path)
    job_id = submit_job(registry, "train", {**config.to_dict(), "processes": 2}, device="cpu")
    deadline = time.monotonic() + 240
    while get_job(registry, job_id)["status"] in ("queued", "running", "cancelling"):
        assert time.monotonic() < deadline, Path(get_job(registry, job_id)["log_path"]).read_text()[-2000:]
        time.sleep(0.2)
    job = get_job(registry, job_id)
    assert job["status"] == "completed", (job["error"], Path(job["log_path"]).read_text()[-2000:])
    run = registry.get_run(run_id_for(config))
    assert run["status"] == "completed" and job["run_id"] == run["id"]
    assert [e["metrics"]["world_size"] for e in registry.epochs(run["id"])] == [2, 2]


def test_ddp_syncs_buffers_only_for_models_whose_buffers_training_changes() -> None:
    """The input normalisation's mean and std were broadcast before every forward pass: a collective per step for
    two constants. BatchNorm's running statistics (and a plugin's unknown buffers) still are."""
    from core.models import build_model
    from core.training.loop import changing_buffers

    assert not changing_buffers(build_model("smallcnn", seed=0, in_channels=1, image_size=8, num_classes=10))
    assert changing_buffers(build_model("preact_resnet18", seed=0, in_channels=3, num_classes=10))
    plain = torch.nn.Linear(2, 2)
    plain.register_buffer("steps", torch.zeros(1))
    assert changing_buffers(plain), "a buffer the Atlas does not know is synced"
