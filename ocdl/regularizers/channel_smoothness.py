"""Spatial smoothness of every channel of multi-channel classifier weights (the paper's MNIST classifier, eq. 5.25)."""

from __future__ import annotations

from ..backend import Array
from ..validation import check_array, check_positive
from .base import Regularizer
from .spatial_smoothness import SpatialSmoothness


class ChannelSmoothness(Regularizer):
    r""":class:`~ocdl.SpatialSmoothness` of every channel's image, with no differences across channels.

    A column :math:`w` of :math:`W` (``channels * height * width`` entries,
    channel-major) holds one ``height x width`` image per channel;

    .. math::  R(W) = \frac12 \sum_{k} \sum_{c} \|L\, w_{k,c}\|^2 ,

    :math:`L` the operator of :class:`~ocdl.SpatialSmoothness` on the
    ``height x width`` grid (default the Neumann Laplacian, so
    :math:`H = \Delta_N^2` per image). Each image is one column for that
    regularizer, so value, products and the DCT preconditioner are its own.

    Parameters
    ----------
    channels : int
        Channels per column.
    image_shape : (int, int)
        Height and width of one image.
    operator : {"laplacian", "gradient"}
        :math:`L`, as for :class:`~ocdl.SpatialSmoothness`.
    """

    def __init__(self, channels: int, image_shape: tuple[int, int], operator: str = "laplacian") -> None:
        self.channels = check_positive("channels", channels, integer=True)
        self.image = SpatialSmoothness(image_shape, operator)

    def _images(self, W: Array, name: str = "W") -> Array:
        """``(channels * pixels, m)`` to ``(pixels, channels * m)``: one image per column (``W`` checked, named
        ``name``)."""
        check_array(name, W, finite=False)
        if W.ndim not in (1, 2) or W.shape[0] != self.channels * self.image.n:
            raise ValueError(
                f"{name} must have shape (n, m) or (n,) with n = channels * pixels = {self.channels * self.image.n}, "
                f"got {W.shape}"
            )
        m = W.shape[1] if W.ndim == 2 else 1
        return W.reshape(self.channels, self.image.n, m).transpose(1, 0, 2).reshape(self.image.n, -1)

    def _columns(self, V: Array, shape: tuple[int, ...]) -> Array:
        """Inverse of :meth:`_images`, back to ``shape``."""
        return V.reshape(self.image.n, self.channels, -1).transpose(1, 0, 2).reshape(shape)

    def value(self, W: Array) -> float:
        return self.image.value(self._images(W))

    def hessian_matvec(self, v: Array) -> Array:
        return self._columns(self.image.hessian_matvec(self._images(v, "v")), v.shape)

    def precondition(self, r: Array, shift: float) -> Array:
        r"""Solve :math:`(H + \sigma I) z = r` image by image (DCT-II, see :class:`~ocdl.SpatialSmoothness`)."""
        return self._columns(self.image.precondition(self._images(r, "r"), shift), r.shape)

    def __repr__(self) -> str:
        return f"ChannelSmoothness(channels={self.channels}, image_shape={self.image.grid_shape})"
