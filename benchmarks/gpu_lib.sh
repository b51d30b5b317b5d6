# Shared by gpu_session.sh, gpu_table1.sh and cpu_table1.sh (sourced, not run): settings, the clock, stages under
# time limits, the install, the MNIST files and Table 1's runs. benchmarks/README.md ("A session with a GPU") has the plan.
#
# Environment (default):
#   OUT                  the folder the device tool brings back (/tmp/ocdl-gpu; quick: /tmp/ocdl-gpu-quick)
#   PYTHON               the Python to use (python3, the GPU machine's; it has CuPy and PyTorch)
#   GPU_SESSION_QUICK=1  every stage in seconds on tiny sizes, on the CPU stand-in for CuPy (tests/standin_cupy.py;
#                        OCDL_STANDIN_CUPY=0 for a real GPU): a smoke test of the scripts
#   GPU_MNIST_DIR        the four MNIST files, carried to the GPU machine (.mnist, ignored by git)
#   GPU_MNIST_SOURCE     where they are copied from when missing (../shared/data/mnist)
#   GPU_RUNS             Table 1's run folders, one per stepper (runs/table1, ignored by git; quick: runs/table1-quick)
#   GPU_TABLE1_ARCHIVE   the run folders as an earlier call packed them, unpacked when GPU_RUNS is missing
#                        (benchmarks/results/table1.tar.gz; quick: none)
#   GPU_TABLE1_LIMIT     seconds for the Table 1 stage (all that the script's budget leaves)
#   GPU_TABLE1_DTYPE     Table 1's dtype (float32)
#   GPU_TABLE1_QUICK_ITERATIONS  iterations per level of the quick mode's Table 1 runs (25)
#   GPU_TESTS            what pytest -m gpu runs (tests)
#   GPU_TEST_WORKERS     pytest-xdist processes for pytest -m gpu, where xdist imports (8)
# shellcheck disable=SC2034  # the variables are the sourcing scripts'

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
QUICK=${GPU_SESSION_QUICK:-0}
PYTHON=${PYTHON:-python3}
MNIST_DIR=${GPU_MNIST_DIR:-.mnist}
MNIST_SOURCE=${GPU_MNIST_SOURCE:-../shared/data/mnist}
if [ "$QUICK" = 1 ]; then  # never the real runs
    OUT=${OUT:-/tmp/ocdl-gpu-quick} RUNS=${GPU_RUNS:-runs/table1-quick} ARCHIVE=${GPU_TABLE1_ARCHIVE:-}
else
    OUT=${OUT:-/tmp/ocdl-gpu} RUNS=${GPU_RUNS:-runs/table1} ARCHIVE=${GPU_TABLE1_ARCHIVE:-benchmarks/results/table1.tar.gz}
fi
PACKED=$OUT/table1.tar.gz  # where pack_table1 writes the run folders (cpu_table1.sh: the archive itself)
TABLE1_DTYPE=${GPU_TABLE1_DTYPE:-float32}
TABLE1_DEVICE=gpu  # Table 1's --device (cpu_table1.sh: cpu)
THREADS=$(nproc)
LAUNCH=("$PYTHON" benchmarks/launch.py)  # SIGINT as Ctrl-C; the stand-in for CuPy when OCDL_STANDIN_CUPY=1
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
TRAIN_ENV=()  # the environment of Table 1's and time to accuracy's runs
if [ "$QUICK" = 1 ]; then
    export OCDL_STANDIN_CUPY=${OCDL_STANDIN_CUPY:-1}
    GRACE=5
    # on the stand-in the fused kernels run in the CUDA emulator, which takes minutes to train: the plain path
    [ "$OCDL_STANDIN_CUPY" = 1 ] && TRAIN_ENV=(env OCDL_FUSED_KERNELS=0)
    # Table 1's quick runs: 2 levels (4, 8 layers) of 25 iterations on 64 images, about 0.1 s each on an idle
    # machine and 6 s in all, long enough for the smoke test to stop one at 4 s and resume it
    # (GPU_TABLE1_QUICK_ITERATIONS: more, where a run without the stand-in would end before that)
    TABLE1_ARGS=(--train-size 64 --val-size 32 --hessian-batch-size 16 --max-layers 8 --width 2
                 --iterations "${GPU_TABLE1_QUICK_ITERATIONS:-25}"
                 --classifier-newton-steps 1 --classifier-cg-maxiter 2)
