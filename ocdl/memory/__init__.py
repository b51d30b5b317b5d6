"""Memory policies for the forward states (strategy objects handed to a Network).

* :class:`StoreAll`: every state and cache in memory (fastest).
* :class:`Recompute`: ``n_checkpoints`` states, the rest recomputed by the
  optimal binomial (revolve) schedule, :func:`binomial_schedule`.
* :class:`HDF5`: states written to an HDF5 file, read back per sweep.
* :class:`Reversible`: only :math:`x_0` and :math:`x_N`; the states rebuilt
  backward by ``stepper.reverse_step`` (Leapfrog, Verlet).
"""

from .base import MemoryPolicy, Trajectory, propagate
from .hdf5 import HDF5, HDF5Trajectory
from .recompute import (
    Recompute,
    RecomputedTrajectory,
    binomial_schedule,
    optimal_recomputations,
    repetition_number,
)
from .reversible import Reversible, ReversibleTrajectory
from .store_all import StoreAll, StoredTrajectory, SweptTrajectory

__all__ = [
    "HDF5",
    "HDF5Trajectory",
    "MemoryPolicy",
    "Recompute",
    "RecomputedTrajectory",
    "Reversible",
    "ReversibleTrajectory",
    "StoreAll",
    "StoredTrajectory",
    "SweptTrajectory",
    "Trajectory",
    "binomial_schedule",
    "optimal_recomputations",
    "propagate",
    "repetition_number",
]
