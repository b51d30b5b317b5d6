"""The CUDA emulator of the CuPy stand-in (``cuda_emulator.py``): kernels compiled by g++ run as on a GPU.

Each kernel's result is compared with NumPy's; the index variables with the CUDA formulas written
out in Python; the argument checks, the cache, the barrier check and the compile errors with what
they must say. The threads of a block with barriers run as fibers: kernels with many barriers (in
loops, as many as a block's threads in a 1024-thread block, a number that differs between blocks)
give NumPy's results, fast; a missing barrier shows, and a kernel that throws fails its launch
without harm to the next. The nvcc and NVRTC checks compile the reduction for the H200 where they are
installed.
"""

import itertools
import os
import re
import signal
import subprocess
import sys
import time

import cuda_emulator
import numpy as np
import pytest
import standin_cupy

pytestmark = pytest.mark.skipif(not standin_cupy.can_run_kernels(), reason="g++ is not installed")

AXPY = r"""
typedef {ctype} T;

// y <- y + a tanh(x), a grid-stride loop over the n entries
extern "C" __global__ void tanh_axpy(const T* __restrict__ x, T* __restrict__ y, T a, int n) {{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] += a * tanh(x[i]);
}}
"""

REDUCTION = r"""
#define BLOCK 256

__device__ __forceinline__ double square(double v) { return v * v; }

// sums[b] = sum of x[i]^2 over the entries i of block b, a tree in shared memory
extern "C" __global__ void __launch_bounds__(BLOCK) block_sums(const double* __restrict__ x,
                                                                double* __restrict__ sums, long long n) {
    __shared__ double partial[BLOCK];
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? square(x[i]) : 0.0;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[blockIdx.x] = partial[0];
}
"""

INDICES = r"""
// each thread records its indices at its global linear index, and the order in which it ran
extern "C" __global__ void indices(unsigned int* __restrict__ record, unsigned long long* counter,
                                   int* __restrict__ order) {
    BARRIER
    unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    unsigned int z = blockIdx.z * blockDim.z + threadIdx.z;
    unsigned int k = (z * gridDim.y * blockDim.y + y) * gridDim.x * blockDim.x + x;
    unsigned int values[12] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y, blockIdx.z,
                               blockDim.x, blockDim.y, blockDim.z, gridDim.x, gridDim.y, gridDim.z};
    for (int j = 0; j < 12; ++j) record[12 * k + j] = values[j];
    order[k] = (int)atomicAdd(counter, 1ull);
}
"""

ATOMICS = r"""
// totals of x (float and double) and a histogram of bins, by atomicAdd from the threads of the grid
extern "C" __global__ void atomic_totals(const double* __restrict__ x, const int* __restrict__ bins, int n,
                                         float* total32, double* total64, int* counts, unsigned int* seen) {
    __syncthreads();  // the threads of a block run as fibers
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        atomicAdd(total32, (float)x[i]);
        atomicAdd(total64, x[i]);
        atomicAdd(&counts[bins[i]], 1);
        atomicAdd(seen, 1u);
    }
}

// flag[0] = whether p is a null pointer; also min/max of mixed types and rsqrt
extern "C" __global__ void null_check(const double* p, int* flag, float* out) {
    flag[0] = p == nullptr;
    out[0] = min(2.5f, 3.0);        // CUDA's double min(float, double)
    out[1] = max(-1, 2u) == 4294967295u;  // unsigned int max(int, unsigned int), as in CUDA
    out[2] = rsqrt(4.0f);
}
"""

DIVERGENT = r"""
extern "C" __global__ void divergent(double* x) {
    __shared__ double s[64];
    s[threadIdx.x] = x[threadIdx.x];
    if (threadIdx.x < 16) {
        __syncthreads();
    }
    x[threadIdx.x] = s[63 - threadIdx.x];
}

extern "C" __global__ void early_return(double* x, int n) {
    __shared__ double s[64];
    if ((int)threadIdx.x >= n) return;
    s[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    x[threadIdx.x] = s[n - 1 - threadIdx.x];
}
"""

