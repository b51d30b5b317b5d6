"""CUDA kernels run on the CPU: CuPy's ``RawModule`` and ``RawKernel`` for the stand-in (``standin_cupy.py``).

The CUDA C source of ``RawModule(code)`` is compiled by g++ (``-std=c++20 -O2``) into a shared
library after a prelude that emulates the CUDA subset below, and each ``extern "C" __global__``
kernel is launched through a generated C++ trampoline, so that the fused code paths of ocdl run,
and are tested, on a machine without a GPU. ``nvcc_compile`` compiles the same source for the
H200 (sm_90) with nvcc, where it is installed, and reports the registers, spills and shared
memory that ptxas allots: it catches what g++ accepts and CUDA does not. ``nvrtc_compile`` does the
same with NVRTC, the compiler CuPy's ``RawModule`` calls, and CuPy's options; with
``$OCDL_EMULATOR_NVRTC`` set, every module the emulator compiles goes through it too (see
:func:`nvrtc_compile`).

The CUDA subset
---------------
- Declarations: ``__global__``, ``__device__``, ``__host__``, ``__forceinline__``, ``__noinline__``,
  ``__launch_bounds__(...)`` (ignored), ``__restrict__``, and ``__shared__`` for static arrays
  declared in a kernel (made ``static`` locals: shared by the threads of a block; blocks run one
  after another, so each block finds them as the GPU leaves them, undefined). A kernel whose
  arrays take more than CUDA's static limit of 48 KiB fails the module's compilation, as it fails
  the module's load on a GPU (:data:`MAX_STATIC_SHARED_BYTES`). Dynamic
  ``extern __shared__`` memory, ``__constant__`` memory and warp shuffles are not emulated.
- ``threadIdx``, ``blockIdx`` (``uint3``, one per thread), ``blockDim``, ``gridDim`` (``dim3``).
- ``__syncthreads()``: every thread of the block must reach the same one (the same source line), as
  on a GPU, where a barrier in divergent code hangs or corrupts shared memory silently; the
  emulator raises instead, naming the lines the threads reached.
- ``atomicAdd(p, v)`` for ``float*``, ``double*``, ``int*``, ``unsigned int*`` and
  ``unsigned long long*`` (``std::atomic_ref``), ``__ldg(p)`` (``*p``).
- Math: the C and C++ functions of ``<math.h>`` for ``float`` and ``double`` under their global
  names (``tanh``, ``tanhf``, ``exp``, ``sqrt``, ``fabs``, ``fmax``, ``fmin``, ...; not ``std::tanh``,
  which NVRTC lacks), ``rsqrt``/``rsqrtf``, and CUDA's overloads of ``min``/``max`` (of ``int``,
  ``long``, ``long long``, signed or not, ``float`` and ``double``; a call that is ambiguous in
  CUDA, ``min(3, 2.5f)``, is ambiguous here too). Intrinsics such as ``__fdividef`` are not emulated.
- Rounding: as nvcc and NVRTC do by default (``--fmad=true``), g++ contracts ``a * b + c`` into one
  fused multiply-add where the CPU has FMA (``-mfma -ffp-contract=fast``; not where it has none, as
  FMA in software is slow), so that the tests' tolerances meet a GPU's rounding; ``--fmad=false``
  among the options turns it off (``-ffp-contract=off``). Which products a compiler contracts is its
  own choice: the results are a GPU's to rounding, not bit for bit.

Kernels are declared one per declaration, ``extern "C" __global__ void NAME(TYPE name, ...)``
(``__launch_bounds__(...)`` may follow ``void``), their parameter types being arithmetic types or
pointers to them, through ``typedef``s of the code or not (``const T* __restrict__ x``, ``T a``,
``int n``, ``long long n``). A kernel in a branch that the preprocessor leaves out (``#ifdef``,
``#if``) is not in the module, as with NVRTC; each name appears once in the file.

Launches
--------
``kernel(grid, block, args, shared_mem=0)`` as in CuPy: ``grid`` and ``block`` tuples of one to
three positive ints, within the GPU's limits (a block of at most 1024 threads). Everything runs in
the launching OS thread, one thread of the grid at a time (``threadIdx`` and ``blockIdx`` are globals
that each switch sets): the blocks one after another, ``blockIdx.x`` fastest, from the first block up
on a kernel's first launch and every other one after it, from the last block down on the others (CUDA
runs blocks in no order: a kernel whose blocks depend on one another's writes within a launch gives
two results). A kernel whose source
(or that of the module's device functions) calls no ``__syncthreads`` runs the threads of a block
one after another, rank by rank (``threadIdx.x`` fastest); one that does runs them as fibers that
take turns: each runs until it reaches a ``__syncthreads`` (or the kernel's end)
and switches to the next; after the last, the launcher checks that every thread reached the same
barrier and the next phase begins. In a phase the fibers take turns from rank 0 up in even blocks
and from the last rank down in odd ones: any order is CUDA's, and a race on shared memory (a missing
``__syncthreads``) shows in one or the other. The fibers start on stacks of 64 KiB, each above a
guard page (a kernel that overflows one crashes the process with SIGSEGV), made per launch by
``makecontext`` and reused across the blocks, and switch by ``_setjmp``/``_longjmp``, which, unlike
``swapcontext``, make no system call (for the signal mask): a switch costs tens of nanoseconds (with
x86-64's shadow stack, an opt-in of glibc 2.39, a jump to another fiber would fault).

The arguments are checked as a GPU would silently not: a pointer parameter takes a device array
(``standin_cupy.StandInArray``, passed as its data pointer whatever its strides, as CuPy does) or
``None`` (a null pointer), of the itemsize and kind (float, signed, unsigned, bool) of the pointee;
a value parameter takes a NumPy scalar of the parameter's size and kind. A NumPy array is refused
(CuPy refuses host memory), and so is a Python ``int``, ``float`` or ``bool`` (CuPy would pass it
as a 64-bit value, whatever the kernel declares). ``TypeError`` names the kernel, the parameter
and what was given; so does a wrong number of arguments.

Every C-contiguous array argument runs in a copy between guard zones of 0xFF bytes
(:class:`_Guarded`): a read past either end gives NaN (or -1 for integers) that the results show,
and a write there fails the launch, naming the parameter (on a GPU both are silent: the memory
pool puts arrays side by side). The same array passed twice shares one copy.

The libraries are cached by a hash of their source (the prelude, the code and the trampolines),
the g++ options and the compiler's version in ``$OCDL_EMULATOR_CACHE`` (by default a folder under
``tempfile.gettempdir()``), written atomically, and loaded once per process. A compile error raises
:class:`CompileError` with g++'s message, whose line numbers are those of the kernel source.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass

import numpy as np
import standin_cupy  # its StandInArray is the device array (standin_cupy imports this module: attributes only)

SOURCE_NAME = "kernel.cu"
"""The file name of the kernel source in g++'s and nvcc's messages (the lines are the source's)."""

MAX_THREADS_PER_BLOCK = 1024
#: Bytes of the ``__shared__`` arrays a kernel may declare (CUDA's static limit; ptxas refuses more).
MAX_STATIC_SHARED_BYTES = 48 * 1024
_MAX_GRID = (2**31 - 1, 65535, 65535)
_MAX_BLOCK = (1024, 1024, 64)

GXX_FLAGS = ("-std=c++20", "-O2", "-shared", "-fPIC", "-fstack-clash-protection")
"""g++'s options for every library; those of ``RawModule(options=...)`` that g++ understands follow.
``-fstack-clash-protection`` makes a large stack frame touch its pages one by one, so that a kernel
that overflows its fiber's stack reaches the guard page below it, never another fiber's stack."""

_PASSED_OPTIONS = ("-D", "-U", "-I", "--define-macro=", "--undefine-macro=", "--include-path=")
_GXX_SPELLING = {"--define-macro=": "-D", "--undefine-macro=": "-U", "--include-path=": "-I"}
_NVCC_OPTIONS = _PASSED_OPTIONS + ("-std=", "--std=", "-use_fast_math", "--use_fast_math", "-lineinfo", "--fmad=")

COMPILES: list[str] = []
"""The cache paths of the libraries this process compiled (not those loaded from the cache), in order."""

_PRELUDE = r"""
// The CUDA subset of tests/cuda_emulator.py, for g++ on the CPU.
#undef _FORTIFY_SOURCE  // its longjmp refuses to jump to another fiber's stack (see switch_to)
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <math.h>
#include <setjmp.h>
#include <stdexcept>
#include <sys/mman.h>
#include <type_traits>
#include <ucontext.h>
#include <unistd.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() ocdl_emulator::syncthreads(__LINE__)

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x = 1, unsigned int y = 1, unsigned int z = 1) : x(x), y(y), z(z) {}
};

// The running thread's: the threads run one at a time in the launching OS thread (as fibers where
// the kernel has barriers), and every switch from one to another sets threadIdx.
static uint3 threadIdx;
static uint3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;

template <class T> inline T __ldg(const T* p) { return *p; }

inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return std::atomic_ref<unsigned int>(*p).fetch_add(v);
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float rsqrt(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }

// CUDA's overloads of min and max (so that a call CUDA finds ambiguous is ambiguous here too)
#define OCDL_MIN_MAX(R, A, B) \
    inline R min(A a, B b) { return static_cast<R>(b) < static_cast<R>(a) ? b : a; } \
    inline R max(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? b : a; }
#define OCDL_MIN_MAX_INTEGERS(S, U) OCDL_MIN_MAX(S, S, S) OCDL_MIN_MAX(U, U, U) OCDL_MIN_MAX(U, S, U) \
    OCDL_MIN_MAX(U, U, S)
OCDL_MIN_MAX_INTEGERS(int, unsigned int)
OCDL_MIN_MAX_INTEGERS(long int, unsigned long int)
OCDL_MIN_MAX_INTEGERS(long long int, unsigned long long int)
#undef OCDL_MIN_MAX_INTEGERS
#undef OCDL_MIN_MAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

namespace ocdl_emulator {

// A parameter of a kernel as the launcher checks it: pointer or value, kind ('f' float, 'i' signed,
// 'u' unsigned, 'b' bool, '?' unsupported) and size in bytes of the value or of the pointee.
struct Parameter { int pointer; char kind; long long size; };

template <class P> constexpr Parameter describe() {
    using V = std::remove_cv_t<std::remove_pointer_t<P>>;
    char kind = std::is_floating_point_v<V> ? 'f'
              : std::is_same_v<V, bool> ? 'b'
              : std::is_integral_v<V> ? (std::is_signed_v<V> ? 'i' : 'u') : '?';
    long long size = 0;
    if constexpr (std::is_arithmetic_v<V>) size = sizeof(V);
    return {std::is_pointer_v<P>, kind, size};
}

constexpr int kernel_end = -1;  // where a thread that finished the kernel waits for its block
constexpr std::size_t stack_size = 64 * 1024;  // each fiber's, above a guard page

struct Abort {};  // unwinds the fibers of a block once the launch failed

inline uint3 unravel(unsigned long long index, dim3 shape) {
    return {unsigned(index % shape.x), unsigned(index / shape.x % shape.y), unsigned(index / shape.x / shape.y)};
}

// A thread of a block in a launch with barriers: a fiber, on its own stack, of the launching OS thread.
struct Fiber {
    ucontext_t start;       // its entry, on its stack, until it started
    jmp_buf context;        // where it waits for its block, once it started
    bool started = false;
};

// The threads of a block in a launch with barriers, as fibers that take turns: each runs until it
// reaches a barrier (a __syncthreads, or the kernel's end) and switches to the next, the last back to
// the launcher, which checks that every thread arrived at the same barrier (source line) and runs the
// next phase. The fibers take turns from rank 0 up in even blocks, from the last rank down in odd
// ones (any order is CUDA's, and a race on shared memory shows in one or the other).
struct Block {
    unsigned int size;           // threads per block
    std::vector<uint3> indices;  // the threadIdx of each rank (x fastest)
    std::vector<int> lines;      // where each thread arrived: a __syncthreads line, or kernel_end
    std::vector<Fiber> fibers;
    void* stacks = MAP_FAILED;   // the fibers' stacks, each above a guard page
    std::size_t mapped = 0;
    void* kernel = nullptr;      // the launch's Kernel, which the fibers run
    jmp_buf launcher;            // where the launch waits while the fibers run a phase
    unsigned int running = 0;    // the rank of the running fiber
    bool descending = false;     // whether the fibers take turns from the last rank down
    bool failed = false;         // read by every fiber that resumes, written by the launcher
    bool thrown = false;         // a thread's kernel threw
    char error[1024] = {0};

    Block(dim3 shape, unsigned int size) : size(size), indices(size), lines(size), fibers(size) {
        for (unsigned int rank = 0; rank < size; ++rank) indices[rank] = unravel(rank, shape);
    }
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;
    ~Block() { if (stacks != MAP_FAILED) munmap(stacks, mapped); }

    // Gives each fiber a stack and entry() to start with; false, with an error, if it cannot.
    bool prepare(void (*entry)(), void* launched) {
        kernel = launched;
        std::size_t page = sysconf(_SC_PAGESIZE), stride = page + stack_size;
        mapped = stride * size;
        stacks = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        for (unsigned int rank = 0; rank < size && stacks != MAP_FAILED; ++rank) {
            char* guard = static_cast<char*>(stacks) + rank * stride;
            ucontext_t& start = fibers[rank].start;
            if (mprotect(guard, page, PROT_NONE) != 0 || getcontext(&start) != 0) {
                std::snprintf(error, sizeof error, "could not prepare the fibers of a block: %s", std::strerror(errno));
                return false;
            }
            start.uc_stack.ss_sp = guard + page;
            start.uc_stack.ss_size = stack_size;
            start.uc_link = nullptr;
            makecontext(&start, entry, 0);
        }
        if (stacks != MAP_FAILED) return true;
        std::snprintf(error, sizeof error, "could not allocate the stacks of %u fibers (%zu bytes): %s", size, mapped,
                      std::strerror(errno));
        return false;
    }

    long first() const { return descending ? long(size) - 1 : 0; }
    long after(unsigned int rank) const { return descending ? long(rank) - 1 : long(rank) + 1; }

    static void where(int line, char* text, std::size_t size) {
        if (line == kernel_end) std::snprintf(text, size, "the kernel's end (or a return)");
        else std::snprintf(text, size, "the __syncthreads() of line %d", line);
    }

    // After a phase: whether every thread arrived at the same barrier (failed, with an error, if not).
    void check() noexcept {
        if (thrown) { failed = true; return; }
        int low = INT_MAX, high = INT_MIN;
        for (int line : lines) { low = line < low ? line : low; high = line > high ? line : high; }
        if (low == high) return;
        char first[64], second[64];
        where(low, first, sizeof first);
        where(high, second, sizeof second);
        std::snprintf(error, sizeof error,
            "the threads of block (%u, %u, %u) reached different barriers, %s and %s: every thread of a "
            "block must reach each __syncthreads() (none in a branch that differs between the threads, "
            "none after a return); on a GPU this hangs or silently corrupts shared memory",
            blockIdx.x, blockIdx.y, blockIdx.z, first, second);
        failed = true;
    }

    void fail(const char* what) {
        if (!thrown)
            std::snprintf(error, sizeof error, "thread (%u, %u, %u) of block (%u, %u, %u) threw: %s",
                          threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y, blockIdx.z, what);
        thrown = true;
    }
};

static Block* block = nullptr;  // the running launch's, when it runs the threads of a block as fibers

// Saves where the running fiber (or the launcher) is in from and switches to the fiber of rank to (its
// threadIdx set), or to the launcher if there is no such rank; returns when switched back to from.
// makecontext and setcontext start a fiber, _setjmp and _longjmp switch (setcontext and swapcontext
// would set the signal mask at every switch, a system call); never inlined, so that the caller keeps
// no value of memory in a register across the switch.
[[gnu::noipa]] static void switch_to(jmp_buf from, long to) {
    if (_setjmp(from) != 0) return;
    if (to < 0 || to >= long(block->size)) _longjmp(block->launcher, 1);
    Fiber& fiber = block->fibers[to];
    block->running = to;
    threadIdx = block->indices[to];
    if (fiber.started) _longjmp(fiber.context, 1);
    fiber.started = true;
    setcontext(&fiber.start);
}

// The running fiber arrives at line (a __syncthreads, or kernel_end) and waits for its block's next phase.
inline void wait(int line) {
    unsigned int rank = block->running;
    block->lines[rank] = line;
    asm volatile("" ::: "memory");  // shared memory written before, read after, by the other fibers
    switch_to(block->fibers[rank].context, block->after(rank));
    asm volatile("" ::: "memory");
}

inline void syncthreads(int line) {
    if (block == nullptr) throw std::logic_error("__syncthreads() in a kernel launched without barriers");
    wait(line);
    if (block->failed) throw Abort{};
}

// A fiber: the kernel for each block, then a wait at its end; it never returns (the launch leaves it there).
template <class Kernel> void fiber_main() {
    for (;;) {
        if (!block->failed) {
            try {
                (*static_cast<Kernel*>(block->kernel))();
            } catch (const Abort&) {
            } catch (const std::exception& e) {
                block->fail(e.what());
            } catch (...) {
                block->fail("an exception");
            }
        }
        wait(kernel_end);
    }
}

// Runs kernel() for every thread of the grid; 0, or 1 with a message in error. The blocks run from the
// first up on the kernel's 1st, 3rd, ... launch, from the last down on the others.
template <class Kernel>
int launch(const unsigned int* grid, const unsigned int* block_shape, bool barriers, Kernel kernel,
           char* error, int error_size) {
    static unsigned long long launches = 0;  // of this kernel (one instance of the template per kernel)
    const bool descending_blocks = launches++ % 2 == 1;
    gridDim = dim3(grid[0], grid[1], grid[2]);
    blockDim = dim3(block_shape[0], block_shape[1], block_shape[2]);
    unsigned long long blocks = 1ull * grid[0] * grid[1] * grid[2];
    unsigned int threads = block_shape[0] * block_shape[1] * block_shape[2];
    auto number = [&](unsigned long long turn) { return descending_blocks ? blocks - 1 - turn : turn; };
    try {
        if (!barriers) {
            for (unsigned long long b = 0; b < blocks; ++b) {
                blockIdx = unravel(number(b), gridDim);
                for (unsigned int t = 0; t < threads; ++t) {
                    threadIdx = unravel(t, blockDim);
                    kernel();
                }
            }
            return 0;
        }
        Block state(blockDim, threads);
        if (!state.prepare(fiber_main<Kernel>, &kernel)) {
            std::snprintf(error, error_size, "%s", state.error);
            return 1;
        }
        block = &state;
        for (unsigned long long b = 0; b < blocks && !state.failed; ++b) {
            blockIdx = unravel(number(b), gridDim);
            state.descending = number(b) % 2 == 1;
            do {
                switch_to(state.launcher, state.first());  // a phase: each fiber runs to its next barrier
                state.check();
            } while (!state.failed && state.lines[0] != kernel_end);
        }
        if (state.failed) switch_to(state.launcher, state.first());  // the fibers unwind their kernels
        block = nullptr;
        if (!state.failed) return 0;
        std::snprintf(error, error_size, "%s", state.error);
        return 1;
    } catch (const std::exception& e) {
        block = nullptr;
        std::snprintf(error, error_size, "%s", e.what());
        return 1;
    }
}

}  // namespace ocdl_emulator
"""

_SIGNATURE = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(([^)]*)\)')
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_RESTRICT = re.compile(r"\b__restrict__\b")
_SHARED = re.compile(r"\b__shared__\s+([^;\[]*?)\s*\b[A-Za-z_]\w*\s*((?:\[[^\]]+\]\s*)+);")


