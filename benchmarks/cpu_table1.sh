#!/usr/bin/env bash
# Table 1 (issue 25) on this machine's CPU, for sessions without a GPU: the three runs at the paper's settings, full
# size, float32, continued where the last call left them, in at most BUDGET seconds (default 3600):
#
#     bash benchmarks/cpu_table1.sh [BUDGET]     # PYTHON: the Python with ocdl installed (the checkout's .venv)
#
# gpu_table1.sh's Table 1 stage (gpu_lib.sh) with --device cpu: resnet, antisymmetric and verlet one after another,
# each in runs/table1-cpu/STEPPER (ignored by git) and checkpointed after every iteration: a finished run is
# skipped, an unfinished one continued (--resume), a new one started; the last one is stopped (SIGINT: its last
# completed iteration kept) 30 s before the budget ends. The run folders are unpacked from
# benchmarks/results/table1_cpu.tar.gz when runs/table1-cpu is missing (a fresh clone), and packed back into it
# at the end: commit the archive, and each finished run's results.json as benchmarks/results/table1_cpu/STEPPER.json.
# On 2 cores (float32) an iteration took 65, 91 and 188 s at 4, 8 and 16 layers for ResNet (the run 2.0 hours),
# about 93, 130 and 190 s for the antisymmetric ResNet (2.5 hours), about 150, 235 and 367 s for Verlet (4.2
# hours; its per-level means, evaluations included). The archive holds the three finished runs (2026-12-05): the
# script finds them and trains nothing.
# GPU_SESSION_QUICK=1: tiny runs (gpu_lib.sh's), into runs/table1-cpu-quick and $OUT/table1.tar.gz; CPU_RUNS and
# CPU_TABLE1_ARCHIVE name other folders and archives; gpu_lib.sh lists the other variables.
set -uo pipefail
PYTHON=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
# shellcheck source=benchmarks/gpu_lib.sh
source "$(dirname "$0")/gpu_lib.sh"
BUDGET=${1:-3600}
TABLE1_DEVICE=cpu
if [ "$QUICK" = 1 ]; then
    RUNS=${CPU_RUNS:-runs/table1-cpu-quick} ARCHIVE=${CPU_TABLE1_ARCHIVE:-}
else
    RUNS=${CPU_RUNS:-runs/table1-cpu} ARCHIVE=${CPU_TABLE1_ARCHIVE:-benchmarks/results/table1_cpu.tar.gz}
    # Verlet keeps twice ResNet's numbers per step: with chunks of 5,000 its stored sweeps (12.8 GB at 16
    # layers) exceed half of this project's 23 GB host, and memory="auto" rebuilds the 16-layer states
    # backward in every product, 1.5x slower (186 s an iteration, measured 2026-12-05 at 4 layers when auto
    # still planned every level for the finest); chunks of 2,500 store them (9.6 GB). The chunks change how
    # the sums are split, not the problem (and the run in the archive was started with them).
    TABLE1_VERLET_ARGS=(--chunk-size "${CPU_TABLE1_VERLET_CHUNK:-2500}")
fi
PACKED=${ARCHIVE:-$OUT/table1.tar.gz}
MNIST_DIR=${GPU_MNIST_DIR:-$MNIST_SOURCE}  # read in place: nothing is carried
mkdir -p "$(dirname "$PACKED")"

cpu_table1() {
    say "ocdl Table 1 on the CPU ($THREADS cores): $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100); budget ${BUDGET} s"
    ensure_mnist || return 1
    restore_table1
    table1_runs
    pack_table1
    finish "cpu_table1.sh"
}

cpu_table1
