r"""The output features :math:`Y_N(\theta)` of the last training rows propagated, kept for reuse.

The line search's last trial, the next model and the training accuracy ask
for the features at the same :math:`\theta`; one entry, keyed by copies of
:math:`\theta` and of the row indices, lets them share one forward sweep. The
key is a copy, so a :math:`\theta` changed in place is a new point.
"""

from __future__ import annotations

import numpy as np

from ..backend import Array, asnumpy, get_array_module


class FeatureCache:
    r"""One entry: the features :math:`Y_N(\theta)` of the training rows ``indices`` (``None``: all)."""

    def __init__(self) -> None:
        self._key: tuple[Array, Array | None] | None = None
        self._YN: Array | None = None

    def get(self, theta: Array, indices: Array | None) -> Array | None:
        """The kept features if ``(theta, indices)`` equal the key (shape, dtype and entries), else ``None``."""
        if self._key is None:
            return None
        key_theta, key_indices = self._key
        xp = get_array_module(theta)
        if key_theta.shape != theta.shape or key_theta.dtype != theta.dtype or not bool(xp.all(key_theta == theta)):
            return None
        if (key_indices is None) != (indices is None):
            return None
        if indices is not None:
            indices = asnumpy(indices)
            if key_indices.shape != indices.shape or not np.array_equal(key_indices, indices):
                return None
        return self._YN

    def put(self, theta: Array, indices: Array | None, YN: Array) -> None:
        """Keep ``YN`` as the features at ``(theta, indices)`` (copies of the key), replacing the entry."""
        self._key = (theta.copy(), None if indices is None else np.array(asnumpy(indices)))
        self._YN = YN