class CompileError(Exception):
    """A kernel source that g++ (or nvcc) did not compile; the message is the compiler's."""


@dataclass(frozen=True)
class _Parameter:
    type: str  # as declared, e.g. "const T* __restrict__"
    name: str

    def __str__(self) -> str:
        return f"{self.type} {self.name}"


@dataclass(frozen=True)
class _KernelSource:
    name: str
    parameters: tuple[_Parameter, ...]
    line: int  # of the signature in the code, from 1
    barriers: bool  # whether it may call __syncthreads (then its threads run as fibers)
    shared: tuple[str, ...] = ()  # the C++ sizes of its __shared__ arrays ("sizeof(T) * (ROWS * N)")
    end: int = 0  # the offset in the code after its body's closing brace (its trampoline goes there)


def _without_comments(code: str) -> str:
    """``code`` with each comment blanked out, its newlines kept (so that offsets and lines stay)."""
    return _COMMENT.sub(lambda match: re.sub(r"[^\n]", " ", match.group()), code)


def _body_end(code: str, start: int) -> int:
    """The offset after the ``}`` that closes the ``{`` at ``start``."""
    depth = 0
    for offset in range(start, len(code)):
        depth += {"{": 1, "}": -1}.get(code[offset], 0)
        if depth == 0:
            return offset + 1
    raise CompileError(f"{SOURCE_NAME}: a kernel's body is not closed (unbalanced braces)")


