r"""Which convolution: ``ocdl.Conv2d`` against im2col + GEMM, per-shift batched matmul and FFT.

Each method computes the same product as :meth:`ocdl.Conv2d.apply`, the
zero-padded cross-correlation of W3's batch (``s`` images of ``c``
channels, ``H x W``, a ``k x k`` stencil, all channels mixed):

.. math::

   (Y K)_{o, y, x} = \sum_i \sum_{a, b < k} \theta_{o, i, a, b}\,
   Y_{i,\, y + a - r,\, x + b - r}, \qquad r = (k - 1) / 2.

* ``ocdl``: ``Conv2d.apply`` (a ``k c``-row stack of horizontal shifts,
  one GEMM per image, blocks of images on threads);
* ``im2col``: the textbook ``k^2 c``-row im2col of the whole batch
  (``sliding_window_view``, one copy, Caffe's layout) and one GEMM per image;
* ``shifts``: ``k^2`` batched matmuls, ``(c x c)`` by each shifted image;
* ``fft``: ``scipy.fft.rfft2`` of the images padded to the full linear
  convolution and of the flipped kernel, the channels mixed per frequency
  by a batched matmul, ``irfft2`` and a crop (``workers`` = threads);
* ``torch``: ``torch.nn.functional.conv2d(padding=r)`` when PyTorch imports
  (oneDNN's direct convolution in float32), for scale.

Every result is compared with ``ocdl``'s (``max_rel_diff``: the largest
difference over the largest entry), so the comparison doubles as an
independent check of ``Conv2d``. ``gflops`` is the direct method's FLOP
count, :math:`2 s H W c^2 k^2`, over the time, for every method.

``python benchmarks/convolution.py [--json FILE] [--quick] [--threads T]``
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_time, limit_threads, machine_info, versions, write_records  # noqa: E402

#: W3's convolution, and a tiny one for smoke tests.
SHAPES = {"full": dict(s=512, c=6, H=28, W=28, k=3), "quick": dict(s=8, c=2, H=6, W=5, k=3)}


def methods(theta, Y, shape: dict, threads: int) -> dict:
    """``name -> callable`` returning ``Y K`` as an ``s x c H W`` array, for each method here."""
    import numpy as np
    import scipy.fft

    import ocdl

    s, c, H, W, k = (shape[key] for key in "scHWk")
    r = k // 2
    conv = ocdl.Conv2d(c, c, H, W, k)
    kernel = theta.reshape(c, c, k, k)
    images = Y.reshape(s, c, H, W)

    def im2col():
        padded = np.pad(images, ((0, 0), (0, 0), (r, r), (r, r)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
        cols = windows.transpose(0, 1, 4, 5, 2, 3).reshape(s, c * k * k, H * W)  # the copy
        return np.matmul(kernel.reshape(c, c * k * k), cols).reshape(s, -1)

    def shifts():
        padded = np.pad(images, ((0, 0), (0, 0), (r, r), (r, r)))
        out = np.zeros((s, c, H * W), dtype=Y.dtype)
        for a in range(k):
            for b in range(k):
                shifted = padded[:, :, a : a + H, b : b + W].reshape(s, c, H * W)
                out += kernel[:, :, a, b] @ shifted
        return out.reshape(s, -1)

    size = (H + k - 1, W + k - 1)  # the full linear convolution: no wrap-around

    def fft():
        # correlation = convolution with the flipped kernel; the full result cropped by r
        Yf = scipy.fft.rfft2(images, s=size, workers=threads)
        Kf = scipy.fft.rfft2(kernel[:, :, ::-1, ::-1], s=size, workers=threads)
        mixed = np.matmul(Yf.transpose(2, 3, 0, 1), Kf.transpose(2, 3, 1, 0))  # per frequency: (s, c) (c, c)
        full = scipy.fft.irfft2(mixed.transpose(2, 3, 0, 1), s=size, workers=threads)
        return np.ascontiguousarray(full[:, :, r : r + H, r : r + W]).reshape(s, -1)

    found = {"ocdl": lambda: conv.apply(theta, Y), "im2col": im2col, "shifts": shifts, "fft": fft}
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("# PyTorch not installed: its convolution is skipped", flush=True)
        return found
    torch.set_num_threads(threads)
    t_images, t_kernel = torch.from_numpy(images), torch.from_numpy(np.ascontiguousarray(kernel))

    def torch_conv():
        with torch.inference_mode():
            return F.conv2d(t_images, t_kernel, padding=r).numpy().reshape(s, -1)

    found["torch"] = torch_conv
    return found


def records(shape: dict, dtypes, threads: int, repeats: int) -> list[dict]:
    import numpy as np

    s, c, H, W, k = (shape[key] for key in "scHWk")
    flops = 2.0 * s * H * W * c * c * k * k
    rng = np.random.default_rng(0)
    out = []
    for dtype in dtypes:
        theta = (rng.standard_normal(c * c * k * k) / np.sqrt(c * k * k)).astype(dtype)
        Y = rng.standard_normal((s, c * H * W)).astype(dtype)
        found = methods(theta, Y, shape, threads)
        reference = found["ocdl"]()
        scale = float(np.abs(reference).max())
        for name, fn in found.items():
            result = fn()
            t = best_time(fn, repeats=repeats)
            out.append({
                "benchmark": "convolution", "method": name, "dtype": dtype, "shape": shape,
                "seconds": t, "gflops": flops / t / 1e9,
                "max_rel_diff": float(np.abs(result - reference).max()) / scale,
            })
    return out


def table(recs: list[dict]) -> str:
    ocdl_time = {r["dtype"]: r["seconds"] for r in recs if r["method"] == "ocdl"}
    lines = [f"{'method':<8} {'dtype':<8} {'ms':>9} {'GFLOP/s':>8} {'/ ocdl':>7} {'max rel diff':>13}"]
    for r in recs:
        lines.append(
            f"{r['method']:<8} {r['dtype']:<8} {r['seconds'] * 1e3:9.2f} {r['gflops']:8.1f} "
            f"{r['seconds'] / ocdl_time[r['dtype']]:7.2f} {r['max_rel_diff']:13.1e}"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="FILE", help="write the records to FILE")
    p.add_argument("--quick", action="store_true", help="a tiny batch: a smoke run")
    p.add_argument("--threads", type=int, default=2, help="BLAS, FFT and torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs, best kept (default 5; 1 with --quick)")
    p.add_argument("--dtypes", default="float64,float32", help="comma-separated (default float64,float32)")
    args = p.parse_args(argv)
    thread_setup = limit_threads(args.threads)
    shape = SHAPES["quick" if args.quick else "full"]
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    recs = records(shape, args.dtypes.split(","), args.threads, repeats)
    machine = dict(machine_info(), thread_setup=thread_setup)
    for r in recs:
        r.update(threads=args.threads, versions=versions(), machine=machine)
    print(f"# {machine['cpu']}, {args.threads} threads; s={shape['s']}, c={shape['c']}, "
          f"{shape['H']}x{shape['W']}, k={shape['k']}")
    print(table(recs))
    if args.json:
        write_records(recs, args.json)


if __name__ == "__main__":
    main()
