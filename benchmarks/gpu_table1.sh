#!/usr/bin/env bash
# Table 1 (issue 25) continued and finished on a GPU, then time to accuracy, from the repository root, in at most
# $GPU_TABLE1_BUDGET (560) seconds:
#
#     bash benchmarks/gpu_table1.sh                # on the GPU machine: the run tool's call (benchmarks/README.md)
#
# 1. installs ocdl as gpu_session.sh does (nothing to do on a warm machine that has it);
# 2. ocdl train on full-size MNIST at the paper's settings for resnet, antisymmetric and verlet, one after another
#    (three runs sharing one GPU each ran about 5x slower), each in runs/table1/STEPPER: a finished run is skipped,
#    an unfinished one continued from its checkpoint (--resume), a new one started; checkpointed after every
#    iteration and stopped (SIGINT: the last completed iteration kept) 30 s before the budget ends. Before the fused
#    kernels an iteration took 3.4 s at 16 layers on the H200: about 2.5 minutes for ResNet or the antisymmetric
#    ResNet (3 levels of 20 iterations at 4, 8, 16 layers), 5 for Verlet (two layer applications per step);
# 3. when all three are finished and 4.5 minutes or more are left: time_to_accuracy.py --full --device gpu with
#    the budget per method that ends it in time (at most 600 s).
# The run folders are those of the machine's earlier call (a warm machine keeps them), else those packed in
# benchmarks/results/table1.tar.gz. $OUT gets table1.log (everything printed), nvidia-smi.txt, table1.tar.gz (the
# run folders, for benchmarks/results/), tta_gpu.json and tta_gpu.png. GPU_TABLE1_STEPPERS: the steppers (resnet
# antisymmetric verlet); gpu_lib.sh lists the other variables.
set -uo pipefail
# shellcheck source=benchmarks/gpu_lib.sh
source "$(dirname "$0")/gpu_lib.sh"
BUDGET=${GPU_TABLE1_BUDGET:-560}
mkdir -p "$OUT"

table1_session() {
    say "ocdl Table 1 on the GPU: $(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100); budget ${BUDGET} s"
    device_report
    install_ocdl || return 1
    ensure_mnist || return 1
    restore_table1
    local finished=1
    table1_runs || finished=0
    pack_table1

    local tta_overhead=90 budget  # data, the learning-rate sweep (3 epochs of PyTorch), each method's last step
    budget=$((($(left) - GRACE - 10 - tta_overhead) / 3))
    ((budget > 600)) && budget=600
    if [ "$QUICK" = 1 ]; then
        stage "time to accuracy" 60 "${TRAIN_ENV[@]}" "${LAUNCH[@]}" benchmarks/time_to_accuracy.py --quick --device gpu \
            --data-dir "$MNIST_DIR" --json "$OUT/tta_gpu.json" --plot "$OUT/tta_gpu.png"
    elif ((finished && budget >= 50)); then
        stage "time to accuracy" $(($(left) - GRACE - 5)) "${LAUNCH[@]}" benchmarks/time_to_accuracy.py --full \
            --device gpu --data-dir "$MNIST_DIR" --threads "$THREADS" --budget "$budget" --json "$OUT/tta_gpu.json" \
            --plot "$OUT/tta_gpu.png"
    else
        say "time to accuracy: not run (Table 1 unfinished, or under 4.5 minutes left)"
    fi
    finish "gpu_table1.sh"
}

table1_session 2>&1 | tee "$OUT/table1.log"
exit "${PIPESTATUS[0]}"