def _parse(code: str) -> dict[str, _KernelSource]:
    """The kernels of ``code`` (``extern "C" __global__ void NAME(TYPE name, ...)``), by name."""
    text = _without_comments(code)
    signatures, bodies = [], []
    for match in _SIGNATURE.finditer(text):
        rest = len(text) - len(text[match.end():].lstrip())  # the offset of what follows the signature
        if text.startswith("{", rest):
            bodies.append((rest, _body_end(text, rest)))
            signatures.append((match, bodies[-1]))
        elif not text.startswith(";", rest):
            raise CompileError(f"{SOURCE_NAME}:{text.count(chr(10), 0, match.start()) + 1}: the kernel "
                               f"{match.group(1)} is followed by neither a body nor ';'")
    if text.count("__global__") != len(_SIGNATURE.findall(text)):
        raise CompileError(f"{SOURCE_NAME}: every __global__ function must be declared as "
                           '`extern "C" __global__ void NAME(TYPE name, ...)` (one kernel per declaration)')
    outside = text
    for start, end in reversed(bodies):
        outside = outside[:start] + outside[end:]
    barriers_outside = "__syncthreads" in outside
    kernels = {}
    for match, (start, end) in signatures:
        name = match.group(1)
        if name in kernels:
            raise CompileError(f"{SOURCE_NAME}: the kernel {name} is defined twice")
        parameters = tuple(_parameter(name, declaration) for declaration in match.group(2).split(",")
                           if declaration.strip() not in ("", "void"))
        shared = tuple(f"sizeof({kind}) * " + " * ".join(f"({d})" for d in re.findall(r"\[([^\]]+)\]", dims))
                       for kind, dims in _SHARED.findall(text[start:end]))
        kernels[name] = _KernelSource(name, parameters, text.count("\n", 0, match.start()) + 1,
                                      barriers_outside or "__syncthreads" in text[start:end], shared, end)
    return kernels


