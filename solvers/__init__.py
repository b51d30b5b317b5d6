"""Optimisation for ocdl: PCG, (Gauss-)Newton-PCG, line search; every solver returns a SolverResult."""

from .line_search import LineSearchResult, armijo
from .newton import gauss_newton_pcg, newton_pcg
from .pcg import PCGResult, pcg
from .result import SolverResult

__all__ = [
    "LineSearchResult", "PCGResult", "SolverResult", "armijo", "gauss_newton_pcg", "newton_pcg", "pcg",
]