SCANS = r"""
// y = the inclusive prefix sums of x over each block (threads ranked x fastest), a Hillis-Steele scan:
// two barriers in each round of a loop, 2 log2(threads) + 1 in all
extern "C" __global__ void block_scan(const long long* __restrict__ x, long long* __restrict__ y) {
    __shared__ long long s[1024];
    unsigned int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned int size = blockDim.x * blockDim.y * blockDim.z;
    long long i = (long long)blockIdx.x * size + t;
    s[t] = x[i];
    __syncthreads();
    for (unsigned int offset = 1; offset < size; offset *= 2) {
        long long left = t >= offset ? s[t - offset] : 0;
        __syncthreads();
        s[t] += left;
        __syncthreads();
    }
    y[i] = s[t];
}

// x <- x rotated left by blockIdx.x + 1 entries in each block of x, one entry per round (a number of
// barriers that differs between the blocks); the threads of block `odd` (a thread of it, if odd_thread
// is a rank) take one round more
extern "C" __global__ void rotate(double* __restrict__ x, int odd, int odd_thread) {
    __shared__ double s[256];
    unsigned int t = threadIdx.x;
    double* row = x + (long long)blockIdx.x * blockDim.x;
    s[t] = row[t];
    int rounds = blockIdx.x + 1 + ((int)blockIdx.x == odd && (odd_thread < 0 || (int)t == odd_thread));
    for (int round = 0; round < rounds; ++round) {
        __syncthreads();
        double next = s[(t + 1) % blockDim.x];
        __syncthreads();
        s[t] = next;
    }
    row[t] = s[t];
}

// the race of a missing barrier: each thread writes its entry of s, then reads its neighbours' at once
extern "C" __global__ void racy(int* __restrict__ out) {
    __shared__ int s[64];
    __syncthreads();
    s[threadIdx.x] = blockIdx.x + 1;
    out[2 * (blockIdx.x * 64 + threadIdx.x)] = s[(threadIdx.x + 1) % 64];  // a __syncthreads() missing before
    out[2 * (blockIdx.x * 64 + threadIdx.x) + 1] = s[(threadIdx.x + 63) % 64];
    __syncthreads();
}

// g++ only (CUDA has no exceptions): thread `thrower` of block 1 throws between two barriers
extern "C" __global__ void throwing(double* x, int thrower) {
    __shared__ double s[32];
    s[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    if (blockIdx.x == 1 && (int)threadIdx.x == thrower) throw std::runtime_error("thrown by the kernel");
    double v = s[31 - threadIdx.x];
    __syncthreads();
    x[threadIdx.x] = v;
}
"""


