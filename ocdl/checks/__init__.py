r"""Derivative checks, public so that users run them on their own pieces.

* :func:`taylor_test` verifies a directional derivative :math:`J v` of a map
  :math:`f` by the two Taylor residuals

  .. math::

     E_0(\varepsilon) = \|f(x + \varepsilon v) - f(x)\| = O(\varepsilon), \qquad
     E_1(\varepsilon) = \|f(x + \varepsilon v) - f(x) - \varepsilon J v\|
                      = O(\varepsilon^2),

  for :math:`\varepsilon = \varepsilon_0, \varepsilon_0/2, \dots`, and reports
  the observed convergence rates :math:`\log_2 E(\varepsilon)/E(\varepsilon/2)`.
* :func:`dot_test` verifies that a map :math:`A^T` is the adjoint of a linear
  map :math:`A`: :math:`\langle w, A v\rangle = \langle A^T w, v\rangle`.
* :func:`check_stepper`, :func:`check_layer`, :func:`check_transform`, :func:`check_activation`,
  :func:`check_objective` and :func:`check_regularizer` run both on every
  derivative of one piece of a network and return a :class:`CheckReport`.
  Run them on your own subclasses.
"""

from .components import check_activation, check_layer, check_objective, check_regularizer, check_transform
from .core import (
    AgreementResult,
    CheckReport,
    DotResult,
    TaylorResult,
    agreement,
    axpy,
    default_tol,
    dot_test,
    dot_test_operator,
    inner,
    norm,
    random_like,
    rows_alone,
    taylor_test,
)
from .precision import PrecisionResult, compare_precision
from .stepper import check_stepper

__all__ = [
    "AgreementResult", "CheckReport", "DotResult", "PrecisionResult", "TaylorResult",
    "agreement", "axpy", "default_tol", "dot_test", "dot_test_operator", "inner", "norm", "random_like",
    "rows_alone", "taylor_test", "compare_precision",
    "check_stepper", "check_layer", "check_transform", "check_activation", "check_objective", "check_regularizer",
]
