"""Linear transforms :math:`K(\\theta)` of a layer (apply, transpose, derivatives)."""

from .antisymmetric import Antisymmetric
from .base import Transform
from .conv2d import Conv2d
from .dense import Dense
from .negative_definite import NegativeDefinite

__all__ = ["Antisymmetric", "Conv2d", "Dense", "NegativeDefinite", "Transform"]
