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
:math:`-1` (:func:`euler_factor`).

A stepper explains its own blow-up (:meth:`ocdl.Stepper.diagnose`); the layer
steppers use :func:`layer_growth_diagnosis`. The drawings of these quantities
(:func:`~ocdl.experiments.stability_figures.phase_plane`,
:func:`~ocdl.experiments.stability_figures.plot_eigenvalues`) are in
:mod:`ocdl.experiments.stability_figures`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import asnumpy, get_array_module
from .layer import Layer
from .validation import check_array, check_nonnegative, check_positive

if TYPE_CHECKING:  # the network-level functions take a Network; ocdl.propagation's steppers import this module
    from .propagation import Network

__all__ = ["euler_factor", "feature_trajectory", "input_sensitivity", "layer_eigenvalues", "layer_growth_diagnosis",
           "layer_jacobian_eigenvalues", "network_layer", "second_order_growth_diagnosis"]


def _check_network(network: Any) -> None:
    """``TypeError`` unless ``network`` is an :class:`ocdl.Network` (it failed later with an AttributeError): by
    what is used of it, as this module may not import :mod:`ocdl.propagation` (whose steppers import it)."""
    if not all(hasattr(network, name) for name in ("stepper", "trajectory", "theta_steps")):
        raise TypeError(f"network must be an ocdl Network, got {type(network).__name__}")


