r"""Stability of the forward propagation (section 3 of Haber & Ruthotto 2017).

The paper writes a layer for a column feature vector as :math:`\sigma(K y + b)`;
ocdl stores examples as rows, so the same layer reads :math:`\sigma(y K + b)`
and a paper matrix :math:`K_{\text{paper}}` becomes ``K = K_paper.T``.

**Layer Jacobian** (eq. 3.7). For a row vector :math:`y` the map
:math:`y \mapsto \sigma(y K + b)`, viewed as a map of column vectors, has the
Jacobian

.. math::  J(y) = \operatorname{diag}\big(\sigma'(y K + b)\big)\, K^T ,

the paper's :math:`\operatorname{diag}(\sigma'(K y + b)) K` with
:math:`K = K_{\text{paper}}^T`. The continuous dynamics
:math:`\dot y = \sigma(y K + b)` are stable when
:math:`\max_i \operatorname{Re} \lambda_i(J) \le 0`.

**Forward Euler** (eq. 3.9). The ResNet step
:math:`Y_{j+1} = Y_j + h \sigma(Y_j K_j + b_j)` is stable when

.. math::  \max_i |1 + h \lambda_i(J_j)| \le 1 ,

i.e. when every :math:`h\lambda_i` lies in the unit disc centred at
:math:`-1` (:func:`euler_factor`, :func:`plot_eigenvalues`).

:func:`phase_plane` draws the feature trajectories of a two-dimensional
network with the force field, as in the paper's Figures 1 and 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import asnumpy, get_array_module
from .layer import Layer
from .network import Network
from .validation import check_positive

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["blow_up_diagnosis", "euler_factor", "feature_trajectory", "input_sensitivity", "layer_jacobian_eigenvalues",
           "phase_plane", "plot_eigenvalues"]


def _layer(network: Network, square: bool = False) -> Layer:
    layer = getattr(network.stepper, "layer", None)
    if not isinstance(layer, Layer):
        raise TypeError(
            f"the stability tools need a layer stepper (ResNet, Leapfrog, Verlet, RK4); "
            f"{network.stepper!r} has no layer"
        )
    transform = layer.transform
    if square and transform.n_in != transform.n_out:
        raise ValueError(
            f"the layer Jacobian diag(sigma') K^T needs a square transform, got "
            f"{transform!r} ({transform.n_in} x {transform.n_out})"
        )
    return layer


def feature_trajectory(network: Network, theta: Any, Y0: Any) -> np.ndarray:
    r"""The features :math:`Y_0, Y_1, \dots, Y_N` of one forward propagation.

    Parameters
    ----------
    network : Network
        Any network; the features are ``network.stepper.output`` of each state.
    theta : array
        Flat parameters (``network.n_params`` entries).
    Y0 : array
        Input features, ``s x n``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N + 1, s, n)``; entry ``j`` is :math:`Y_j` (on the host).
    """
    with network.trajectory(theta, Y0) as traj:
        states = [asnumpy(network.stepper.output(state)) for _, state, _ in traj.steps()]
        states.append(asnumpy(network.stepper.output(traj.final_state)))
    return np.stack(states)


def layer_jacobian_eigenvalues(network: Network, theta: Any, Y0: Any) -> np.ndarray:
    r"""Eigenvalues of the layer Jacobians along the forward trajectory (eq. 3.7).

    For step :math:`j` and example :math:`i` (row :math:`y = (Y_j)_i`),

    .. math::  J_{j,i} = \operatorname{diag}\big(\sigma'(y K_j + b_j)\big)\, K_j^T ,

    the Jacobian of :math:`y \mapsto \sigma(y K_j + b_j)` as a map of column
    vectors. For a ResNet these decide the stability of forward Euler
    (:func:`euler_factor`); for the second-order networks they are the
    eigenvalues of the force :math:`\sigma(y K + b)`.

    Parameters
    ----------
    network : Network
        A network over a layer stepper whose transform is square
        (``n x n``); :meth:`~ocdl.transforms.Transform.matrix` gives :math:`K_j`.
    theta : array
        Flat parameters (``network.n_params`` entries).
    Y0 : array
        Input features, ``s x n``.

    Returns
    -------
    numpy.ndarray
        Complex, shape ``(N, s, n)``: the ``n`` eigenvalues of :math:`J_{j,i}`.

    Raises
    ------
    TypeError
        If the stepper has no layer.
    ValueError
        If the transform is not square.
    """
    layer = _layer(network, square=True)
    steps = network.theta_steps(theta)
    with network.trajectory(theta, Y0) as traj:
        return np.stack(
            [layer_eigenvalues(layer, steps[j], network.stepper.output(state)) for j, state, _ in traj.steps()]
        )


def layer_eigenvalues(layer: Any, theta: Any, Y: Any) -> np.ndarray:
    r"""Eigenvalues of :math:`\operatorname{diag}(\sigma'(y K + b))\, K^T` for each row ``y`` of ``Y``.

    One step of :func:`layer_jacobian_eigenvalues`: ``layer`` has a square
    transform, ``theta`` is that step's parameters. Returns a complex
    ``(s, n)`` array on the host.
    """
    theta_K, _ = layer.split(theta)
    K = asnumpy(layer.transform.matrix(theta_K))
    _, dA = layer.step(theta, Y, None, 1.0)  # (sigma(Y K + b), sigma'(Y K + b))
    J = asnumpy(dA)[:, :, None] * K.T[None]  # (s, n, n): diag(sigma'_i) K^T
    return np.linalg.eigvals(J).astype(np.result_type(J.dtype, np.complex64))


def euler_factor(eigenvalues: Any, h: float, per_step: bool = False) -> float | np.ndarray:
    r"""The forward Euler amplification :math:`\max |1 + h\lambda|` (eq. 3.9).

    Forward Euler on :math:`\dot y = J y` is stable when the factor is at
    most 1, i.e. every :math:`h\lambda` lies in the disc :math:`|1 + z| \le 1`.

    Parameters
    ----------
    eigenvalues : array_like
        Eigenvalues :math:`\lambda`, e.g. the ``(N, s, n)`` output of
        :func:`layer_jacobian_eigenvalues`.
    h : float
        Step size :math:`h > 0`.
    per_step : bool
        If true, the maximum over all axes but the first (one factor per step).

    Returns
    -------
    float or numpy.ndarray
        :math:`\max |1 + h\lambda|` overall, or per step (shape ``(N,)``).
    """
    h = check_positive("h", h)
    amplification = np.abs(1 + h * np.asarray(eigenvalues))
    if amplification.size == 0:
        raise ValueError("eigenvalues must hold at least one eigenvalue, got an empty array")
    if per_step:
        return amplification.reshape(amplification.shape[0], -1).max(axis=1)
    return float(amplification.max())


def blow_up_diagnosis(stepper: Any, theta: Any, Y: Any, h: float) -> tuple[str, str]:
    r"""``(diagnosis, advice)`` for the message of a forward propagation that blew up at a step.

    ``Y`` holds the step's input features (some of the examples that blew
    up), ``theta`` its parameters. For a ResNet, RK4 or leapfrog network
    (:math:`\dot Y = F(Y)` or :math:`\ddot Y = F(Y)`) with a square transform
    of at most 256 features, the diagnosis gives :math:`\max \operatorname{Re}\lambda`
    of the layer Jacobians (eq. 3.7, :func:`layer_eigenvalues`; positive: the
    ODE itself grows), and for a ResNet also the forward Euler factor
    :math:`\max|1 + h\lambda|` (eq. 3.9, :func:`euler_factor`); the advice for
    a ResNet is a stable stepper. Other steppers get neither (their
    stability regions differ): two empty strings.
    """
    from .steppers import RK4, Leapfrog, ResNet
    from .transforms import Antisymmetric

    layer = getattr(stepper, "layer", None)
    transform = getattr(layer, "transform", None)
    euler = isinstance(stepper, ResNet)
    advice = ""
    if euler:
        advice = ", or a stable stepper (" + ("verlet" if isinstance(transform, Antisymmetric) else
                                              "antisymmetric, verlet") + ")"
    xp = get_array_module(Y)
    if not (isinstance(stepper, (ResNet, RK4, Leapfrog)) and transform is not None
            and transform.n_in == transform.n_out <= 256 and Y.size and bool(xp.isfinite(Y).all())):
        return "", advice
    with np.errstate(all="ignore"):
        eigenvalues = layer_eigenvalues(layer, theta, Y)
    growth = float(eigenvalues.real.max())
    euler_part = (f"max|1 + h lambda| = {euler_factor(eigenvalues, h):.3g} (forward Euler is stable when <= 1, "
                  "paper eq. 3.9) and " if euler else "")
    diagnosis = (f" Its layer Jacobian diag(sigma') K^T at the step's input has {euler_part}max Re lambda = "
                 f"{growth:.3g}" + ("; with Re lambda > 0 the layer itself grows, a smaller step alone will not help."
                                    if growth > 0 else "."))
    return diagnosis, advice


def input_sensitivity(network: Network, theta: Any, Y0: Any, tol: float = 1e-6) -> float:
    r"""The 2-norm of the input Jacobian :math:`\partial Y_N / \partial Y_0` at ``Y0``.

    How much the whole forward propagation can amplify a perturbation of the
    input features (the discrete counterpart of the stability of section 3):

    .. math::

       \Big\| \frac{\partial Y_N}{\partial Y_0} \Big\|_2
       = \max_{\delta Y_0 \ne 0}
         \frac{\| J_{Y_0}\, \delta Y_0 \|_F}{\| \delta Y_0 \|_F} ,

    the largest singular value of the linearisation of all examples at once
    (examples do not interact, so it is the largest over the examples of each
    one's own). For forward Euler on :math:`\dot Y = Y K` it is
    :math:`\| \prod_j (I + h K_j) \|_2`; a stable discretisation of
    non-dissipative dynamics (antisymmetric :math:`K`, Verlet) keeps it near 1
    as :math:`h \to 0`, and an unstable one makes it grow with the depth.

    ``scipy.sparse.linalg.svds`` (ARPACK; ``cupyx``'s on CuPy) finds it from
    products with :math:`J_{Y_0}` (:meth:`Network.jvp` with ``dY0``) and its
    transpose (:meth:`Network.vjp` with ``return_dY0``) on one stored trajectory.

    Parameters
    ----------
    network : Network
    theta : array
        Flat parameters (``network.n_params`` entries).
    Y0 : array
        Input features, ``s x n`` with ``s * n >= 2``.
    tol : float
        ARPACK's relative tolerance on the singular pair (the singular value
        itself is accurate to about ``tol**2``; 0 means machine precision,
        many more products).

    Returns
    -------
    float
    """
    xp = get_array_module(theta, Y0)
    if Y0.size < 2:
        raise ValueError(f"Y0 needs at least 2 entries for a singular value solver, got shape {Y0.shape}")
    if xp is np:
        from scipy.sparse.linalg import LinearOperator, svds
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.sparse.linalg import LinearOperator, svds
    dtheta = xp.zeros_like(theta)
    with network.trajectory(theta, Y0) as traj:
        shape = network.stepper.output(traj.final_state).shape

        def matvec(v):
            dY0 = xp.asarray(v).reshape(Y0.shape).astype(Y0.dtype)
            return network.jvp(theta, Y0, dtheta, dY0, trajectory=traj).ravel()

        def rmatvec(w):
            W = xp.asarray(w).reshape(shape).astype(Y0.dtype)
            return network.vjp(theta, Y0, W, trajectory=traj, return_dY0=True)[1].ravel()

        J = LinearOperator((int(np.prod(shape)), Y0.size), matvec=matvec, rmatvec=rmatvec, dtype=Y0.dtype)
        return float(svds(J, k=1, tol=tol, return_singular_vectors=False)[0])


def phase_plane(
    ax: Axes,
    network: Network,
    theta: Any,
    Y0: Any,
    field: bool = True,
    K: Any = None,
    b: float | None = None,
    grid: int = 15,
    labels: Sequence[str] | None = None,
    legend: bool = True,
    linewidth: float = 1.2,
    markers: bool | None = None,
) -> Axes:
    r"""Draw the trajectories :math:`Y_0, \dots, Y_N` of two features with the force field.

    Each example is one curve through its states (dots at the hidden layers),
    its input :math:`Y_0` a hollow circle and its output :math:`Y_N` a star.
    The field is :math:`\sigma(y K + b)` on a ``grid x grid`` lattice over the
    plotted region: the right-hand side of :math:`\dot y = \sigma(yK + b)` for
    a ResNet, the acceleration of :math:`\ddot y = \sigma(yK + b)` for Leapfrog.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to draw on.
    network : Network
        A network of width 2.
    theta : array
        Flat parameters (``network.n_params`` entries).
    Y0 : array
        Input features, ``s x 2``.
    field : bool
        Whether to draw the force field (needs a layer stepper).
    K : array_like, optional
        The ``2 x 2`` matrix of the field (row convention); default the first
        layer's :math:`K_0`.
    b : float, optional
        The bias of the field; default the first layer's :math:`b_0`.
    grid : int
        Number of arrows per axis.
    labels : sequence of str, optional
        Legend labels of the examples; default the input coordinates.
    legend : bool
        Whether to draw a legend.
    linewidth : float
        Width of the lines joining consecutive states (0: dots only); thin lines
        keep long runs readable.
    markers : bool, optional
        Whether to dot every state; default when :math:`N \le 50`.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.
    """
    from matplotlib.lines import Line2D

    paths = feature_trajectory(network, theta, Y0)
    if paths.shape[2] != 2:
        raise ValueError(f"phase_plane needs 2 features, the network has {paths.shape[2]}")
    grid = check_positive("grid", grid, integer=True)
    if labels is None:
        labels = [f"$y_0 = ({y[0]:g}, {y[1]:g})$" for y in paths[0]]
    if len(labels) != paths.shape[1]:
        raise ValueError(f"labels needs {paths.shape[1]} entries, got {len(labels)}")

    low, high = paths.min(axis=(0, 1)), paths.max(axis=(0, 1))
    margin = 0.1 * np.maximum(high - low, 0.1 * max(np.abs(paths).max(), 1e-3))
    low, high = low - margin, high + margin

    handles = []
    if field:
        layer = _layer(network)
        theta_K, b0 = layer.split(network.theta_steps(theta)[0])
        K = asnumpy(layer.transform.matrix(theta_K)) if K is None else np.asarray(K, dtype=float)
        if K.shape != (2, 2):
            raise ValueError(f"the field needs a 2 x 2 matrix K, got shape {K.shape}")
        b = float(asnumpy(b0)[0]) if b is None else float(b)
        X1, X2 = np.meshgrid(np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid))
        force = np.asarray(layer.activation(np.stack([X1.ravel(), X2.ravel()], axis=1) @ K + b))
        ax.quiver(X1, X2, force[:, 0].reshape(X1.shape), force[:, 1].reshape(X1.shape),
                  color="0.65", angles="xy", width=0.004)
        handles.append(Line2D([], [], color="0.65", marker=r"$\rightarrow$", markersize=12,
                              linestyle="None", label="force field"))

    n_steps = paths.shape[0] - 1
    marker = "." if (n_steps <= 50 if markers is None else markers) else None
    markersize = 6 if n_steps <= 50 else 2
    for i, label in enumerate(labels):
        color = f"C{i}"
        line, = ax.plot(paths[:, i, 0], paths[:, i, 1], "-" if linewidth else "None",
                        marker=marker, markersize=markersize, color=color,
                        linewidth=linewidth, label=label)
        handles.append(line)
        ax.plot(*paths[0, i], "o", markersize=8, markerfacecolor="none", markeredgecolor=color,
                markeredgewidth=1.5)
        ax.plot(*paths[-1, i], "*", markersize=12, color=color, markeredgecolor="k",
                markeredgewidth=0.5)
    handles.append(Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor="k",
                          linestyle="None", label="input $Y_0$"))
    handles.append(Line2D([], [], marker="*", markersize=10, color="0.4", markeredgecolor="k",
                          linestyle="None", label="output $Y_N$"))

    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("feature $y_1$")
    ax.set_ylabel("feature $y_2$")
    if legend:
        ax.legend(handles=handles, fontsize="small", loc="best")
    return ax


def plot_eigenvalues(ax: Axes, eigenvalues: Any, h: float, label: str | None = None) -> Axes:
    r"""Draw eigenvalues in the complex plane with the forward Euler stability disc.

    The disc is :math:`\{\lambda : |1 + h \lambda| \le 1\}`, centre :math:`-1/h`, radius
    :math:`1/h` (eq. 3.9): forward Euler with step :math:`h` is stable when
    every eigenvalue lies inside it.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to draw on.
    eigenvalues : array_like
        Complex eigenvalues of any shape (flattened),
        e.g. from :func:`layer_jacobian_eigenvalues`.
    h : float
        Step size :math:`h > 0`.
    label : str, optional
        Legend label of the eigenvalues (default ``"eigenvalues"``).

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.
    """
    from matplotlib.patches import Circle

    h = check_positive("h", h)
    lam = np.asarray(eigenvalues).ravel()
    radius = 1 / h
    ax.add_patch(Circle((-radius, 0), radius, facecolor="C2", alpha=0.15, edgecolor="C2",
                        label=rf"forward Euler stable: $|1 + h\lambda| \leq 1$, $h = {h:g}$"))
    ax.plot(lam.real, lam.imag, "x", color="C3", markersize=8,
            label="eigenvalues" if label is None else label)
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.axvline(0, color="0.5", linewidth=0.6)
    pad = 0.1 * max(2 * radius, np.abs(lam).max(initial=0))
    top = max(radius, np.abs(lam.imag).max(initial=0)) + pad
    ax.set_xlim(min(-2 * radius, lam.real.min(initial=0)) - pad, lam.real.max(initial=0) + pad)
    ax.set_ylim(-top, top)
    ax.set_aspect("equal")
    ax.set_xlabel(r"Re $\lambda$")
    ax.set_ylabel(r"Im $\lambda$")
    ax.legend(fontsize="small", loc="upper left")
    return ax
