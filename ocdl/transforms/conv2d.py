r"""Same-size 2-D convolution, fully connected across channels, on flattened images."""

from __future__ import annotations

import threading

import numpy as np

from ..backend import get_array_module
from ..memory.store_all import temporary_empty
from ..parallel import _THREADED_ELEMENTS, in_parallel
from .base import Transform

#: Bytes of the im2col stack of one block of images (about the L2 cache).
_BLOCK_BYTES = 1 << 21
_local = threading.local()


def _buffer(xp, name: str, shape: tuple, dtype, zero: bool = False):
    """This thread's work array ``name`` (NumPy; kept between calls, so zeroed pads stay zero)."""
    if xp is not np:
        return (xp.zeros if zero else xp.empty)(shape, dtype=dtype)
    cache = getattr(_local, "buffers", None)
    if cache is None:
        cache = _local.buffers = {}
    key = (name, shape, np.dtype(dtype))
    a = cache.get(key)
    if a is None:
        if len(cache) >= 16:
            cache.clear()
        a = cache[key] = (np.zeros if zero else np.empty)(shape, dtype=dtype)
    return a


class Conv2d(Transform):
    r"""Convolution with a ``k x k`` stencil and zero padding that keeps the image size.

    Each row of ``Y`` is one image with ``c_in`` channels of ``height x width``
    pixels, flattened channel-major (``c_in * height * width`` entries). The
    output channel ``o`` at pixel ``(y, x)`` is the cross-correlation

    .. math::

       (Y K)_{o, y, x} = \sum_{i < c_{in}} \sum_{|a|, |b| \le r}
       \theta_{o, i, a, b}\, Y_{i,\, y + a,\, x + b}, \qquad r = (k - 1) / 2,

    with :math:`Y = 0` outside the image; ``theta`` holds the kernel
    ``(c_out, c_in, k, k)`` row-major. The transpose :math:`Z K^T` is the
    exact adjoint of this map (scatter-add of the same stencil, including the
    boundary), not a convolution with a flipped kernel that ignores padding.

    Implementation: blocks of images are copied, flattened row by row, into
    a buffer with ``r`` zero rows above and below each image (no padding
    across), so that a shift of the stencil is a shift of the flat index.
    The ``k`` horizontal shifts are stacked (a ``k c_in``-row im2col), the
    entries a shift moves across the image's side (which would wrap into the
    next row) set to zero. One GEMM per image multiplies the stack by all
    ``k`` kernel rows, ``(k c_out) x (k c_in)``, and the vertical shift
    ``a`` is the ``a``-th product offset by ``a`` image rows: their sum is
    the output, written in place, with no cropping. This copies ``k``
    instead of ``k^2`` shifted images, every block stays in cache, and on
    NumPy the blocks are shared among threads. The transpose is the same
    correlation with the kernel flipped in space and transposed in channels,
    which is exactly the adjoint (zero padding included). It works unchanged
    on CuPy (one block). On W3's batch it is 4.5-5x faster than an FFT
    convolution (``scipy.fft``) and 6x faster than the textbook im2col
    (``benchmarks/convolution.py``).

    Measured on W3 (512 images, 6 channels of 28 x 28, 2-core Xeon,
    2026-12-03): without the padding across, the image copies in and out are
    whole rows instead of 28-pixel pieces, and the ResNet and Verlet networks'
    forward, gradient and Gauss-Newton product took 4-12% less time than
    with a padded width (one GEMM per vertical shift, then a crop).
    """

    def __init__(self, c_in: int, c_out: int, height: int, width: int, kernel_size: int = 3) -> None:
        if min(c_in, c_out, height, width) < 1:
            raise ValueError(
                f"Conv2d needs positive c_in, c_out, height, width, got {c_in}, {c_out}, {height}, {width}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.c_in, self.c_out, self.height, self.width = int(c_in), int(c_out), int(height), int(width)
        self.kernel_size = int(kernel_size)
        self.n_in = self.c_in * self.height * self.width
        self.n_out = self.c_out * self.height * self.width
        self.param_shape = (self.c_out, self.c_in, self.kernel_size, self.kernel_size)
        self.n_params = self.c_out * self.c_in * self.kernel_size**2

    # -- blocked correlation (see the class docstring) -----------------------
    def _stacks(self, theta, transpose: bool):
        """``(k c_to, k c_from)``: ``theta[o, i, a, b]`` at ``[a c_to + o, b c_from + i]``."""
        k = self.kernel_size
        kernel = theta.reshape(self.c_out, self.c_in, k, k)
        if transpose:  # adjoint: flip the stencil, exchange the channels
            kernel = kernel[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        c_to, c_from = kernel.shape[:2]
        return kernel.transpose(2, 0, 3, 1).reshape(k * c_to, k * c_from).copy()

    def _images_per_block(self, c_from: int, itemsize: int, n_images: int, xp) -> int:
        if xp is not np:
            return max(1, n_images)  # GPU: one block
        per_image = self.kernel_size * c_from * (self.height + 2 * (self.kernel_size // 2))
        per_image *= self.width * itemsize
        return int(max(1, min(n_images, _BLOCK_BYTES // per_image)))

    def _columns(self, xp, images, i0: int, B: int, c_from: int):
        """The horizontal-shift stack ``(nb, k c_from, (H + 2r) W)`` of images ``i0 .. i0 + nb``.

        Row ``b c_from + i`` holds channel ``i`` shifted by ``b - r`` pixels
        across, with ``r`` zero rows above and below; the entries whose
        shift leaves the image (and would wrap into the next row) are zero.
        The vertical shift ``a`` is then the window ``[a W, a W + H W)``.
        """
        k, r, H, W = self.kernel_size, self.kernel_size // 2, self.height, self.width
        HW, L = H * W, (H + 2 * r) * W
        dtype = images.dtype
        # r zero rows above and below the image and r zeros at either end
        # (written once: the buffer is kept and only the image is rewritten)
        P = _buffer(xp, "P", (B, c_from, L + 2 * r), dtype, zero=True)
        cols = _buffer(xp, "cols", (B, k * c_from, L), dtype)
        nb = min(B, images.shape[0] - i0)
        P[:nb, :, r + r * W : r + r * W + HW] = images[i0 : i0 + nb]
        for b in range(k):
            shifted = cols[:nb, b * c_from : (b + 1) * c_from]
            shifted[...] = P[:nb, :, b : b + L]
            d, pixels = b - r, shifted.reshape(nb, c_from, H + 2 * r, W)
            if d < 0:
                pixels[..., : min(-d, W)] = 0
            elif d > 0:
                pixels[..., max(W - d, 0) :] = 0
        return cols[:nb]

    def _correlate(self, stacks, X, c_from: int, c_to: int):
        """``X`` (``s x c_from H W``) correlated with ``stacks`` into a new ``s x c_to H W`` array."""
        xp = get_array_module(X, stacks)
        k, W = self.kernel_size, self.width
        HW = self.height * W
        s = X.shape[0]
        images = X.reshape(s, c_from, HW)
        out = temporary_empty((s, c_to, HW), X.dtype, X)
        B = self._images_per_block(c_from, X.dtype.itemsize, s, xp)

        def run(block):
            cols = self._columns(xp, images, block * B, B, c_from)
            nb = cols.shape[0]
            U = _buffer(xp, "U", (B, k * c_to, cols.shape[2]), X.dtype)[:nb]
            xp.matmul(stacks, cols, out=U)  # U[:, a c_to + o]: kernel row a applied
            R = out[block * B : block * B + nb]
            if k == 1:
                R[...] = U
            else:
                xp.add(U[:, :c_to, :HW], U[:, c_to : 2 * c_to, W : W + HW], out=R)
            for a in range(2, k):
                R += U[:, a * c_to : (a + 1) * c_to, a * W : a * W + HW]

        in_parallel(run, -(-s // B), xp is np and X.size >= _THREADED_ELEMENTS)
        return out.reshape(s, c_to * HW)

    def apply(self, theta, Y):
        return self._correlate(self._stacks(theta, False), Y, self.c_in, self.c_out)

    def apply_transpose(self, theta, Z):
        return self._correlate(self._stacks(theta, True), Z, self.c_out, self.c_in)

    def vjp(self, theta, Y, W):
        r"""``grad[o, i, a, b] = sum over images and pixels of W[o, y, x] Y[i, y + a - r, x + b - r]``."""
        xp = get_array_module(Y, W)
        k, Wd = self.kernel_size, self.width
        HW = self.height * Wd
        c_in, c_out = self.c_in, self.c_out
        s = Y.shape[0]
        images = Y.reshape(s, c_in, HW)
        weights = W.reshape(s, c_out, HW)
        B = self._images_per_block(c_in, Y.dtype.itemsize, s, xp)

        def run(block):
            cols = self._columns(xp, images, block * B, B, c_in)
            Wb = weights[block * B : block * B + cols.shape[0]]
            grad = xp.empty((k, c_out, k * c_in), dtype=Y.dtype)
            for a in range(k):
                window = cols[:, :, a * Wd : a * Wd + HW]
                xp.sum(xp.matmul(Wb, window.transpose(0, 2, 1)), axis=0, out=grad[a])
            return grad

        grad = sum(in_parallel(run, -(-s // B), xp is np and Y.size >= _THREADED_ELEMENTS))
        # grad[a, o, b c_in + i] -> theta layout (o, i, a, b)
        return grad.reshape(k, c_out, k, c_in).transpose(1, 3, 0, 2).reshape(-1).copy()

    def init_params(self, rng, scale=1.0, dtype=np.float64):
        fan_in = self.c_in * self.kernel_size**2
        out = scale / np.sqrt(fan_in) * rng.standard_normal(self.n_params)
        return out.astype(dtype)

    def __repr__(self) -> str:
        return (
            f"Conv2d(c_in={self.c_in}, c_out={self.c_out}, height={self.height}, "
            f"width={self.width}, kernel_size={self.kernel_size})"
        )
