"""Optimisation for ocdl.

* Solvers of an array, functions in scipy's style: :func:`pcg` (a :class:`PCGResult`),
  :func:`newton_pcg`, :func:`gauss_newton_pcg`, :func:`steepest_descent` (each a
  :class:`SolverResult`), the line search :func:`armijo`, :func:`discrepancy_principle`.
* Training solvers of the learning problem, strategy objects with
  :meth:`~TrainingSolver.minimize`: :class:`BlockCoordinateDescent`, :class:`SGD`,
  :class:`Adam`; each returns a :class:`SolverResult` whose ``x`` is a :class:`Params`,
  with a :class:`Status`. Their shared loop: :mod:`ocdl.solvers.training_loop`.
* :func:`multilevel` trains coarse to fine with one of them (``solver=``), checkpointed by
  a :class:`Checkpointing` (``checkpoint=``), and returns a :class:`MultilevelResult`.
"""

from .block_coordinate_descent import BlockCoordinateDescent
from .checkpoint import Checkpointing
from .discrepancy import DiscrepancyResult, discrepancy_principle
from .first_order import SGD, Adam
from .line_search import LineSearchResult, armijo
from .multilevel import multilevel, prolongate
from .newton import gauss_newton_pcg, newton_pcg
from .params import Params
from .pcg import PCGResult, pcg
from .result import MultilevelResult, SolverResult, Status
from .steepest_descent import steepest_descent
from .training_loop import TrainingSolver, TrainingState

__all__ = [
    "SGD", "Adam", "BlockCoordinateDescent", "Checkpointing", "DiscrepancyResult", "LineSearchResult",
    "MultilevelResult", "PCGResult", "Params", "SolverResult", "Status", "TrainingSolver", "TrainingState", "armijo",
    "discrepancy_principle", "gauss_newton_pcg", "multilevel", "newton_pcg", "pcg", "prolongate",
    "steepest_descent",
]
