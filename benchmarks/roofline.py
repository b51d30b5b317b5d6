r"""A roofline estimate of each workload: what this machine can do, measured on it.

For every quantity (forward, gradient, Gauss-Newton product) the estimate is

.. math::

   t_{\rm roof} = \sum_{\text{matrix products}} \frac{\text{FLOPs}}{\text{GEMM rate of that shape}}
                + \max\Big(\frac{\text{elementwise bytes}}{\text{elementwise bandwidth}},
                           \frac{\text{activations}}{\text{activation rate}}\Big),

with both rates **measured here**, in the benchmark's dtype and thread count:

* GEMM rate: the best of several ``np.matmul(..., out=...)`` calls on the
  workload's own shapes (one call with the BLAS's threads, or the rows shared
  by the benchmark's threads, whichever is faster), :math:`Y K` (``s x n`` times ``n x n``),
  :math:`G K^T`, and the parameter gradient :math:`Y^T G` (dense); for a
  convolution the im2col GEMM of one image, ``c_out x c_in k^2`` times
  ``c_in k^2 x HW`` and the gradient ``c_out x HW`` times ``HW x c_in k^2``,
  operands in cache (the image's reads and writes are counted as bytes);
* elementwise bandwidth: the best ``np.add(a, b, out=c)`` on arrays of the
  size of one state (``s x n``), bytes = 3 arrays, on one thread or split
  over the benchmark's threads;
* activation rate: the best ``np.tanh(a, out=b)`` on the same arrays,
  evaluations per second. ``tanh`` costs several times an addition (about
  1.5 ns against 0.2 ns per float64 number on one core of the reference
  machine), so a forward sweep, one ``tanh`` per feature per layer
  application, is bound by it rather than by memory on small states; the
  fused kernel can go neither faster than its memory traffic nor faster than
  its ``tanh`` evaluations, hence the maximum. The derivative sweeps reuse
  the stored :math:`\sigma'` and evaluate no activation.

Elementwise bytes assume each chain of elementwise operations between two
matrix products is one fused kernel that reads its inputs and writes its
outputs once. With :math:`E = s\,n\,\text{itemsize}` bytes per state array,
per layer application (ResNet: one per step, Verlet: two):

==============  ======================  ==================================================
sweep           matrix products         fused elementwise traffic
==============  ======================  ==================================================
forward         :math:`V K`             read :math:`VK`, base; write the new state: 3E
trajectory      :math:`V K`             the forward's, and write :math:`\sigma'` for the sweeps below: 4E
adjoint (vjp)   :math:`G K^T`, grad     :math:`G = \sigma'\odot\lambda` (3E); :math:`\lambda + hGK^T` (3E)
tangent (jvp)   :math:`dV K`, :math:`V dK`   read both products, :math:`\sigma'`, base; write: 5E
==============  ======================  ==================================================

plus, for a convolution, the transform's own input read and output write
(2E per product). ``forward`` is the prediction sweep, which keeps no state
(``Stepper.advance``); ``gradient = trajectory + adjoint``, ``gn_matvec =
tangent + adjoint``. The estimate ignores Python overhead and page faults: it is the
time of this algorithm at this machine's measured GEMM and memory speeds.
"""

from __future__ import annotations

import numpy as np
from common import best_time

# (matrix products, elementwise arrays E) per layer application
_SWEEPS = {
    "forward": {"apply": 1, "transpose": 0, "grad": 0, "elementwise": 3, "activations": 1},
    "trajectory": {"apply": 1, "transpose": 0, "grad": 0, "elementwise": 4, "activations": 1},
    "adjoint": {"apply": 0, "transpose": 1, "grad": 1, "elementwise": 6, "activations": 0},
    "tangent": {"apply": 2, "transpose": 0, "grad": 0, "elementwise": 5, "activations": 0},
}
_QUANTITIES = {"forward": ("forward",), "gradient": ("trajectory", "adjoint"), "gn_matvec": ("tangent", "adjoint")}