@pytest.fixture
def xp(monkeypatch):
    return standin_cupy.install(monkeypatch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_stride_elementwise_matches_numpy(xp, rng, dtype):
    ctype = {np.float32: "float", np.float64: "double"}[dtype]
    kernel = xp.RawModule(code=AXPY.format(ctype=ctype), options=("--std=c++17", "-use_fast_math")).get_function(
        "tanh_axpy")
    n = 10_007  # more than the 7 x 128 threads: each takes several entries, each entry exactly once
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    y_device = xp.array(y)  # a copy, as to a GPU
    kernel((7,), (128,), (xp.asarray(x), y_device, dtype(0.5), np.int32(n)))
    rtol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    np.testing.assert_allclose(xp.asnumpy(y_device), y + dtype(0.5) * np.tanh(x), rtol=rtol, atol=rtol / 10)


def test_products_are_contracted_into_fused_multiply_adds_as_on_a_gpu(xp):
    """``x * x - p`` with ``p = fl(x * x)`` is the product's rounding error (2^-60 for x = 1 + 2^-30) where
    it is one fused multiply-add, CUDA's default, and 0 with ``--fmad=false``."""
    if not cuda_emulator._contraction_flags():
        pytest.skip("the CPU has no FMA")
    code = ('extern "C" __global__ void residual(const double* x, const double* p, double* y) '
            '{ y[0] = x[0] * x[0] - p[0]; }')
    x = np.array([1.0 + 2.0**-30])
    for options, expected in (((), 2.0**-60), (("--fmad=false",), 0.0)):
        y = xp.zeros(1)
        xp.RawKernel(code, "residual", options=options)((1,), (1,), (xp.array(x), xp.array(x * x), y))
        assert float(y[0]) == expected


def test_block_reduction_with_shared_memory_and_barriers(xp, rng):
    kernel = xp.RawKernel(REDUCTION, "block_sums")
    n, block = 5_000, 256
    blocks = -(-n // block)
    x = rng.standard_normal(n)
    sums = xp.zeros(blocks)
    for _ in range(2):  # the second launch finds the shared memory as the first left it
        kernel((blocks,), (block,), (xp.asarray(x), sums, np.int64(n)))
        expected = np.add.reduceat(x**2, np.arange(0, n, block))
        np.testing.assert_allclose(xp.asnumpy(sums), expected, rtol=1e-13)


def test_block_reduction_is_launched_with_barriers_and_elementwise_without():
    kernels = cuda_emulator._parse(REDUCTION + AXPY.format(ctype="float"))
    assert kernels["block_sums"].barriers and not kernels["tanh_axpy"].barriers
    assert [str(p) for p in kernels["block_sums"].parameters] == [
        "const double* __restrict__ x", "double* __restrict__ sums", "long long n"]
    helper = "__device__ void sync() { __syncthreads(); }\n" + AXPY.format(ctype="float")
    assert cuda_emulator._parse(helper)["tanh_axpy"].barriers  # through a device function it may call


@pytest.mark.parametrize("barrier", [False, True], ids=["threads", "fibers"])
@pytest.mark.parametrize(("grid", "block"), [((3, 2), (4, 2, 2)), ((2, 2, 3), (5,))])
def test_indices_of_multidimensional_grids_and_blocks(xp, grid, block, barrier):
    """The blocks one after another (blockIdx.x fastest), from the first up on one launch and from the last
    down on the next. Without barriers a block's threads run one after another, rank (threadIdx.x fastest)
    by rank; with them as fibers, which take turns from rank 0 up in even blocks, from the last rank down in
    odd ones."""
    kernel = xp.RawModule(INDICES.replace("BARRIER", "__syncthreads();" if barrier else "")).get_function("indices")
    grid3, block3 = grid + (1,) * (3 - len(grid)), block + (1,) * (3 - len(block))
    threads = int(np.prod(grid3) * np.prod(block3))
    blocks = [(bx, by, bz) for bz, by, bx in itertools.product(*(range(g) for g in reversed(grid3)))]
    threads_of_block = [(tx, ty, tz) for tz, ty, tx in itertools.product(*(range(b) for b in reversed(block3)))]
    numbered = list(enumerate(blocks))
    expected = {}
    for descending_blocks in (False, True):
        turns = [(b, t) for number, b in (numbered[::-1] if descending_blocks else numbered)
                 for t in (threads_of_block[::-1] if barrier and number % 2 else threads_of_block)]
        expected_record, expected_order = np.zeros((threads, 12), dtype=np.uint32), np.zeros(threads, dtype=np.int32)
        for rank, ((bx, by, bz), (tx, ty, tz)) in enumerate(turns):
            x, y, z = (bx * block3[0] + tx, by * block3[1] + ty, bz * block3[2] + tz)
            k = (z * grid3[1] * block3[1] + y) * grid3[0] * block3[0] + x
            expected_record[k] = (tx, ty, tz, bx, by, bz, *block3, *grid3)
            expected_order[k] = rank
        expected[descending_blocks] = expected_record, expected_order
    orders = []
    for _ in range(2):  # one launch each way, in an order that earlier launches of the same kernel decide
        record, order = xp.zeros(12 * threads, dtype=np.uint32), xp.zeros(threads, dtype=np.int32)
        counter = xp.zeros(1, dtype=np.uint64)
        kernel(grid, block, (record, counter, order))
        np.testing.assert_array_equal(xp.asnumpy(record).reshape(threads, 12), expected[False][0])
        assert int(counter[0]) == threads
        orders.append([d for d in (False, True) if np.array_equal(xp.asnumpy(order), expected[d][1])])
    assert sorted(orders) == [[False], [True]]


def test_a_kernel_whose_blocks_depend_on_one_another_gives_two_results(xp):
    """Block b adds 1 to what block b - 1 wrote in the same launch (an order CUDA does not promise): the blocks
    from the first up give 1, 2, 3, 4, from the last down 1, 1, 1, 1, so that tests comparing both launches'
    results with NumPy's catch it."""
    chained = ('extern "C" __global__ void chained(int* out) '
               '{ out[blockIdx.x] = (blockIdx.x ? out[blockIdx.x - 1] : 0) + 1; }')
    kernel = xp.RawKernel(chained, "chained")
    results = []
    for _ in range(2):
        out = xp.zeros(4, dtype=np.int32)
        kernel((4,), (1,), (out,))
        results.append(xp.asnumpy(out).tolist())
    assert sorted(results) == [[1, 1, 1, 1], [1, 2, 3, 4]]


def test_atomic_add_of_floats_and_integers(xp, rng):
    kernel = xp.RawModule(ATOMICS).get_function("atomic_totals")
    n = 20_000
    x, bins = rng.standard_normal(n), rng.integers(0, 10, n).astype(np.int32)
    total32, total64 = xp.zeros(1, dtype=np.float32), xp.zeros(1)
    counts, seen = xp.zeros(10, dtype=np.int32), xp.zeros(1, dtype=np.uint32)
    kernel((4,), (64,), (xp.asarray(x), xp.asarray(bins), np.int32(n), total32, total64, counts, seen))
    np.testing.assert_array_equal(xp.asnumpy(counts), np.bincount(bins, minlength=10))
    assert int(seen[0]) == n
    np.testing.assert_allclose(float(total64[0]), x.sum(), rtol=1e-11)
    np.testing.assert_allclose(float(total32[0]), x.sum(), atol=1e-3 * np.abs(x).sum())


def test_null_pointer_and_mixed_min_max(xp):
    kernel = xp.RawModule(ATOMICS).get_function("null_check")
    flag, out = xp.zeros(1, dtype=np.int32), xp.zeros(3, dtype=np.float32)
    kernel((1,), (1,), (None, flag, out))
    assert int(flag[0]) == 1
    np.testing.assert_array_equal(xp.asnumpy(out), [2.5, 1.0, 0.5])
    kernel((1,), (1,), (xp.zeros(1), flag, out))
    assert int(flag[0]) == 0


def test_arguments_are_checked_against_the_declared_types(xp):
    kernel = xp.RawModule(AXPY.format(ctype="double")).get_function("tanh_axpy")
    x, y = xp.zeros(4), xp.zeros(4)
    refused = {
        "Python int": ((x, y, np.float64(1), 4), TypeError, r"`int n`.*Python int 4.*np\.int32"),
        "np.int64 for int": ((x, y, np.float64(1), np.int64(4)), TypeError, r"`int n`.*signed integer of 4 bytes"),
        "Python float": ((x, y, 1.0, np.int32(4)), TypeError, r"`T a`.*Python float.*np\.float64"),
        "float32 array for double*": ((x.astype(np.float32), y, np.float64(1), np.int32(4)), TypeError,
                                      r"`const T\* __restrict__ x` points to a float of 8 bytes.*float32"),
        "NumPy array": ((np.zeros(4), y, np.float64(1), np.int32(4)), TypeError, r"`const T\* __restrict__ x`.*NumPy"),
        "scalar for a pointer": ((np.float64(0), y, np.float64(1), np.int32(4)), TypeError, "points to a float"),
        "array for a value": ((x, y, x, np.int32(4)), TypeError, r"`T a` takes a float of 8 bytes"),
        "too few": ((x, y, np.float64(1)), TypeError, r" takes 4 arguments.*3 given"),
        "too many": ((x, y, np.float64(1), np.int32(4), None), TypeError, "5 given"),
    }
    for args, error, message in refused.values():
        with pytest.raises(error, match=f"kernel tanh_axpy.*{message}"):
            kernel((1,), (4,), args)
    good = (x, y, np.float64(1), np.int32(4))
    for grid, block, kwargs, error, message in [
            (1, (4,), {}, TypeError, "grid must be a tuple"),
            ((1,), (2048,), {}, ValueError, "block.*outside"),
            ((1,), (32, 32, 2), {}, ValueError, "more than 1024 threads"),
            ((0,), (4,), {}, ValueError, "grid.*outside"),
            ((1,), (4,), {"shared_mem": 1024}, ValueError, "dynamic shared memory")]:
        with pytest.raises(error, match=message):
            kernel(grid, block, good, **kwargs)
    with pytest.raises(RuntimeError, match="no kernel named 'axpy'.*tanh_axpy"):
        xp.RawModule(AXPY.format(ctype="double")).get_function("axpy")


def test_threads_reaching_different_barriers_raise(xp):
    module = xp.RawModule(DIVERGENT)
    x = xp.zeros(64)
    with pytest.raises(RuntimeError, match=r"divergent: the threads of block \(0, 0, 0\) reached different barriers, "
                                           r"the kernel's end \(or a return\) and the __syncthreads\(\) of line 6"):
        module.get_function("divergent")((1,), (64,), (x,))
    values = np.arange(64.0)
    x = xp.array(values)
    module.get_function("early_return")((1,), (64,), (x, np.int32(64)))  # no thread returns: as on a GPU
    np.testing.assert_array_equal(xp.asnumpy(x), values[::-1])
    with pytest.raises(RuntimeError, match="early_return.*line 15"):
        module.get_function("early_return")((1,), (64,), (x, np.int32(32)))



@pytest.mark.parametrize("block", [(1024,), (8, 16, 8), (32,), (1,)])
def test_barriers_in_a_loop_in_blocks_of_up_to_1024_threads(xp, rng, block):
    kernel = xp.RawModule(SCANS).get_function("block_scan")  # 21 barriers per block of 1024 threads
    size, blocks = int(np.prod(block)), 3
    x = rng.integers(-2**40, 2**40, (blocks, size))
    y = xp.zeros(x.size, dtype=np.int64)
    kernel((blocks,), block, (xp.asarray(x.ravel()), y))
    np.testing.assert_array_equal(xp.asnumpy(y).reshape(blocks, size), np.cumsum(x, axis=1))


def test_barrier_counts_that_differ_between_blocks(xp, rng):
    kernel = xp.RawModule(SCANS).get_function("rotate")
    x = rng.standard_normal((5, 256))
    rows = xp.array(x.ravel())
    kernel((5,), (256,), (rows, np.int32(-1), np.int32(-1)))  # block b: 2 (b + 1) barriers
    np.testing.assert_array_equal(xp.asnumpy(rows).reshape(5, 256), [np.roll(r, -(b + 1)) for b, r in enumerate(x)])
    kernel((5,), (256,), (xp.array(x.ravel()), np.int32(3), np.int32(-1)))  # every thread of block 3: one more
    with pytest.raises(RuntimeError, match=r"rotate: the threads of block \(3, 0, 0\) reached different barriers, "
                                           r"the kernel's end \(or a return\) and the __syncthreads\(\) of line 30"):
        kernel((5,), (256,), (xp.array(x.ravel()), np.int32(3), np.int32(200)))  # one thread of block 3: one more
    kernel((5,), (256,), (rows, np.int32(-1), np.int32(-1)))  # the next launch runs
    np.testing.assert_array_equal(xp.asnumpy(rows).reshape(5, 256),
                                  [np.roll(r, -2 * (b + 1)) for b, r in enumerate(x)])


def test_a_missing_barrier_shows(xp):
    """In a phase the fibers take turns from rank 0 up in even blocks and down in odd ones: a thread reads
    its neighbour's entry before the neighbour wrote it (the previous block's value) in one of them."""
    kernel = xp.RawModule(SCANS).get_function("racy")
    out = xp.zeros(2 * 2 * 64, dtype=np.int32)
    kernel((2,), (64,), (out,))
    right, left = xp.asnumpy(out).reshape(2, 64, 2).transpose(2, 0, 1)
    written = np.array([[1], [2]])  # block b writes b + 1 (what every thread would read after a barrier)
    # block 0, from rank 0 up: 63 threads read s[t + 1] before it was written, thread 0 reads s[63] before too
    assert (right[0] != written[0]).sum() == 63 and (left[0] != written[0]).sum() == 1
    # block 1, from rank 63 down: the mirror image
    assert (left[1] != written[1]).sum() == 63 and (right[1] != written[1]).sum() == 1


def test_a_thread_that_throws_fails_the_launch_and_the_next_runs(xp):
    kernel = xp.RawModule(SCANS).get_function("throwing")
    values = np.arange(32.0)
    x = xp.array(values)
    with pytest.raises(RuntimeError, match=r"throwing: thread \(7, 0, 0\) of block \(1, 0, 0\) threw: thrown by the"):
        kernel((3,), (32,), (x, np.int32(7)))  # the other fibers of block 1, waiting at a barrier, unwind
    np.testing.assert_array_equal(xp.asnumpy(x), values[::-1])  # block 0 reversed x, block 1 stopped, 2 did not run
    kernel((3,), (32,), (x, np.int32(-1)))  # each block reverses x
    np.testing.assert_array_equal(xp.asnumpy(x), values)


def test_a_kernel_that_overflows_its_stack_stops_at_the_guard_page():
    """A fiber's stack is 64 KiB: thread 5 calling a function with 128 KiB of local memory crashes the
    process (SIGSEGV, faulthandler's traceback names the launch) instead of writing over the stack of
    thread 4 below it."""
    code = r"""
__device__ __noinline__ double deep(double v) {
    volatile double local[16384];
    for (int i = 0; i < 16384; ++i) local[i] = v;
    return local[16383];
}
extern "C" __global__ void overflow(double* x) {
    __syncthreads();
    x[threadIdx.x] = threadIdx.x == 5 ? deep(x[threadIdx.x]) : 1.0;
}"""
    script = (f"import numpy as np, standin_cupy\nxp = standin_cupy.install()\nx = xp.zeros(32)\n"
              f"kernel = xp.RawModule({code!r}).get_function('overflow')\n"
              "print('launching', flush=True)\n"
              "kernel((1,), (32,), (x,))\n"
              "print('survived', flush=True)\n")
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True,
                            cwd=os.path.dirname(__file__), timeout=600)
    assert result.stdout == "launching\n" and result.returncode == -signal.SIGSEGV, result.stderr
    assert "Segmentation fault" in result.stderr and 'File "<string>", line 6' in result.stderr, result.stderr


def test_barriers_cost_little(xp, rng):
    """64 blocks of 256 threads through 9 barriers (2560 switches a block), in well under a second of CPU
    (about 5 ms as fibers on a loaded machine; OS threads meeting at a barrier took 100 ms to 300 ms)."""
    kernel = xp.RawKernel(REDUCTION, "block_sums")
    x, sums = xp.asarray(rng.standard_normal(64 * 256)), xp.zeros(64)
    kernel((64,), (256,), (x, sums, np.int64(x.size)))  # compiled, loaded
    start = time.process_time()
    kernel((64,), (256,), (x, sums, np.int64(x.size)))
    assert time.process_time() - start < 0.1
    np.testing.assert_allclose(xp.asnumpy(sums), np.add.reduceat(xp.asnumpy(x) ** 2, np.arange(0, x.size, 256)),
                               rtol=1e-13)

def test_compiled_libraries_are_cached(monkeypatch, tmp_path, xp):
    monkeypatch.setenv("OCDL_EMULATOR_CACHE", str(tmp_path))
    monkeypatch.setattr(cuda_emulator, "COMPILES", [])
    code = AXPY.format(ctype="float")
    module = xp.RawModule(code)
    assert cuda_emulator.COMPILES == []  # compiled when first needed, as by CuPy
    module.compile()
    assert len(cuda_emulator.COMPILES) == 1 and cuda_emulator.COMPILES[0].startswith(str(tmp_path))
    xp.RawModule(code, options=("-lineinfo",)).compile()  # loaded in this process: g++ ignores this option
    monkeypatch.setattr(cuda_emulator, "_LIBRARIES", {})
    kernel = xp.RawKernel(code, "tanh_axpy")  # loaded from the folder, as by another process
    y = xp.zeros(3, dtype=np.float32)
    kernel((1,), (3,), (xp.ones(3, dtype=np.float32), y, np.float32(2), np.int32(3)))
    np.testing.assert_allclose(xp.asnumpy(y), 2 * np.tanh(np.float32(1)), rtol=1e-6)
    assert len(cuda_emulator.COMPILES) == 1
    xp.RawModule(code, options=("-DUNUSED=1",)).compile()  # a macro reaches g++: another library
    assert len(cuda_emulator.COMPILES) == 2
    files = sorted(path.name for path in tmp_path.iterdir())
    assert sorted(name[32:] for name in files if not name.startswith("prelude-")) == [".cpp", ".cpp", ".so", ".so"]
    # the prelude, precompiled once for each set of options (the macro may change what it means)
    headers = [name for name in files if name.startswith("prelude-")]
    assert sorted(name.split(".", 1)[1] for name in headers) == ["h", "h", "h.gch", "h.gch"], files


def test_compile_errors_give_the_lines_of_the_kernel_source(xp):
    code = 'extern "C" __global__ void broken(double* y) {\n    y[0] = 1.0;\n    y[1] = undeclared;\n}\n'
    module = xp.RawModule(code)  # compiled when first needed, as by CuPy
    with pytest.raises(cuda_emulator.CompileError, match=r"(?s)kernel\.cu:3:\d+: error: .undeclared. was not declared"):
        module.get_function("broken")
    with pytest.raises(cuda_emulator.CompileError, match=r'extern "C" __global__ void NAME'):
        xp.RawKernel("template <class T> __global__ void f(T* y) { y[0] = 1; }", "f").compile()
    ambiguous = 'extern "C" __global__ void f(float* y) { y[0] = min(3, 2.5f); }'  # as nvcc says
    with pytest.raises(cuda_emulator.CompileError, match=r"kernel\.cu:1:\d+: error: call of overloaded .min"):
        xp.RawModule(ambiguous).compile()
    pointers = xp.RawModule('extern "C" __global__ void f(float* const* y) { }')  # g++ compiles it, but
    with pytest.raises(TypeError, match=r"parameter `float\* const\* y` is neither"):  # it cannot be passed
        pointers.get_function("f")


@pytest.mark.parametrize("compiler", ["nvcc", "nvrtc"])
def test_compiles_for_the_h200(compiler):
    """nvcc, and NVRTC with CuPy's options, where installed: ptxas' report. A function without ``__device__``
    is a host function to nvcc and a device function to CuPy (``--device-as-default-execution-space``)."""
    compile_for_h200 = getattr(cuda_emulator, f"{compiler}_compile")
    report = compile_for_h200(REDUCTION, options=("-DUNUSED=1", "--std=c++17", "-use_fast_math"))
    if report is None:
        pytest.skip(f"{compiler} is not installed" + (" (pip install nvidia-cuda-nvrtc)" * (compiler == "nvrtc")))
    assert "block_sums" in report and "sm_90" in report
    assert "registers" in report and "0 bytes spill stores" in report and "2048 bytes smem" in report
    plain_function = "double twice(double v) { return 2 * v; }\n" + AXPY.format(ctype="double").replace(
        "tanh(x[i])", "twice(x[i])")
    if compiler == "nvcc":
        with pytest.raises(cuda_emulator.CompileError, match=r"kernel\.cu\(\d+\): error: calling a __host__ function"):
            compile_for_h200(plain_function)
        return
    assert "tanh_axpy" in compile_for_h200(plain_function, options=("--std=c++11",))
    undeclared = AXPY.format(ctype="double").replace("tanh(x[i])", "undeclared")
    with pytest.raises(cuda_emulator.CompileError, match=r'kernel\.cu\(\d+\): error: identifier "undeclared"'):
        compile_for_h200(undeclared)


def test_with_ocdl_emulator_nvrtc_set_every_module_is_checked_by_nvrtc(xp, monkeypatch):
    """A module that g++ runs but NVRTC warns about fails its compilation (an unused variable here)."""
    if cuda_emulator.nvrtc_compile(REDUCTION) is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
    unused = AXPY.format(ctype="double").replace("tanh(x[i])", "tanh(x[i]); int unused")
    module = xp.RawModule(unused)
    monkeypatch.setenv("OCDL_EMULATOR_NVRTC", "1")
    with pytest.raises(cuda_emulator.CompileError, match=r"(?s)NVRTC warns or spills.*\"unused\" was declared"):
        module.compile()
    xp.RawModule(AXPY.format(ctype="double")).compile()  # NVRTC has nothing to say about the kernel as written


def test_install_gives_the_kernels_and_the_device_properties(xp):
    assert xp.RawModule is cuda_emulator.RawModule and xp.RawKernel is cuda_emulator.RawKernel
    properties = xp.cuda.runtime.getDeviceProperties(0)
    assert properties["multiProcessorCount"] == 4 and properties["sharedMemPerBlock"] == 49152
    assert xp.cuda.Device().attributes["MultiProcessorCount"] == 4


SHIFTED = r"""
// y[i] = x[i + shift] for i < n: with shift != 0 the kernel reads outside x (an off-by-one)
extern "C" __global__ void shifted_copy(const double* x, double* y, int n, int shift) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) y[i] = x[i + shift];
}

// y[i + shift] = 2 x[i] for i < n: with shift != 0 the kernel writes outside y
extern "C" __global__ void shifted_store(const double* x, double* y, int n, int shift) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) y[i + shift] = 2 * x[i];
}

// x[i] = x[i] + y[i] in place, x passed twice
extern "C" __global__ void add_into(const double* x, const double* y, double* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) out[i] = x[i] + y[i];
}
"""


def test_reads_outside_an_array_give_nan_and_writes_outside_are_refused():
    """A GPU's pool puts arrays side by side, so an off-by-one reads a neighbour's numbers and writes
    corrupt it, silently. The emulator copies each array between guard zones: a read outside gives NaN,
    a write outside fails the launch, naming the parameter, and in-place arguments still share memory."""
    module = cuda_emulator.RawModule(code=SHIFTED)
    x = np.arange(1.0, 11.0).view(standin_cupy.StandInArray)
    y = np.zeros(10).view(standin_cupy.StandInArray)
    copy = module.get_function("shifted_copy")
    copy((2,), (4,), (x, y, np.int32(10), np.int32(0)))
    np.testing.assert_array_equal(np.asarray(y), np.arange(1.0, 11.0))
    copy((2,), (4,), (x, y, np.int32(10), np.int32(1)))
    assert np.isnan(np.asarray(y)[-1]) and np.array_equal(np.asarray(y)[:-1], np.arange(2.0, 11.0))
    copy((2,), (4,), (x, y, np.int32(10), np.int32(-3)))
    assert np.isnan(np.asarray(y)[:3]).all()
    store = module.get_function("shifted_store")
    for shift, where in ((1, "past its end (up to 8 bytes)"), (-2, "before its start (up to 16 bytes)")):
        message = rf"shifted_store wrote where it may not: `double\* y` {re.escape(where)}"
        with pytest.raises(RuntimeError, match=message):
            store((1,), (8,), (x, y, np.int32(10), np.int32(shift)))
    add = module.get_function("add_into")
    add((1,), (16,), (x, x, x, np.int32(10)))
    np.testing.assert_array_equal(np.asarray(x), 2 * np.arange(1.0, 11.0))


def test_read_only_arrays_are_inputs():
    """A stand-in array can be read-only (a memory policy's copy of the parameters), a CuPy array cannot:
    a kernel reads one as it is, and a write into one fails the launch, naming the parameter."""
    module = cuda_emulator.RawModule(code=SHIFTED)
    x = np.arange(1.0, 11.0).view(standin_cupy.StandInArray)
    x.flags.writeable = False
    y = np.zeros(10).view(standin_cupy.StandInArray)
    module.get_function("shifted_store")((1,), (8,), (x, y, np.int32(10), np.int32(0)))
    np.testing.assert_array_equal(np.asarray(y), 2 * np.arange(1.0, 11.0))
    with pytest.raises(RuntimeError, match=r"shifted_store wrote where it may not: `double\* y` into its read-only"):
        module.get_function("shifted_store")((1,), (8,), (y, x, np.int32(10), np.int32(0)))
    np.testing.assert_array_equal(np.asarray(x), np.arange(1.0, 11.0))


SHARED_ARRAYS = r"""
#define ROWS 64
typedef double T;
// two arrays of ROWS * (N + 1) numbers each: with N = 47, 2 * 64 * 48 * 8 = 48 KiB exactly
extern "C" __global__ void two_arrays(T* out) {
    __shared__ T a[ROWS * (N + 1)];
    __shared__ T b[ROWS][N + 1];
    a[threadIdx.x] = threadIdx.x;
    b[threadIdx.x][0] = 1;
    __syncthreads();
    out[threadIdx.x] = a[threadIdx.x] + b[threadIdx.x][0];
}
"""


def test_a_kernel_over_the_static_shared_memory_limit_fails_to_compile():
    """CUDA refuses a kernel whose __shared__ arrays take more than 48 KiB when the module loads (ptxas:
    "uses too much shared data"); g++ would take any size. The emulator refuses it too, naming the kernel."""
    out = np.zeros(64).view(standin_cupy.StandInArray)
    cuda_emulator.RawModule(code=SHARED_ARRAYS, options=("-DN=47",)).get_function("two_arrays")((1,), (64,), (out,))
    np.testing.assert_array_equal(np.asarray(out), np.arange(64.0) + 1)
    with pytest.raises(cuda_emulator.CompileError, match=r"two_arrays uses too much shared data \(50176 bytes"):
        cuda_emulator.RawModule(code=SHARED_ARRAYS, options=("-DN=48",)).compile()


CONDITIONAL = """
#ifdef FIRST
extern "C" __global__ void first(double* y) { y[threadIdx.x] = 1; }
#else
extern "C" __global__ void second(double* y) { y[threadIdx.x] = 2; }
#endif
extern "C" __global__ void always(double* y) {
    y[threadIdx.x] = undeclared_unless_first;
}
"""


def test_kernels_in_branches_the_preprocessor_leaves_out_are_not_in_the_module():
    """As NVRTC compiles a module: a kernel in an inactive #if branch is not there (get_function fails, naming
    the kernels that are); the others run, and a compile error after the branch gives its line in the source."""
    y = np.zeros(4).view(standin_cupy.StandInArray)
    module = cuda_emulator.RawModule(code=CONDITIONAL, options=("-DFIRST", "-Dundeclared_unless_first=3"))
    module.get_function("first")((1,), (4,), (y,))
    np.testing.assert_array_equal(np.asarray(y), 1.0)
    module.get_function("always")((1,), (4,), (y,))
    np.testing.assert_array_equal(np.asarray(y), 3.0)
    with pytest.raises(RuntimeError, match=r"no kernel named 'second' in the code \(its kernels: first, always\)"):
        module.get_function("second")
    with pytest.raises(cuda_emulator.CompileError, match=r"kernel\.cu:8:\d+: error: .undeclared_unless_first. was"):
        cuda_emulator.RawModule(code=CONDITIONAL).compile()
