#!/usr/bin/env bash
# The first call of a session with a GPU (issues 24 and 25), from the repository root, in at most
# $GPU_SESSION_BUDGET (560) seconds:
#
#     bash benchmarks/gpu_session.sh --prepare     # here, before the call: MNIST into .mnist (the call carries it)
#     bash benchmarks/gpu_session.sh               # on the GPU machine: the run tool's call (benchmarks/README.md)
#
# Stages, each under its time limit (gpu_lib.sh's stage: SIGINT at the limit, SIGKILL 20 s later):
#   a. install ocdl into the machine's python3, offline and without dependencies (at most 120 s; ~10 s);
#   b. the GPU tests, pytest -m gpu (at most 120 s in GPU_TEST_WORKERS=8 processes where pytest-xdist imports, else
#      at most 180 s in one);
#   c. the benchmark (at most 320 s in all): ocdl on the CPU, all cores, W3 float32 (the reference of the target
#      GPU / CPU, at most 25 s); then run.py --device gpu: W2, W3L float32, W1, then W3 (not a target); ResNet and
#      Verlet; ocdl with its fused kernels and without, PyTorch with TF32 off and (float32) on; forward and
#      gradient (--no-gn: the Gauss-Newton products, no target's, took about half of each case), best of 3 after
#      1 warm-up; no case started after 185 s, stopped at 200 s. Into $OUT/gpu.json, rewritten after every case.
#      Then W3L float64, ResNet only (Verlet's states, about 130 GB for PyTorch, fit no H100), fused ocdl and
#      PyTorch, one timed run (PyTorch's float64 convolutions take ~6 s a gradient there; at most 60 s), into
#      $OUT/gpu_w3l_float64.json; both merged into gpu.json with the issue's targets (every one listed, those not
#      measured with why);
#   d. the time left: Table 1 (issue 25), ocdl train --stepper resnet on full-size MNIST at the paper's settings,
#      checkpointed after every iteration into runs/table1/resnet and stopped (SIGINT: the last completed iteration
#      kept) 30 s before the budget ends. Before the fused kernels an iteration took 3.4 s at 16 layers on the H200
#      (about 1.7 and 0.9 s at 8 and 4): the 60 iterations of ResNet's three levels take about 2.5 minutes with
#      the evaluations, about what this stage gets (130 to 230 s); gpu_table1.sh continues it (--resume).
# $OUT gets session.log (everything printed), nvidia-smi.txt, cpu_w3.json, gpu.json, gpu_w3l_float64.json and
# table1.tar.gz (the run
# folders: a call on a fresh machine unpacks benchmarks/results/table1.tar.gz). GPU_SESSION_QUICK=1: the same
# stages in seconds on the CPU stand-in for CuPy (tests/test_benchmarks_smoke.py runs it); gpu_lib.sh lists the
# other variables.
set -uo pipefail
# shellcheck source=benchmarks/gpu_lib.sh
source "$(dirname "$0")/gpu_lib.sh"
BUDGET=${GPU_SESSION_BUDGET:-560}
BENCH_WORKLOADS=${GPU_BENCH_WORKLOADS:-W2,W3L:float32,W1,W3}  # the targets first, the short one before
mkdir -p "$OUT"

if [ "${1:-}" = --prepare ]; then
    ensure_mnist && du -sh "$MNIST_DIR"
    exit
fi

session() {
    say "ocdl GPU session: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100); budget ${BUDGET} s; quick $QUICK"
    device_report
    install_ocdl || return 1
    local mnist=0
    ensure_mnist || mnist=1  # said now, not after the benchmark

    local tests_limit=120 cpu_limit=25 bench_limit=200 soft_limit=185 float64_limit=60 cpu_quick=() gpu_quick=()
    if [ "$QUICK" = 1 ]; then
        tests_limit=240 cpu_limit=30 bench_limit=60 soft_limit=50 float64_limit=30 cpu_quick=(--quick) gpu_quick=(--quick)
        [ "$OCDL_STANDIN_CUPY" = 1 ] && gpu_quick+=(--torch-device cpu)  # on a real GPU (=0) PyTorch takes it too
    fi
    # NVRTC compiles about 180 modules on a fresh machine (about a minute of nvcc here, one process): with pytest-xdist
    # (in the GPU machine's image) GPU_TEST_WORKERS processes share the GPU and compile in parallel; without it the
    # stage gets 180 s (from Table 1's time)
    local workers=()
    if "$PYTHON" -c "import xdist" 2>/dev/null; then
        workers=(-n "${GPU_TEST_WORKERS:-8}")
    elif [ "$QUICK" != 1 ]; then
        tests_limit=180
    fi
    # shellcheck disable=SC2086  # GPU_TESTS may name several paths
    stage tests "$tests_limit" "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider -rfE --durations=10 "${workers[@]}" \
        ${GPU_TESTS:-tests}

    stage "benchmark: CPU reference" "$cpu_limit" "${LAUNCH[@]}" benchmarks/run.py --device cpu --workloads W3 \
        --dtypes float32 --libraries ocdl --threads "$THREADS" --repeats 3 --no-roofline "${cpu_quick[@]}" \
        --json "$OUT/cpu_w3.json"
    local cpu=()
    [ -f "$OUT/cpu_w3.json" ] && cpu=(--cpu-json "$OUT/cpu_w3.json")
    stage "benchmark: GPU" "$bench_limit" "${LAUNCH[@]}" benchmarks/run.py --device gpu --workloads "$BENCH_WORKLOADS" \
        --threads "$THREADS" --repeats 3 --no-gn --time-limit "$soft_limit" "${cpu[@]}" "${gpu_quick[@]}" \
        --json "$OUT/gpu.json"
    stage "benchmark: GPU, W3L float64 ResNet" "$float64_limit" "${LAUNCH[@]}" benchmarks/run.py --device gpu \
        --workloads W3L:float64 --steppers resnet --kernels fused --threads "$THREADS" --repeats 1 --no-gn \
        "${gpu_quick[@]}" --json "$OUT/gpu_w3l_float64.json"
    local measured=()
    for file in "$OUT/gpu.json" "$OUT/gpu_w3l_float64.json"; do
        [ -f "$file" ] && measured+=("$file")
    done
    if ((${#measured[@]})); then  # one table and the targets of all that was measured, into gpu.json
        stage "benchmark: table and targets of all measured" 15 "$PYTHON" benchmarks/run.py --merge "${measured[@]}" \
            "${cpu[@]}" --json "$OUT/gpu.json"
    fi

    if ((mnist == 0)); then
        restore_table1
        table1 resnet "${GPU_TABLE1_LIMIT:-$(($(left) - GRACE - 10))}"
        pack_table1
    fi
    [ -f "$OUT/gpu.json" ] && "$PYTHON" benchmarks/targets.py "$OUT/gpu.json"
    finish "gpu_session.sh"
}

session 2>&1 | tee "$OUT/session.log"
exit "${PIPESTATUS[0]}"