else
    GRACE=20  # seconds from a stage's SIGINT to its SIGKILL (ocdl train writes its checkpoint within one or two)
    TABLE1_ARGS=()  # the paper's settings (ocdl.experiments.paper_settings)
fi
TABLE1_VERLET_ARGS=()  # added to a new Verlet run's options (cpu_table1.sh: a smaller chunk on a small host)
SUMMARY=() FAILED=()

# say TEXT: a line of the log, with the time and the seconds since the script started.
say() { echo "[$(date +%T) +${SECONDS}s] $*"; }

# left: the seconds that the script's BUDGET leaves.
left() { echo $((BUDGET - SECONDS)); }

# stage NAME LIMIT COMMAND...: COMMAND under timeout: SIGINT after LIMIT seconds (as Ctrl-C: ocdl train writes its
# last completed iteration, pytest prints its summary), SIGKILL GRACE seconds later. Its exit status is in RC
# (124: stopped at its limit) and in the summary.
stage() {
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    if ((limit < 1)); then
        say "$name: skipped, no time left"
        RC=skipped
    else
        say "$name: at most ${limit} s: $*"
        timeout -s INT -k "$GRACE" "$limit" "$@"
        RC=$?
        say "$name: exit status $RC after $((SECONDS - t0)) s$( ((RC == 124)) && echo ' (stopped at its time limit)')"
    fi
    SUMMARY+=("$name: $RC ($((SECONDS - t0)) s)")
    case "$name:$RC" in
        *:0 | table1*:124 | table1*:skipped) ;;  # Table 1 stops at its limit by design: it continues next time
        *) FAILED+=("$name") ;;
    esac
}

# device_report: the GPU as nvidia-smi sees it, into $OUT/nvidia-smi.txt.
device_report() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
        nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv
    else
        say "no nvidia-smi on this machine"
    fi
}

# install_ocdl: ocdl from this folder into $PYTHON (offline, no dependencies: the GPU machine's image has them),
# unless it is there already (a warm machine's second call; the quick mode never installs).
install_ocdl() {
    local check='import os, sys, ocdl.solvers; sys.exit(os.path.dirname(os.path.realpath(ocdl.__file__)) != os.path.realpath("ocdl"))'
    if [ "$QUICK" = 1 ] || "$PYTHON" -c "$check" 2>/dev/null; then
        say "install: ocdl imports from $(pwd)"
        return 0
    fi
    stage install 120 "$PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index -e .
    [ "$RC" = 0 ]
}