def _parameter(kernel: str, declaration: str) -> _Parameter:
    match = re.fullmatch(r"\s*(.*?[\s*&])\s*([A-Za-z_]\w*)\s*", declaration, re.DOTALL)
    if match is None or not match.group(1).strip():
        raise CompileError(f"{SOURCE_NAME}: kernel {kernel}: cannot read the parameter {declaration.strip()!r} "
                           "(expected `TYPE name`)")
    return _Parameter(" ".join(match.group(1).split()), match.group(2))


def _trampoline(kernel: _KernelSource) -> str:
    """C++ that describes ``kernel``'s parameters (``ocdl_parameters_NAME``) and launches it
    (``ocdl_launch_NAME(grid, block, args, error, error_size)``, ``args`` a ``void**`` as CUDA's)."""
    types = [" ".join(_RESTRICT.sub(" ", p.type).split()) for p in kernel.parameters]
    aliases = "".join(f"    using P{i} = std::remove_cv_t<{t}>;\n"
                      f"    P{i} p{i} = *static_cast<const P{i}*>(args[{i}]);\n" for i, t in enumerate(types))
    described = "".join(f"ocdl_emulator::describe<{t}>(), " for t in types)
    values = ", ".join(f"p{i}" for i in range(len(types)))
    shared = " + ".join(f"(long long)({size})" for size in kernel.shared) or "0"
    return (f'#line {kernel.line} "{SOURCE_NAME}"\n'
            f'extern "C" const long long ocdl_shared_bytes_{kernel.name} = {shared};\n'
            f'extern "C" const ocdl_emulator::Parameter ocdl_parameters_{kernel.name}[] = {{{described}{{}}}};\n'
            f'extern "C" int ocdl_launch_{kernel.name}(const unsigned int* grid, const unsigned int* block,\n'
            f"        void* const* args, char* error, int error_size) {{\n"
            f"{aliases}"
            f"    return ocdl_emulator::launch(grid, block, {str(kernel.barriers).lower()},\n"
            f"        [=] {{ {kernel.name}({values}); }}, error, error_size);\n"
            f"}}\n")


