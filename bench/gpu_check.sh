#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU (e.g. an H200 without MIG configured).
#
# Run as root from the repository root, with the venv built (`make test` builds it):
#     bash bench/gpu_check.sh            # or: PY=/path/to/python bash bench/gpu_check.sh
#
# READ-ONLY towards the GPU: it never changes MIG mode, never creates or destroys GPU or
# compute instances, never resets a GPU and never changes clocks or persistence mode. The
# only nvidia-smi calls are listings and queries. Every step runs even if an earlier one
# failed; the summary at the end says which passed. The whole log also goes to
# ${OUT:-bench/results}/gpu-check-<UTC>.log.
#
# What it checks (docs/gpu.md, "On a GPU host"):
#   1. the driver as nvidia-smi sees it (listing only);
#   2. `ire gpu list` against real NVML, text and JSON;
#   3. which execution providers this onnxruntime offers;
#   4. the tests marked `gpu` (real NVML inventory, the slice's nodes bound into a confined
#      worker's /dev, a prediction on CUDA in a confined worker, twice, so the second runs
#      under the phase-2 seccomp filter);
#   5. a plain (unconfined) ONNX Runtime prediction on CUDA, compared with CPU, if this
#      onnxruntime has the CUDA provider;
#   6. seccomp kills in the kernel log (a GPU worker killed by phase 2 shows up there).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
LOG="$OUT/gpu-check-$(date -u +%Y%m%dT%H%M%SZ).log"
exec > >(tee "$LOG") 2>&1

declare -a RESULTS=()
step() {  # step NAME COMMAND...
    local name=$1
    shift
    echo
    echo "=== $name"
    if "$@"; then
        RESULTS+=("PASS  $name")
    else
        RESULTS+=("FAIL  $name (exit $?)")
    fi
}

driver() {
    command -v nvidia-smi >/dev/null || { echo "no nvidia-smi on PATH"; return 1; }
    nvidia-smi -L &&
        nvidia-smi --query-gpu=index,uuid,name,memory.total,mig.mode.current,driver_version --format=csv
}

gpu_list() {
    local home
    home=$(mktemp -d)/home
    IRE_HOME=$home "$PY" -m supervisor init >/dev/null &&
        IRE_HOME=$home "$PY" -m supervisor gpu list --inventory nvml &&
        IRE_HOME=$home "$PY" -m supervisor gpu list --inventory nvml --json
}

providers() {
    "$PY" -c 'import onnxruntime as o; print(o.__version__, o.get_device(), o.get_available_providers())'
}

gpu_tests() {
    "$PY" -m pytest -q -rs -p no:cacheprovider -m gpu tests/
}

plain_prediction() {
    "$PY" - <<'EOF'
import sys

import numpy as np
import onnxruntime as ort

from supervisor.modelgraph.build import build_mlp

if "CUDAExecutionProvider" not in ort.get_available_providers():
    print("skipped: this onnxruntime has no CUDA provider:", ort.get_available_providers())
    sys.exit(0)
model = build_mlp()
x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
gpu = ort.InferenceSession(model, providers=[("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"])
print("session providers:", gpu.get_providers())
if gpu.get_providers()[0] != "CUDAExecutionProvider":
    print("FAIL: ONNX Runtime fell back to CPU")
    sys.exit(1)
cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
(on_gpu,) = gpu.run(None, {"input": x})
(on_cpu,) = cpu.run(None, {"input": x})
print("max |gpu - cpu| =", float(np.max(np.abs(on_gpu - on_cpu))))
sys.exit(0 if np.allclose(on_gpu, on_cpu, atol=1e-3) else 1)
EOF
}

KERNEL_LOG_START=$(dmesg 2>/dev/null | wc -l)
seccomp_log() {
    # type=1326 is a seccomp audit record; a worker (comm "ire-w-<tenant>") killed by
    # its filter names the syscall number. Only records written during this run count;
    # the sandbox suite's own attack tests leave some on purpose, so run it separately.
    local kills
    kills=$(dmesg 2>/dev/null | tail -n +"$((KERNEL_LOG_START + 1))" | grep "type=1326" | grep 'comm="ire-w-')
    if [ -n "$kills" ]; then
        echo "$kills"
        echo "a worker was killed by seccomp during this run: add the syscall to GPU_ALLOW"
        echo "(sandbox/seccomp.py) if the GPU stack needs it; look it up with: ausyscall <number>"
        return 1
    fi
    echo "no worker was killed by seccomp during this run"
}

step "driver (nvidia-smi, listing only)" driver
step "ire gpu list against NVML" gpu_list
step "onnxruntime providers" providers
step "tests marked gpu" gpu_tests
step "plain ONNX Runtime prediction on CUDA" plain_prediction
step "seccomp kills in the kernel log" seccomp_log

echo
echo "=== summary (log: $LOG)"
printf '%s\n' "${RESULTS[@]}"