# ensure_mnist: the four MNIST files in $MNIST_DIR, copied from $MNIST_SOURCE when missing (on this side: the
# GPU machine has no ../shared, so the files travel in $MNIST_DIR, named in the run call's carry).
ensure_mnist() {
    if (($(find "$MNIST_DIR" -maxdepth 1 -name '*-ubyte*' 2>/dev/null | wc -l) >= 4)); then
        return 0
    fi
    if (($(find "$MNIST_SOURCE" -maxdepth 1 -name '*-ubyte*' 2>/dev/null | wc -l) >= 4)); then
        mkdir -p "$MNIST_DIR" && cp "$MNIST_SOURCE"/*-ubyte* "$MNIST_DIR"/ && say "MNIST: copied $MNIST_SOURCE to $MNIST_DIR"
        return
    fi
    say "MNIST: neither $MNIST_DIR nor $MNIST_SOURCE holds the four files; run bash benchmarks/gpu_session.sh --prepare" \
        "where they are, and name $MNIST_DIR in the run call's carry"
    return 1
}

# table1 STEPPER LIMIT: Table 1's run of STEPPER (ocdl train, MNIST at the paper's settings) in $RUNS/STEPPER for at
# most LIMIT seconds: started, or continued from its checkpoint; nothing if finished. Returns 0 when it is finished.
# No progress bars (the device tool shows the last 12,000 characters): each level's history is in the checkpoint.
# A run that fails with the fused kernels (not stopped at its limit: a kernel that does not compile or launch on
# this device) is continued on the plain CuPy path (OCDL_FUSED_KERNELS=0) in the time left, and says so; the
# script's later runs take the plain path too.
table1() {
    table1_run "$@" && return 0
    case $RC in 0 | 124 | 137 | skipped) return 1 ;; esac
    ((${#TRAIN_ENV[@]} == 0 && $2 - TABLE1_SECONDS > 60)) || return 1
    say "table1 $1: failed with the fused kernels (exit status $RC); continued on the plain path (OCDL_FUSED_KERNELS=0)"
    TRAIN_ENV=(env OCDL_FUSED_KERNELS=0)
    table1_run "$1" $(($2 - TABLE1_SECONDS))
}

# table1_run STEPPER LIMIT: table1's one attempt under $TRAIN_ENV; its seconds in TABLE1_SECONDS.
table1_run() {
    local stepper=$1 limit=$2 dir=$RUNS/$1 extra=() t0=$SECONDS
    TABLE1_SECONDS=0
    [ "$stepper" = verlet ] && extra=("${TABLE1_VERLET_ARGS[@]}")
    if [ -f "$dir/results.json" ]; then
        say "table1 $stepper: finished before ($dir/results.json)"
        return 0
    fi
    if [ -f "$dir/checkpoint.h5" ]; then
        stage "table1 $stepper, resumed" "$limit" "${TRAIN_ENV[@]}" "${LAUNCH[@]}" -m ocdl train --resume "$dir" \
            --data-dir "$MNIST_DIR" --checkpoint-every 1 --no-progress
    else
        stage "table1 $stepper" "$limit" "${TRAIN_ENV[@]}" "${LAUNCH[@]}" -m ocdl train --problem mnist \
            --stepper "$stepper" --device "$TABLE1_DEVICE" --dtype "$TABLE1_DTYPE" --data-dir "$MNIST_DIR" --out "$dir" \
            --checkpoint-every 1 --no-progress "${TABLE1_ARGS[@]}" "${extra[@]}"
    fi
    TABLE1_SECONDS=$((SECONDS - t0))
    [ -f "$dir/results.json" ]
}

# table1_runs: Table 1's runs of $GPU_TABLE1_STEPPERS (resnet antisymmetric verlet) one after another, each for at
# most GPU_TABLE1_LIMIT seconds or what the budget leaves; stops at the first one left unfinished (out of time: the
# next call continues it). Returns 0 when all are finished.
table1_runs() {
    local stepper
    for stepper in ${GPU_TABLE1_STEPPERS:-resnet antisymmetric verlet}; do
        table1 "$stepper" "${GPU_TABLE1_LIMIT:-$(($(left) - GRACE - 10))}" || return 1
    done
}

# restore_table1: Table 1's run folders from $ARCHIVE when $RUNS is missing (a fresh machine; the folders of a
# warm machine's earlier call, or carried ones, are newer and kept).
restore_table1() {
    if [ ! -d "$RUNS" ] && [ -n "$ARCHIVE" ] && [ -f "$ARCHIVE" ]; then
        mkdir -p "$(dirname "$RUNS")" && tar -xzf "$ARCHIVE" -C "$(dirname "$RUNS")" &&
            say "table1: $RUNS unpacked from $ARCHIVE"
    fi
}

# pack_table1: Table 1's run folders into $PACKED ($OUT/table1.tar.gz, for the next call: copied to $ARCHIVE, or
# unpacked into the parent of $RUNS and carried; written whole or not at all), and where each run stands.
pack_table1() {
    [ -d "$RUNS" ] || return 0
    tar -czf "$PACKED.tmp" -C "$(dirname "$RUNS")" "$(basename "$RUNS")" && mv "$PACKED.tmp" "$PACKED"
    say "table1: $RUNS packed into $PACKED ($(du -k "$PACKED" | cut -f1) KiB)"
    "$PYTHON" benchmarks/table1.py "$RUNS"
}

# finish NAME: the summary of the stages (the end of the log, which the device tool shows); fails if a stage failed.
finish() {
    echo
    say "$1 done; exit status of each stage (124: stopped at its time limit):"
    printf '  %s\n' "${SUMMARY[@]}"
    [ ! -d "$OUT" ] || ls -l "$OUT"
    if ((${#FAILED[@]})); then
        say "failed: ${FAILED[*]}"
        return 1
    fi
}