def _source(code: str, kernels: dict[str, _KernelSource]) -> str:
    """``code`` with each kernel's trampoline right after its body (compiled after the prelude): inside the
    same ``#if`` branches, so that a kernel the preprocessor leaves out has none (and the lines after it keep
    theirs)."""
    parts, done = [f'#line 1 "{SOURCE_NAME}"\n'], 0
    for kernel in sorted(kernels.values(), key=lambda k: k.end):
        line = code.count("\n", 0, kernel.end) + 1
        parts += [code[done:kernel.end], "\n", _trampoline(kernel), f'#line {line} "{SOURCE_NAME}"\n']
        done = kernel.end
    return "".join(parts) + code[done:] + "\n"


def _gxx_options(options) -> list[str]:
    """The options of ``options`` (NVRTC's) that g++ takes (macros and include folders), in g++'s spelling."""
    passed = []
    for option in options:
        if not isinstance(option, str):
            raise TypeError(f"RawModule: options must be strings, got {option!r}")
        for prefix, spelling in _GXX_SPELLING.items():
            if option.startswith(prefix):
                option = spelling + option[len(prefix):]
        if option.startswith(("-D", "-U", "-I")):
            passed.append(option)
        elif option in ("--fmad=false", "-fmad=false"):
            passed.append("-ffp-contract=off")
    return passed


