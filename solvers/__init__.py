"""Optimisation for ocdl: PCG (a PCGResult), (Gauss-)Newton-PCG, line search, training (each a SolverResult)."""

from .block_coordinate_descent import TrainingState, block_coordinate_descent
from .discrepancy import DiscrepancyResult, discrepancy_principle
from .first_order import adam, sgd
from .line_search import LineSearchResult, armijo
from .multilevel import multilevel, prolongate
from .newton import gauss_newton_pcg, newton_pcg
from .pcg import PCGResult, pcg
from .result import SolverResult
from .steepest_descent import steepest_descent

__all__ = [
    "DiscrepancyResult", "LineSearchResult", "PCGResult", "SolverResult", "TrainingState", "adam", "armijo",
    "block_coordinate_descent", "discrepancy_principle", "gauss_newton_pcg", "multilevel", "newton_pcg", "pcg",
    "prolongate", "sgd", "steepest_descent",
]
