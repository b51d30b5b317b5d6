r"""The learning problem of Haber & Ruthotto (2017), eq. (2.4), with its derivatives.

With the network's output features :math:`Y_N(\theta) \in \mathbb{R}^{s \times n}`
(forward propagation of the examples :math:`Y_0`, one per row), classifier
weights :math:`W \in \mathbb{R}^{n \times m}` and bias :math:`\mu \in \mathbb{R}^m`,

.. math::

   f(\theta, W, \mu) = S\big(h(Y_N(\theta) W + e\mu^T), C\big)
       + \alpha_\theta R(\theta) + \alpha_W R_W(W),

where :math:`S` is the objective (loss averaged over the examples),
:math:`C` the target matrix and :math:`R, R_W` quadratic regularizers
(:math:`R(x) = \frac12 x^T H x`). With :math:`J = \partial Y_N / \partial\theta`
(sensitivities, :meth:`ocdl.Network.jvp`; :math:`J^T` is :meth:`ocdl.Network.vjp`):

.. math::

   \nabla_\theta f = J^T \frac{\partial S}{\partial Y_N} + \alpha_\theta H_R \theta,
   \qquad
   \nabla_W f = \frac{\partial S}{\partial W} + \alpha_W H_{R_W} W, \qquad
   \nabla_\mu f = \frac{\partial S}{\partial \mu},

the Gauss-Newton matrix in :math:`\theta` (symmetric positive semidefinite,
since :math:`S` is convex in :math:`Y_N` for fixed :math:`(W, \mu)`)

.. math::

   H_{GN} = J^T \frac{\partial^2 S}{\partial Y_N^2} J + \alpha_\theta H_R,

and the exact Hessian in :math:`(W, \mu)`,
:math:`\nabla^2_{(W,\mu)} S + \alpha_W \operatorname{diag}(H_{R_W}, 0)`.

:meth:`LearningProblem.theta_problem` and :meth:`LearningProblem.classifier_problem`
wrap these for :func:`ocdl.solvers.gauss_newton_pcg` and :func:`ocdl.solvers.newton_pcg`
(the protocol of :mod:`ocdl.solvers.newton`): a model is built once per outer
iteration, computes the forward states once and reuses them for the gradient
and for every Hessian-vector product of PCG.

Every data term may be evaluated on a sub-sample of the examples (``indices``;
the paper evaluates the Hessian on a further sub-sample, ``hessian_indices``),
and every cross-example reduction goes through one :class:`ocdl.reduction.Reduction`.

Since :math:`S` is a mean over examples, every data term is a weighted sum
over any partition of the examples into chunks :math:`B_c`:

.. math::

   S = \sum_c \frac{|B_c|}{s} S_{B_c}, \qquad
   J^T \frac{\partial S}{\partial Y_N} = \sum_c \frac{|B_c|}{s}
       J_{B_c}^T \frac{\partial S_{B_c}}{\partial Y_{N, B_c}},

and likewise for the Gauss-Newton products. With ``chunk_size`` the sweeps
propagate at most that many examples at once, so the memory of the forward
states (and of the working arrays of a step) is that of one chunk, whatever
the number of examples; the results agree with the unchunked ones up to
rounding. The output features of the training examples at the last
:math:`\theta` are kept (one entry, keyed by a copy of :math:`\theta` and the
indices), so that the line search's last trial, the next model and the
training accuracy share one forward sweep.

The examples of one process and the reduction
-----------------------------------------------
The chunk sums above are means over the rows this process holds; each is
completed by ``reduction.mean(x, count)`` (value, gradients, Gauss-Newton and
Newton products, batch accuracies) and the accuracy's counts by
``reduction.sum``. Nothing else sums over examples. What stays local to the
rows of one process: the validation of the labels (with ``n_classes``
inferred from them), ``n_examples``, the row ``indices`` of sub-samples, the
rule of at least one example, and :meth:`LearningProblem.fingerprint` (the
digest of this process's data).

Modules
-------
- :mod:`~ocdl.learning_problem.problem`: :class:`LearningProblem`, the
  function :math:`f` and its gradient, prediction and accuracy.
- :mod:`~ocdl.learning_problem.examples`: the training examples, their
  validation and sub-samples by index.
- :mod:`~ocdl.learning_problem.targets`: class labels or regression targets
  as the objective's target matrix.
- :mod:`~ocdl.learning_problem.sweeps`: chunked forward sweeps and the data
  terms summed over chunks.
- :mod:`~ocdl.learning_problem.features`: the kept output features of the
  last sweep.
- :mod:`~ocdl.learning_problem.theta`: the Gauss-Newton sub-problem in
  :math:`\theta`.
- :mod:`~ocdl.learning_problem.classifier`: the classifier as one flat
  vector and the Newton sub-problem in :math:`(W, \mu)`.
"""

from .classifier import ClassifierModel, ClassifierProblem
from .problem import LearningProblem
from .theta import ThetaModel, ThetaProblem

__all__ = ["ClassifierModel", "ClassifierProblem", "LearningProblem", "ThetaModel", "ThetaProblem"]