@functools.cache
def _contraction_flags() -> tuple[str, ...]:
    """``-mfma -ffp-contract=fast`` where the CPU has FMA (``/proc/cpuinfo``'s flags), else none: CUDA
    contracts ``a * b + c`` by default."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            info = file.read()
    except OSError:
        return ()
    return ("-mfma", "-ffp-contract=fast") if re.search(r"^flags\s*:.*\bfma\b", info, re.MULTILINE) else ()


@functools.cache
def _gxx() -> tuple[str, str]:
    """g++'s path and version."""
    path = shutil.which("g++")
    if path is None:
        raise RuntimeError("cuda_emulator: g++ is not installed (standin_cupy.can_run_kernels() says so)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    return path, version


def cache_folder() -> str:
    """Where the compiled libraries are kept: ``$OCDL_EMULATOR_CACHE``, or a folder under the temporary one."""
    default = os.path.join(tempfile.gettempdir(), f"ocdl-cuda-emulator-{getattr(os, 'getuid', lambda: 0)()}")
    return os.environ.get("OCDL_EMULATOR_CACHE") or default


def _compile(source: str, options: list[str]) -> str:
    """The path of the library of ``source`` (compiled after the prelude) in the cache, compiling it if it is
    not there."""
    gxx, version = _gxx()
    flags = [*GXX_FLAGS, *_contraction_flags(), *options]  # the options' -ffp-contract=off last, to prevail
    key = hashlib.sha256("\0".join([_PRELUDE + source, *flags, version]).encode()).hexdigest()[:32]
    folder = cache_folder()
    path = os.path.join(folder, f"{key}.so")
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    prelude = _precompiled_prelude(gxx, version, flags, folder)
    partial = os.path.join(folder, f"{key}.{os.getpid()}.{uuid.uuid4().hex}")
    try:
        with open(f"{partial}.cpp", "w", encoding="utf-8") as file:  # kept beside the library, to read
            file.write(f"// compiled after {os.path.basename(prelude)} (g++ -include)\n{source}")
        result = subprocess.run([gxx, *flags, "-include", prelude, "-x", "c++", f"{partial}.cpp", "-o",
                                 f"{partial}.so"], capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(f"g++ could not compile the kernel source:\n{result.stderr.replace(partial, key)}")
        os.replace(f"{partial}.cpp", os.path.join(folder, f"{key}.cpp"))
        os.replace(f"{partial}.so", path)
    finally:
        for leftover in (f"{partial}.cpp", f"{partial}.so"):
            if os.path.exists(leftover):
                os.remove(leftover)
    COMPILES.append(path)
    return path


def _precompiled_prelude(gxx: str, version: str, flags: list[str], folder: str) -> str:
    """The prelude as a header in the cache with its precompiled form beside it (``.gch``, for these flags),
    which every library includes: g++ then parses the prelude's system headers once, not once per library
    (0.35 s instead of 0.8 s for a small kernel file). Written atomically; where the ``.gch`` is missing or
    does not fit, g++ reads the header itself."""
    compile_flags = [flag for flag in flags if flag != "-shared"]
    key = hashlib.sha256("\0".join([_PRELUDE, *compile_flags, version]).encode()).hexdigest()[:32]
    header = os.path.join(folder, f"prelude-{key}.h")
    if os.path.exists(f"{header}.gch"):
        return header
    partial = f"{header}.{os.getpid()}.{uuid.uuid4().hex}"
    try:
        with open(f"{partial}.h", "w", encoding="utf-8") as file:
            file.write(_PRELUDE)
        os.replace(f"{partial}.h", header)
        result = subprocess.run([gxx, *compile_flags, "-x", "c++-header", header, "-o", f"{partial}.gch"],
                                capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(f"{partial}.gch", f"{header}.gch")
    finally:
        for leftover in (f"{partial}.h", f"{partial}.gch"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return header


class _CParameter(ctypes.Structure):
    _fields_ = [("pointer", ctypes.c_int), ("kind", ctypes.c_char), ("size", ctypes.c_longlong)]


_KINDS = {"f": "float", "i": "signed integer", "u": "unsigned integer", "b": "bool"}
_LAUNCH = threading.Lock()  # one launch at a time, as on one stream (the shared memory is static)
_LIBRARIES: dict[str, ctypes.CDLL] = {}


class RawModule:
    """``cupy.RawModule``: the kernels of the CUDA source ``code``, compiled for the CPU when first needed.

    Parameters
    ----------
    code : str
        CUDA C++ source of the subset in this module's docstring, with ``extern "C" __global__`` kernels.
    options : tuple of str
        NVRTC's options: ``-D``, ``-U`` and ``-I`` (also ``--define-macro=`` and the like) reach g++,
        ``--fmad=false`` as ``-ffp-contract=off``; the others (``--std=c++17``, ``-use_fast_math``,
        ``-lineinfo``, ...) are ignored.
    **ignored
        CuPy's other arguments (``backend``, ``name_expressions``, ``jitify``, ...); ``path`` is refused.
    """

    def __init__(self, code: str, options: tuple = (), **ignored) -> None:
        if not isinstance(code, str):
            raise TypeError(f"RawModule: code must be CUDA source as a str, got {type(code).__name__}")
        if ignored.get("path") is not None:
            raise TypeError("RawModule: path= (a compiled cubin or ptx) cannot run on the CPU; give code=")
        self.code, self.options = code, tuple(options)
        self._kernels: dict[str, _KernelSource] | None = None
        self._library: ctypes.CDLL | None = None

    def compile(self) -> None:
        """Compile the code (or load it from the cache), as CuPy does on the first ``get_function``."""
        if self._library is None:
            kernels = _parse(self.code)
            path = _compile(_source(self.code, kernels), _gxx_options(self.options))
            if os.environ.get("OCDL_EMULATOR_NVRTC"):
                _check_nvrtc(self.code, self.options)
            if path not in _LIBRARIES:
                _LIBRARIES[path] = ctypes.CDLL(path)
            # the kernels the preprocessor kept (those in an inactive #if branch have no trampoline)
            kernels = {name: k for name, k in kernels.items() if hasattr(_LIBRARIES[path], f"ocdl_launch_{name}")}
            for name in kernels:  # as a GPU loads the module: every kernel within the static limit
                used = ctypes.c_longlong.in_dll(_LIBRARIES[path], f"ocdl_shared_bytes_{name}").value
                if used > MAX_STATIC_SHARED_BYTES:
                    raise CompileError(f"kernel {name} uses too much shared data ({used} bytes of __shared__ "
                                       f"arrays, {MAX_STATIC_SHARED_BYTES} max): ptxas refuses it on a GPU")
            self._kernels, self._library = kernels, _LIBRARIES[path]

    def get_function(self, name: str) -> Function:
        """The kernel ``name`` of the code, to launch as ``kernel(grid, block, args)``."""
        self.compile()
        if name not in self._kernels:
            raise RuntimeError(f"RawModule.get_function: no kernel named {name!r} in the code (its kernels: "
                               f"{', '.join(self._kernels) or 'none'}); CUDA_ERROR_NOT_FOUND on a GPU")
        return Function(self._library, self._kernels[name])


class Function:
    """A kernel of a :class:`RawModule` (``cupy.cuda.Function``): ``kernel(grid, block, args, shared_mem=0)``."""

    max_threads_per_block = MAX_THREADS_PER_BLOCK

    def __init__(self, library: ctypes.CDLL, kernel: _KernelSource) -> None:
        self.name = kernel.name
        self._kernel = kernel
        count = len(kernel.parameters)
        table = (_CParameter * (count + 1)).in_dll(library, f"ocdl_parameters_{kernel.name}")
        self._parameters = [(p.pointer != 0, p.kind.decode(), p.size) for p in table[:count]]
        self._launch = library[f"ocdl_launch_{kernel.name}"]
        self._launch.argtypes = [ctypes.c_uint * 3, ctypes.c_uint * 3, ctypes.POINTER(ctypes.c_void_p),
                                 ctypes.c_char_p, ctypes.c_int]
        self._launch.restype = ctypes.c_int
        for parameter, (_, kind, _) in zip(kernel.parameters, self._parameters):
            if kind == "?":
                raise TypeError(f"kernel {self.name}: parameter `{parameter}` is neither an arithmetic type nor a "
                                "pointer to one; the emulator cannot pass it")

    def __call__(self, grid: tuple, block: tuple, args: tuple, *, shared_mem: int = 0) -> None:
        """Run the kernel on a ``grid`` of blocks of ``block`` threads with ``args``, as CuPy does (checked)."""
        grid3 = self._shape("grid", grid, _MAX_GRID)
        block3 = self._shape("block", block, _MAX_BLOCK)
        if block3[0] * block3[1] * block3[2] > MAX_THREADS_PER_BLOCK:
            raise ValueError(f"kernel {self.name}: a block of {block} has more than {MAX_THREADS_PER_BLOCK} threads")
        if shared_mem != 0:
            raise ValueError(f"kernel {self.name}: shared_mem={shared_mem}, but dynamic shared memory is not "
                             "emulated (declare __shared__ arrays of a fixed size)")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"kernel {self.name}: args must be a tuple of arguments, got {type(args).__name__}")
        parameters = self._kernel.parameters
        if len(args) != len(parameters):
            raise TypeError(f"kernel {self.name} takes {len(parameters)} arguments "
                            f"({', '.join(map(str, parameters))}), {len(args)} given")
        guarded = _Guarded(args)
        storage = [self._argument(parameter, described, value)
                   for parameter, described, value in zip(parameters, self._parameters, guarded.args)]
        pointers = (ctypes.c_void_p * max(1, len(storage)))(*(ctypes.addressof(s) for s in storage))
        error = ctypes.create_string_buffer(1024)
        with _LAUNCH:
            status = self._launch((ctypes.c_uint * 3)(*grid3), (ctypes.c_uint * 3)(*block3), pointers, error,
                                  len(error))
        written = guarded.finish()
        if status != 0:
            raise RuntimeError(f"kernel {self.name}: {error.value.decode(errors='replace')}")
        if written:
            raise RuntimeError(f"kernel {self.name} wrote where it may not: "
                               + "; ".join(f"`{parameters[i]}` {where}" for i, where in written))

    def _shape(self, what: str, value, limits: tuple[int, int, int]) -> tuple[int, int, int]:
        """``value`` (a tuple of 1-3 positive ints) as three ints."""
        if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
            raise TypeError(f"kernel {self.name}: {what} must be a tuple of one to three ints (as CuPy's), "
                            f"got {value!r}")
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)) for n in value):
            raise TypeError(f"kernel {self.name}: {what} must hold ints, got {value!r}")
        shape = tuple(int(n) for n in value) + (1,) * (3 - len(value))
        if not all(1 <= n <= limit for n, limit in zip(shape, limits)):
            raise ValueError(f"kernel {self.name}: {what} {value!r} outside the GPU's limits: 1 to {limits} "
                             "(x, y, z)")
        return shape

    def _argument(self, parameter: _Parameter, described: tuple[bool, str, int], value) -> ctypes._SimpleCData:
        """The bytes of the argument ``value`` for ``parameter``, checked against its declared type."""
        pointer, kind, size = described
        expected = f"{_KINDS[kind]} of {size} bytes (np.{np.dtype(f'{kind}{size}').name})"
        where = f"kernel {self.name}: parameter `{parameter}`"
        if pointer:
            if value is None:
                return ctypes.c_void_p(0)
            if isinstance(value, standin_cupy.StandInArray):
                if value.dtype.kind != kind or value.dtype.itemsize != size:
                    raise TypeError(f"{where} points to a {expected}, given an array of {value.dtype}")
                address = value.ctypes.data
                if address % size:
                    raise TypeError(f"{where}: the array's data is not aligned to {size} bytes")
                return ctypes.c_void_p(address)
            if isinstance(value, np.ndarray):
                raise TypeError(f"{where}: given a NumPy array (host memory) of shape {value.shape}; pass a "
                                "device array (CuPy refuses it)")
            raise TypeError(f"{where} points to a {expected}: pass a device array of that dtype, "
                            f"given {type(value).__name__} {value!r}")
        if isinstance(value, np.generic):
            if value.dtype.kind != kind or value.dtype.itemsize != size:
                raise TypeError(f"{where} takes a {expected}, given np.{value.dtype} {value!r}")
            return ctypes.create_string_buffer(value.tobytes(), size)
        if isinstance(value, (bool, int, float)):
            raise TypeError(f"{where} takes a {expected}, given a Python {type(value).__name__} {value!r}: pass "
                            f"a NumPy scalar, np.{np.dtype(f'{kind}{size}').name}(...) (CuPy passes a Python "
                            "int or float as 64 bits, whatever the kernel declares)")
        raise TypeError(f"{where} takes a {expected} as a NumPy scalar, given {type(value).__name__}")