def network_layer(network: Network, square: bool = False) -> Layer:
    """The :class:`~ocdl.Layer` of ``network``'s stepper (``TypeError`` if it has none); with ``square``,
    one whose transform is square (``ValueError`` otherwise)."""
    _check_network(network)
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
        return np.stack(states)  # while the trajectory's states are valid


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
    layer = network_layer(network, square=True)
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

    Raises
    ------
    TypeError, ValueError
        Naming the argument: ``layer`` not a :class:`~ocdl.Layer` with a square
        transform, ``Y`` not an ``s x n`` float array, ``theta`` not a 1-D
        array of ``layer.n_params`` entries.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer must be an ocdl Layer, got {type(layer).__name__}")
    n = layer.transform.n_in
    if layer.transform.n_out != n:
        raise ValueError(f"layer must have a square transform for eigenvalues, got {n} -> {layer.transform.n_out}")
    check_array("Y", Y, shape=(None, n), finite=False)
    check_array("theta", theta, shape=(layer.n_params,), finite=False)
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

    Raises
    ------
    TypeError, ValueError
        Naming the argument: ``eigenvalues`` not numbers, empty, NaN or Inf
        (a NaN factor would pass a test ``<= 1``), a single number with
        ``per_step``; ``h`` not a positive number.
    """
    h = check_positive("h", h)
    try:
        eigenvalues = np.asarray(asnumpy(eigenvalues) if hasattr(eigenvalues, "dtype") else eigenvalues,
                                 dtype=complex)
    except (TypeError, ValueError):
        raise TypeError(f"eigenvalues must be an array of numbers, got {type(eigenvalues).__name__}") from None
    if not np.isfinite(eigenvalues).all():  # NaN > 1 is False: a NaN factor would read as stable
        raise ValueError("eigenvalues must be finite, got NaN or Inf (a NaN factor would pass '<= 1' as stable)")
    if per_step and eigenvalues.ndim == 0:
        raise ValueError("eigenvalues must have a first axis of steps with per_step=True, got a single number")
    amplification = np.abs(1 + h * eigenvalues)
    if amplification.size == 0:
        raise ValueError("eigenvalues must hold at least one eigenvalue, got an empty array")
    if per_step:
        return amplification.reshape(amplification.shape[0], -1).max(axis=1)
    return float(amplification.max())


def layer_growth_diagnosis(layer: Layer, theta: Any, Y: Any, h: float | None = None) -> str:
    r"""The sentence on the layer Jacobian in the message of a forward propagation that blew up.

    For the dynamics :math:`\dot Y = F(Y)` or :math:`\ddot Y = F(Y)` with the
    force :math:`F(Y) = \sigma(Y K + b)` of ``layer``: :math:`\max \operatorname{Re}\lambda`
    of the layer Jacobians :math:`\operatorname{diag}(\sigma') K^T` at the rows
    of ``Y`` (eq. 3.7, :func:`layer_eigenvalues`; positive: the ODE itself
    grows, so a smaller step alone will not help), and with ``h`` also the
    forward Euler factor :math:`\max|1 + h\lambda|` (eq. 3.9,
    :func:`euler_factor`; above 1 with :math:`\max \operatorname{Re}\lambda \le 0`:
    the ODE does not grow, the step is too long). A stepper's :meth:`~ocdl.Stepper.diagnose` uses it.

    Parameters
    ----------
    layer : Layer
        The step's layer.
    theta : array
        The step's parameters (``layer.n_params`` entries).
    Y : array
        Features entering the step, ``s x n`` (some of the examples that blew up).
    h : float, optional
        The step size of a forward Euler step; ``None`` leaves the Euler factor out.

    Returns
    -------
    str
        The sentence, or ``""`` where it does not apply or would be costly: a
        transform that is not square or has more than 256 features, ``Y``
        empty or not finite.
    """
    eigenvalues = _diagnosed_eigenvalues(layer, theta, Y)
    if eigenvalues is None:
        return ""
    growth = float(eigenvalues.real.max()) + 0.0  # + 0.0: -0.0 (antisymmetric K, gamma 0) reads "0"
    factor = None if h is None else euler_factor(eigenvalues, h)
    euler_part = ("" if factor is None else f"max|1 + h lambda| = {factor:.3g} (forward Euler is "
                  "stable when <= 1, paper eq. 3.9) and ")
    if growth > 0:
        ending = "; with Re lambda > 0 the layer itself grows, a smaller step alone will not help."
    elif factor is not None and factor > 1:
        ending = ("; with max Re lambda <= 0 the ODE does not grow here: the step is too long for it, a smaller "
                  "one helps.")
    else:
        ending = "."
    return (f"Its layer Jacobian diag(sigma') K^T at the step's input has {euler_part}"
            f"max Re lambda = {growth:.3g}{ending}")


def second_order_growth_diagnosis(layer: Layer, theta: Any, Y: Any, h: float | None = None) -> str:
    r"""The sentence on the layer Jacobian for :math:`\ddot Y = F(Y)` (the leapfrog network) that blew up.

    The linearisation :math:`\ddot y = \lambda y` has the solutions
    :math:`e^{\pm\sqrt\lambda\, t}`: it grows at the rate :math:`\max \operatorname{Re}\sqrt\lambda`
    (principal root), which is 0 only where every eigenvalue of
    :math:`\operatorname{diag}(\sigma') K^T` is real and :math:`\le 0` (not merely
    :math:`\operatorname{Re}\lambda \le 0`: an antisymmetric :math:`K`'s :math:`\pm i` give
    :math:`\operatorname{Re}\sqrt{i} = 0.71`, and a smaller step alone will not help). Where it
    does not grow, with ``h`` also :math:`\max h^2 |\lambda|`: leapfrog is stable for
    :math:`h^2 |\lambda| < 4`. Arguments and what it returns as for
    :func:`layer_growth_diagnosis`.
    """
    eigenvalues = _diagnosed_eigenvalues(layer, theta, Y)
    if eigenvalues is None:
        return ""
    roots = np.sqrt(eigenvalues.astype(complex))
    growth = float(roots.real.max()) + 0.0
    scale = float(np.sqrt(np.abs(eigenvalues).max()))
    text = ("Its layer Jacobian diag(sigma') K^T at the step's input has max Re sqrt(lambda) = "
            f"{growth:.3g} (y'' = lambda y grows unless every lambda is real and <= 0)")
    if growth > 1e-6 * scale:
        return text + "; the second-order dynamics themselves grow, a smaller step alone will not help."
    if h is None:
        return text + "."
    reach = h * h * float(np.abs(eigenvalues).max())
    ending = ": the step is too long for them, a smaller one helps." if reach >= 4 else "."
    return text + f"; they do not grow here, and max h^2 |lambda| = {reach:.3g} (leapfrog is stable when < 4){ending}"


def _diagnosed_eigenvalues(layer: Layer, theta: Any, Y: Any) -> np.ndarray | None:
    """The layer Jacobians' eigenvalues at the rows of ``Y`` for a diagnosis (NumPy), or ``None`` where the
    diagnosis does not apply or would be costly: a transform that is not square or has more than 256 features,
    ``Y`` empty or not finite; or where they are not finite themselves (a matrix near the largest float), which
    no sentence could describe (and :func:`euler_factor` refuses)."""
    transform = layer.transform
    xp = get_array_module(Y)
    if not (transform.n_in == transform.n_out <= 256 and Y.size and bool(xp.isfinite(Y).all())):
        return None
    with np.errstate(all="ignore"):
        try:
            eigenvalues = layer_eigenvalues(layer, theta, Y)
        except np.linalg.LinAlgError:  # a Jacobian with Inf or NaN entries
            return None
    return eigenvalues if np.isfinite(eigenvalues).all() else None


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
    :math:`\| \prod_j (I + h K_j) \|_2`; on such linear dynamics a stable
    discretisation of non-dissipative ones (antisymmetric :math:`K`, Verlet)
    keeps it near 1 as :math:`h \to 0`, and an unstable one makes it grow
    with the depth. With a nonlinear activation it tends, as :math:`h \to 0`,
    to the continuous flow's sensitivity, which can be well above 1 (tanh,
    :math:`T = 10`, an antisymmetric :math:`K` scaled by 3: 13.1, 5.76, 4.62 at
    :math:`N = 10, 100, 1000`; Verlet: 679, 12.8, 11.8).

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

    Raises
    ------
    TypeError, ValueError
        Naming the argument: ``network`` not an :class:`ocdl.Network`, ``Y0`` not a 2-D float32/float64
        array or with fewer than 2 entries, ``tol`` negative.
    ocdl.PropagationError
        If the forward propagation blows up.
    """
    _check_network(network)
    tol = check_nonnegative("tol", tol)
    Y0 = check_array("Y0", Y0, ndim=2, finite=False)  # its entries: checked by the forward sweep
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
