r"""The GPU side of ``run.py --device gpu``: the device, its copy bandwidth, each case's bandwidth limit.

ocdl runs on CuPy arrays (its array-module switch, :func:`ocdl.to_device`),
PyTorch on ``cuda`` tensors. GPU calls return before the device is done, so
every timed call ends with :func:`synchronize`. PyTorch runs twice in float32:
``"torch"`` with TF32 off (``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32``), the like-for-like figure, and
``"torch-tf32"`` with TF32 on (PyTorch's default for convolutions, a 10-bit
mantissa inside the products); float64 has no TF32. Each record says which
(``tf32``).

The limit of a case is the memory bandwidth of a sweep of fused kernels
(one per layer application, the convolution, bias, activation and update in
it), the least any implementation must move: every state-sized array read or
written once per layer application, over the device's copy bandwidth
(:func:`copy_bandwidth`, bytes read plus bytes written). The convolution's
neighbours and the parameter gradient's reduction come from the same reads,
and :math:`\sigma'` is recomputed from the stored state, not stored. Arrays
per layer application (:data:`PASSES`):

* ResNet: forward 2 (read :math:`Y_j`, write :math:`Y_{j+1}`); gradient
  2 + 3 (the adjoint reads :math:`Y_j` and :math:`\lambda_{j+1}`, writes
  :math:`\lambda_j`); Gauss-Newton product 3 + 3 (the tangent reads
  :math:`Y_j` and :math:`\delta Y_j`, writes :math:`\delta Y_{j+1}`; then
  the adjoint).
* Verlet, two layer applications per step: forward 3 (read the operand and
  the array it updates, write that array); gradient 3 + 4 and Gauss-Newton
  product 4 + 4 (an adjoint or tangent half-step reads the operand, the
  operand's adjoint or tangent and the updated array's, and writes one).

The time is :math:`N \cdot \text{applications} \cdot \text{passes} \cdot E / B`,
:math:`E` the bytes of one state (``examples x features x itemsize``),
:math:`B` the bandwidth.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import time

import numpy as np

#: State-sized arrays read or written per layer application by a fused sweep, and applications per step.
PASSES = {
    "resnet": {"forward": 2, "gradient": 5, "gn_matvec": 6, "applications": 1},
    "verlet": {"forward": 3, "gradient": 7, "gn_matvec": 8, "applications": 2},
}

#: PyTorch's two rows on the GPU: the library name in the records and whether TF32 is on.
TORCH_TF32 = {"torch": False, "torch-tf32": True}

LIMIT_MODEL = "device memory bandwidth of fused sweeps (gpu.py)"


def synchronize(torch_device: str | None = None) -> None:
    """Wait for the GPU: CuPy's current device, and PyTorch's when it runs on ``cuda``."""
    import cupy

    cupy.cuda.Device().synchronize()
    if torch_device is not None and torch_device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def release() -> None:
    """Hand the memory of the last case back: CuPy's pool and PyTorch's cache (they do not share)."""
    gc.collect()
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def set_tf32(enabled: bool) -> None:
    """TF32 in PyTorch's CUDA matrix products and cuDNN convolutions, on or off.

    PyTorch 2.9 and later take ``fp32_precision`` (``"tf32"`` or ``"ieee"``) and warn that the
    ``allow_tf32`` flags, the only ones before, are to be deprecated; setting both kinds raises."""
    import torch

    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        precision = "tf32" if enabled else "ieee"
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def torch_tf32() -> dict[str, bool]:
    """Whether PyTorch's CUDA float32 matrix products (``matmul``) and cuDNN convolutions (``conv``) use TF32
    now, as PyTorch reports it (:func:`set_tf32` sets both; PyTorch's default is products off, convolutions on)."""
    import torch

    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        flags = tuple(b.fp32_precision == "tf32" for b in (torch.backends.cuda.matmul, torch.backends.cudnn.conv))
    else:
        flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    return {"matmul": bool(flags[0]), "conv": bool(flags[1])}


def cupy_tf32() -> bool:
    """Whether CuPy's float32 products use TF32 (``CUPY_TF32=1``; off by default)."""
    return os.environ.get("CUPY_TF32", "0") not in ("", "0")


def is_out_of_memory(err: BaseException) -> bool:
    """A failed allocation: ocdl's test (host, CuPy, CUDA libraries) or PyTorch's ``torch.cuda.OutOfMemoryError``."""
    from ocdl.backend import out_of_memory

    return out_of_memory(err) or type(err).__name__ == "OutOfMemoryError"


def copy_bandwidth(nbytes: int, repeats: int = 10, warmup_s: float = 0.2) -> float:
    """Bytes per second of a device-to-device copy of ``nbytes`` (read plus written), the best of ``repeats``
    after ``warmup_s`` seconds of copies (an idle GPU runs at a low clock, 345 MHz on the H200, until work has
    kept it busy for a while: a bandwidth measured before would be low, and every limit from it generous)."""
    import cupy

    a = cupy.ones(max(1, nbytes // 4), dtype=np.float32)
    b = cupy.empty_like(a)
    start = time.perf_counter()
    while True:  # first touch, then the clocks up
        cupy.copyto(b, a)
        synchronize()
        if time.perf_counter() - start >= warmup_s:
            break
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        cupy.copyto(b, a)
        synchronize()
        best = min(best, time.perf_counter() - start)
    moved = 2 * a.nbytes
    del a, b
    release()
    return moved / best


def bandwidth_limit(workload, stepper: str, dtype, bandwidth: float) -> dict:
    """The bandwidth limit of each quantity (see the module docstring), shaped like ``roofline.estimate``'s."""
    passes = PASSES[stepper]
    state_bytes = workload.n_examples * workload.n_features * np.dtype(dtype).itemsize
    applications = workload.n_steps * passes["applications"]
    limit = {"model": LIMIT_MODEL, "bandwidth_bytes_per_s": bandwidth, "state_bytes": state_bytes}
    for quantity in ("forward", "gradient", "gn_matvec"):
        moved = applications * passes[quantity] * state_bytes
        limit[quantity] = {"bytes": moved, "total_s": moved / bandwidth}
    return limit


def _nvidia_driver() -> str | None:
    """The NVIDIA driver's version as ``nvidia-smi`` reports it (``None`` without it)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _cuda_version(number: int) -> str:
    """CUDA's integer version (``13000``) as text (``"13.0"``)."""
    return f"{number // 1000}.{number % 1000 // 10}"


def device_info(torch_device: str | None) -> dict:
    """The GPU (name, memory), the NVIDIA driver, CUDA (the driver's and CuPy's runtime), CuPy's and PyTorch's
    versions and where PyTorch runs."""
    import cupy

    runtime = cupy.cuda.runtime
    device = cupy.cuda.Device()
    properties = runtime.getDeviceProperties(device.id)
    name = properties["name"]
    info = {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "memory_gib": round(device.mem_info[1] / 2**30, 1),
        "driver": _nvidia_driver(),
        "driver_cuda": _cuda_version(runtime.driverGetVersion()),
        "cuda_runtime": _cuda_version(runtime.runtimeGetVersion()),
        "cupy": cupy.__version__,
        "cupy_tf32": cupy_tf32(),
        "torch_device": torch_device,
    }
    if torch_device is not None:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version() if torch.cuda.is_available() else None)
    return info