#: Bytes of the guard zones around every array argument (0xFF bytes: NaN as a float, -1 as an int).
GUARD_BYTES = 1 << 14


class _Guarded:
    """The arguments of a launch with every C-contiguous array copied between guard zones.

    A GPU's memory pool puts arrays side by side, so a kernel reading past an
    array's end reads its neighbour's numbers and writing there corrupts it,
    silently. Here each such array is copied into a buffer with
    :data:`GUARD_BYTES` of 0xFF bytes on either side: a read outside gives NaN
    (or -1), which the results show, and :meth:`finish` reports a write there.
    Arguments that are the same array share one copy, as in-place kernels need;
    views that overlap otherwise, and non-contiguous views, are passed as they
    are. After the launch the copies are written back into the arrays (a
    read-only array, which a stand-in array can be and a CuPy array cannot, is
    an input: :meth:`finish` reports a write into it).
    """

    def __init__(self, args) -> None:
        self.args, self._copies = list(args), []
        spans: dict = {}
        for i, a in enumerate(args):
            if isinstance(a, standin_cupy.StandInArray) and a.flags.c_contiguous and a.nbytes:
                spans.setdefault((a.ctypes.data, a.nbytes), []).append(i)
        ordered = sorted(spans)
        overlapping = set()
        for first, second in zip(ordered, ordered[1:]):
            if first[0] + first[1] > second[0]:
                overlapping |= {first, second}
        for key, indices in spans.items():
            if key in overlapping:
                continue
            original = args[indices[0]]
            buffer = np.full(2 * GUARD_BYTES + original.nbytes, 0xFF, dtype=np.uint8)
            inner = buffer[GUARD_BYTES : GUARD_BYTES + original.nbytes]
            inner[...] = original.reshape(-1).view(np.ndarray).view(np.uint8)
            copy = inner.view(original.dtype).reshape(original.shape).view(standin_cupy.StandInArray)
            for i in indices:
                self.args[i] = copy
            self._copies.append((indices, original, buffer, inner))

    def finish(self) -> list[tuple[int, str]]:
        """Write the copies back; ``(argument index, where)`` for every guard zone and read-only array written
        into."""
        written = []
        for indices, original, buffer, inner in self._copies:
            target = original.reshape(-1).view(np.ndarray).view(np.uint8)
            if original.flags.writeable:
                target[...] = inner
            elif (target != inner).any():  # a read-only NumPy array (CuPy has none): a kernel's input
                written.append((indices[0], "into its read-only memory"))
            before, after = buffer[:GUARD_BYTES], buffer[GUARD_BYTES + inner.size :]
            if (before != 0xFF).any():
                far = GUARD_BYTES - np.flatnonzero(before != 0xFF)[0]
                written.append((indices[0], f"before its start (up to {far} bytes)"))
            if (after != 0xFF).any():
                written.append((indices[0], f"past its end (up to {np.flatnonzero(after != 0xFF)[-1] + 1} bytes)"))
        return written


class RawKernel:
    """``cupy.RawKernel``: the kernel ``name`` of the CUDA source ``code`` (see :class:`RawModule`),
    compiled on its first launch or by :meth:`compile`."""

    max_threads_per_block = MAX_THREADS_PER_BLOCK

    def __init__(self, code: str, name: str, options: tuple = (), **ignored) -> None:
        self._module = RawModule(code, options, **ignored)
        self.code, self.name, self.options = self._module.code, name, self._module.options
        self._function: Function | None = None

    def compile(self) -> None:
        """Compile the code (or load it from the cache)."""
        if self._function is None:
            self._function = self._module.get_function(self.name)

    def __call__(self, grid: tuple, block: tuple, args: tuple, *, shared_mem: int = 0) -> None:
        """Run the kernel as :meth:`Function.__call__` does."""
        self.compile()
        self._function(grid, block, args, shared_mem=shared_mem)


