#!/usr/bin/env bash
# Everything a session with a GPU runs, in one call of about 8 minutes, from the repository root:
#
#     bash benchmarks/gpu_session.sh
#
# 1. installs ocdl into the machine's python3 (offline: no dependencies fetched; the GPU machine's
#    image has NumPy, SciPy, h5py, matplotlib, tqdm, pytest, hypothesis, CuPy and PyTorch);
# 2. the GPU tests, `pytest -m gpu` (at most 150 s);
# 3. the GPU benchmark, `benchmarks/run.py --device gpu`, into benchmarks/results/gpu.json (at most
#    300 s; the file is rewritten after each workload, so a run cut short keeps what it measured):
#    W3L (W3 at 50,000 images) first, then W3, W1, W2; ResNet and Verlet; float64 and float32;
#    ocdl on CuPy, PyTorch on CUDA with TF32 off and (float32) on; best of 3 after 1 warm-up;
#    PyTorch's Gauss-Newton product by double backward only (torch.func.linearize's tracing would
#    take minutes of the budget).
# Logs, gpu.json and nvidia-smi's view go to $OUT (the device tool brings that folder back), else
# to /tmp/ocdl-gpu. Draw the figure afterwards anywhere: python benchmarks/run.py --merge gpu.json --plot gpu.png
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/ocdl-gpu}
python=${PYTHON:-python3}
mkdir -p "$out" benchmarks/results
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv >"$out/nvidia-smi.csv" 2>&1
if ! $python -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$out/install.log" 2>&1; then
    cat "$out/install.log"
    exit 1
fi

timeout 150 $python -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$out/gpu_tests.log"
tests_status=${PIPESTATUS[0]}

timeout 300 $python benchmarks/run.py --device gpu --workloads W3L,W3,W1,W2 --threads 16 --repeats 3 \
    --torch-gn double-backward --json benchmarks/results/gpu.json 2>&1 | tee "$out/gpu_bench.log"
bench_status=${PIPESTATUS[0]}
cp benchmarks/results/gpu.json "$out/" 2>/dev/null

echo "gpu tests: exit status $tests_status; benchmark: exit status $bench_status (124: stopped at its time limit)"
[ "$tests_status" = 0 ] && [ "$bench_status" = 0 ]