def _split_rows(n_rows: int, parts: int) -> list[slice]:
    step = -(-n_rows // parts)
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def _best_of_serial_and_threaded(make_calls, repeats: int, threads: int) -> float:
    """Best time of the work done by one call, or split over ``threads`` Python threads."""
    best = best_time(make_calls(1)[0], repeats)
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        calls = make_calls(threads)
        with ThreadPoolExecutor(threads) as pool:
            best = min(best, best_time(lambda: list(pool.map(lambda f: f(), calls)), repeats))
    return best


def _gemm_rate(
    m: int, k: int, n: int, dtype, repeats: int, transpose_a: bool = False, transpose_b: bool = False,
    batch: int = 1, threads: int = 1,
) -> float:
    """FLOP/s of ``batch`` products ``(m x k) @ (k x n)`` (operands stored transposed if asked).

    The best of the BLAS's own threading and of ``threads`` threads each
    computing a share of the rows (or of the batch).
    """
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(dtype)
    A = A.T if transpose_a else A
    B = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype)
    B = B.T if transpose_b else B
    out = np.empty((m, n), dtype=dtype)

    def make_calls(parts):
        if batch > 1:
            per = -(-batch // parts)
            sizes = [min(per, batch - i) for i in range(0, batch, per)]
            outs = [np.empty_like(out) for _ in sizes]
            return [lambda c=c, o=o: [np.matmul(A, B, out=o) for _ in range(c)] for c, o in zip(sizes, outs)]
        if transpose_a:  # the product's rows are A's columns: split the inner dimension instead
            rows = _split_rows(k, parts)
            outs = [np.empty_like(out) for _ in rows]
            return [lambda r=r, o=o: np.matmul(A[:, r], B[r], out=o) for r, o in zip(rows, outs)]
        return [lambda r=r: np.matmul(A[r], B, out=out[r]) for r in _split_rows(m, parts)]

    t = _best_of_serial_and_threaded(make_calls, repeats, threads)
    return 2.0 * m * k * n * batch / t


def _bandwidth(n_elements: int, dtype, repeats: int, threads: int = 1) -> float:
    """Bytes/s of ``c = a + b`` on arrays of ``n_elements`` (3 arrays moved), best of 1 or ``threads`` threads."""
    a = np.ones(n_elements, dtype=dtype)
    b, c = a.copy(), a.copy()
    inner = max(1, 2_000_000 // n_elements)  # time at least ~2M elements per sample

    def make_calls(parts):
        return [
            lambda r=r: [np.add(a[r], b[r], out=c[r]) for _ in range(inner)] for r in _split_rows(n_elements, parts)
        ]

    t = _best_of_serial_and_threaded(make_calls, repeats, threads)
    return 3.0 * a.nbytes * inner / t


def _activation_rate(n_elements: int, dtype, repeats: int, threads: int = 1) -> float:
    """Evaluations/s of ``np.tanh(a, out=b)`` on arrays of ``n_elements``, best of 1 or ``threads`` threads."""
    a = np.linspace(-3.0, 3.0, n_elements).astype(dtype)
    b = np.empty_like(a)
    inner = max(1, 2_000_000 // n_elements)

    def make_calls(parts):
        return [lambda r=r: [np.tanh(a[r], out=b[r]) for _ in range(inner)] for r in _split_rows(n_elements, parts)]

    t = _best_of_serial_and_threaded(make_calls, repeats, threads)
    return n_elements * inner / t


def measure_rates(workload, dtype, repeats: int = 5, threads: int = 1) -> dict:
    """GEMM FLOP/s of the workload's shapes, the elementwise bandwidth and the tanh rate, measured now."""
    w = workload
    s = w.n_examples
    kw = dict(repeats=repeats, threads=threads)
    if w.is_conv:
        ck2, hw, c = w.channels * w.kernel_size**2, w.height * w.image_width, w.channels
        batch = max(2, min(s, 64))
        rates = {
            "apply": _gemm_rate(c, ck2, hw, dtype, batch=batch, **kw),
            "grad": _gemm_rate(c, hw, ck2, dtype, batch=batch, **kw),
        }
        rates["transpose"] = rates["apply"]
    else:
        n = w.width
        rates = {
            "apply": _gemm_rate(s, n, n, dtype, **kw),
            "transpose": _gemm_rate(s, n, n, dtype, transpose_b=True, **kw),
            "grad": _gemm_rate(n, s, n, dtype, transpose_a=True, **kw),
        }
    return {
        "gemm_flops_per_s": rates,
        "bandwidth_bytes_per_s": _bandwidth(s * w.n_features, dtype, repeats, threads),
        "activations_per_s": _activation_rate(s * w.n_features, dtype, repeats, threads),
    }


def _layer_flops(workload) -> float:
    w = workload
    if w.is_conv:
        return 2.0 * w.n_examples * w.height * w.image_width * w.channels**2 * w.kernel_size**2
    return 2.0 * w.n_examples * w.width**2


def estimate(workload, stepper: str, dtype, rates: dict) -> dict:
    """Roofline seconds of ``forward``, ``gradient`` and ``gn_matvec`` (and their parts)."""
    w = workload
    E = w.n_examples * w.n_features * np.dtype(dtype).itemsize
    layers = w.n_steps * (2 if stepper == "verlet" else 1)
    flops = _layer_flops(w)
    gemm, bw, act = rates["gemm_flops_per_s"], rates["bandwidth_bytes_per_s"], rates["activations_per_s"]
    sweeps = {}
    for name, counts in _SWEEPS.items():
        t_mm = sum(counts[kind] * flops / gemm[kind] for kind in ("apply", "transpose", "grad"))
        n_products = counts["apply"] + counts["transpose"] + counts["grad"]
        arrays = counts["elementwise"] + (2 * n_products if w.is_conv else 0)
        activations = layers * counts["activations"] * w.n_examples * w.n_features
        sweeps[name] = {
            "matmul_s": layers * t_mm,
            "elementwise_s": max(layers * arrays * E / bw, activations / act),
            "flops": layers * n_products * flops,
            "bytes": layers * arrays * E,
            "activations": activations,
        }
    out = {}
    keys = ("matmul_s", "elementwise_s", "flops", "bytes", "activations")
    for q, parts in _QUANTITIES.items():
        out[q] = {key: sum(sweeps[p][key] for p in parts) for key in keys}
        out[q]["total_s"] = out[q]["matmul_s"] + out[q]["elementwise_s"]
    return out