def nvcc_compile(code: str, options: tuple = ()) -> str | None:
    """Compile ``code`` for the H200 (``nvcc -arch=sm_90 -cubin -Xptxas -v``) and return ptxas' report.

    Parameters
    ----------
    code : str
        The CUDA source given to :class:`RawModule` (it includes no headers, as NVRTC has none).
    options : tuple of str
        NVRTC's options; the macros, include folders, ``--std``, fast-math, ``-lineinfo`` and
        ``--fmad`` ones reach nvcc, the others are ignored.

    Returns
    -------
    str or None
        ptxas' resource report (registers, spill stores and loads, shared memory per kernel), or
        ``None`` when nvcc is not installed (the caller skips).

    Raises
    ------
    CompileError
        With nvcc's message when it does not compile.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    passed = [option for option in options if isinstance(option, str) and option.startswith(_NVCC_OPTIONS)]
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, SOURCE_NAME), "w", encoding="utf-8") as file:
            file.write(code)
        result = subprocess.run([nvcc, "-arch=sm_90", "-cubin", "-Xptxas", "-v", *passed,
                                 "-o", "kernel.cubin", SOURCE_NAME],
                                capture_output=True, text=True, cwd=folder)
    if result.returncode != 0:
        raise CompileError(f"nvcc could not compile the kernel source:\n{result.stderr}")
    return result.stderr


def spilled_bytes(report: str) -> list[int]:
    """The bytes of each spill store and load in ptxas' report (nvcc's or NVRTC's), in order."""
    return [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", report)]


CUPY_NVRTC_OPTIONS = ("--std=c++17", "-ftz=true", "-arch=sm_90", "--device-as-default-execution-space")
"""The options CuPy 14's ``RawModule`` gives NVRTC on an H200 besides the caller's (its include folders and
``--pch`` aside, which change nothing for code that includes no header): ``--std=c++17`` unless the caller
names a standard."""


@functools.cache
def _nvrtc_library() -> ctypes.CDLL | None:
    """NVRTC's library: ``$OCDL_EMULATOR_NVRTC`` where it is a path, else the system's, else that of the
    ``nvidia-cuda-nvrtc`` wheel (``pip install nvidia-cuda-nvrtc``); ``None`` where there is none."""
    given = os.environ.get("OCDL_EMULATOR_NVRTC", "")
    if os.path.sep in given:
        candidates = [given]  # a path that does not load is an error, not a reason to look elsewhere
    else:
        candidates = [found] if (found := ctypes.util.find_library("nvrtc")) else []
        spec = importlib.util.find_spec("nvidia")
        for root in (spec.submodule_search_locations or ()) if spec is not None else ():
            candidates += sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")), reverse=True)
        candidates = [c for c in candidates if "builtins" not in c and ".alt." not in c]
    for path in candidates:
        try:
            # its builtins beside it first: the wheel's folder is not on the loader's path
            for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*")):
                if ".alt." not in builtins:
                    ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
            library = ctypes.CDLL(path)
        except OSError:
            if path == given:
                raise
            continue
        library.nvrtcGetErrorString.restype = ctypes.c_char_p
        return library
    return None


def nvrtc_compile(code: str, options: tuple = ()) -> str | None:
    """Compile ``code`` for the H200 with NVRTC, as CuPy's ``RawModule`` does, and return its log with
    ptxas' report (``--ptxas-options=-v``).

    The options are :data:`CUPY_NVRTC_OPTIONS` and the caller's; the cubin is dropped. With
    ``$OCDL_EMULATOR_NVRTC`` set (to ``1``, or to the library's path), :meth:`RawModule.compile`
    also compiles every module this way and raises :class:`CompileError` where NVRTC warns or ptxas
    spills a register: ``OCDL_EMULATOR_NVRTC=1 pytest tests/test_kernels.py tests/test_sweeps.py
    tests/test_gpu.py`` checks each kernel configuration the tests run as a GPU's first run would
    compile it.

    Parameters
    ----------
    code : str
        The CUDA source given to :class:`RawModule`.
    options : tuple of str
        NVRTC's options, passed as they are.

    Returns
    -------
    str or None
        NVRTC's log: its warnings and ptxas' resource report (registers, spill stores and loads,
        shared memory per kernel), or ``None`` where NVRTC's library is not found (the caller skips).

    Raises
    ------
    CompileError
        With NVRTC's message when it does not compile.
    """
    library = _nvrtc_library()
    if library is None:
        return None
    named_standard = any(str(option).startswith(("-std", "--std")) for option in options)
    own = [option for option in CUPY_NVRTC_OPTIONS if not (named_standard and option.startswith("--std"))]
    encoded = [option.encode() for option in (*own, *options, "--ptxas-options=-v")]
    program = ctypes.c_void_p()
    if library.nvrtcCreateProgram(ctypes.byref(program), code.encode(), SOURCE_NAME.encode(), 0, None, None):
        raise CompileError("NVRTC could not create a program of the kernel source")
    try:
        result = library.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
        size = ctypes.c_size_t()
        library.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        library.nvrtcGetProgramLog(program, log)
    finally:
        library.nvrtcDestroyProgram(ctypes.byref(program))
    text = log.value.decode(errors="replace")
    if result:
        raise CompileError(f"NVRTC could not compile the kernel source "
                           f"({library.nvrtcGetErrorString(result).decode()}):\n{text}")
    return text


@functools.cache
def _check_nvrtc(code: str, options: tuple) -> None:
    """Compile ``code`` with :func:`nvrtc_compile` (``$OCDL_EMULATOR_NVRTC``); raise where NVRTC is missing,
    warns, or ptxas spills."""
    log = nvrtc_compile(code, options)
    if log is None:
        raise CompileError("OCDL_EMULATOR_NVRTC is set but NVRTC's library was not found: set it to the path of "
                           "libnvrtc.so, or pip install nvidia-cuda-nvrtc")
    if re.search(r"\bwarning\b", log) or any(spilled_bytes(log)):
        raise CompileError(f"NVRTC warns or spills (OCDL_EMULATOR_NVRTC):\n{log}")
