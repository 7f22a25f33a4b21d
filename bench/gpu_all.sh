#!/usr/bin/env bash
# Everything issue 9 measures or checks on a GPU, in one go: the GPU-only tests (CUDA graphs), the CUDA paths of the
# CLI (training with AMP and with torch.compile, torchrun with NCCL, evaluation in bf16 with the trust checks against
# fp32), the GPU benchmarks, and the CIFAR-10 FGSM-RS recipe end to end on CIFAR-format synthetic files.
#
# Usage, on a machine with a CUDA GPU and the project's packages (torchattacks in bench/.reference for the
# reference row: bash bench/reference_env.sh):
#     bash bench/gpu_all.sh OUTDIR          # OUTDIR gets log.txt and results.md (sections for bench/RESULTS.md)
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash bench/gpu_all.sh OUTDIR}"
mkdir -p "$out"
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
export PYTHONPATH=".:bench/.reference${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export ATLAS_HOME="${ATLAS_HOME:-$(mktemp -d)}"
status=0
step() {  # step NAME COMMAND...: run, log, remember a failure but go on
    echo "=== $1" | tee -a "$out/log.txt"
    shift
    local start=$SECONDS
    "$@" 2>&1 | tee -a "$out/log.txt"
    local rc=${PIPESTATUS[0]}
    echo "=== rc $rc in $((SECONDS - start)) s" | tee -a "$out/log.txt"
    [ "$rc" = 0 ] || status=1
}
step "machine" bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
  $py -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())'"
step "GPU tests" "$py" -m pytest -q -p no:cacheprovider tests/core/test_cuda_graphs.py
step "train digits pgd-at, cuda, AMP" "$py" -m core train --dataset digits --method pgd-at --epochs 3 --device cuda \
  --amp --name gpu-amp --json
step "train digits, cuda, torch.compile" "$py" -m core train --dataset digits --epochs 2 --device cuda --compile \
  --name gpu-compile --quiet
step "torchrun 1 process, NCCL" "$py" -m torch.distributed.run --nproc_per_node=1 -m core train --dataset digits \
  --epochs 2 --device cuda --name gpu-nccl --quiet
for precision in fp32 bf16; do
  step "eval shipped pgd-at, quick, $precision, trust checks" "$py" -m core eval \
    --checkpoint assets/models/digits-smallcnn-pgd-at.safetensors --attack quick --device cuda \
    --precision "$precision" --trust --json
done
step "runs list" "$py" -m core runs list
step "gpu_attacks batch 256" "$py" bench/gpu_attacks.py --batch 256 --out "$out/results.md"
step "gpu_attacks batch 512" "$py" bench/gpu_attacks.py --batch 512 --batches 4 --out "$out/results.md"
step "gpu_train fp32" "$py" bench/gpu_train.py --out "$out/results.md"
step "gpu_train amp channels-last" "$py" bench/gpu_train.py --amp --channels-last --out "$out/results.md"
data="$(mktemp -d)"
step "CIFAR-format synthetic files" "$py" bench/make_cifar_files.py "$data"
step "recipe cifar10-fgsm-rs, 15 epochs, channels-last" env ATLAS_DATA="$data" "$py" -m core train \
  --recipe cifar10-fgsm-rs --device cuda --channels-last --name gpu-recipe --quiet
step "recipe run" bash -c "$py -m core runs show \$($py -m core runs list | awk '/gpu-recipe/ {print \$1}')"
exit $status
