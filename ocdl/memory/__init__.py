"""Memory policies for the forward states (strategy objects handed to a Network)."""

from .base import MemoryPolicy, Trajectory
from .store_all import StoreAll

__all__ = ["MemoryPolicy", "StoreAll", "Trajectory"]
