"""A quadratic test problem for the Newton solvers (shared by the solver and failure tests)."""

from __future__ import annotations

import numpy as np


class Quadratic:
    """f(x) = 0.5 x^T A x - b^T x, optionally NaN beyond |x| > nan_outside; the Newton step lands on A^{-1} b."""

    def __init__(self, A, b, nan_outside=np.inf):
        self.A, self.b, self.nan_outside = A, b, nan_outside

    def value(self, x):
        return np.nan if np.abs(x).max() > self.nan_outside else float(0.5 * x @ self.A @ x - self.b @ x)

    def model(self, x):
        problem = self

        class Model:
            value = problem.value(x)
            gradient = problem.A @ x - problem.b

            def hessian_matvec(self, v):
                return problem.A @ v

        return Model()
