r"""Checks of the pieces a network and its learning problem are built from.

Each runs every derivative of one piece through :func:`~ocdl.checks.taylor_test`
and every adjoint or symmetric pair through :func:`~ocdl.checks.dot_test`, in
float64, and returns a :class:`~ocdl.checks.CheckReport`. Data handed in a
lower precision are promoted for the derivative tests, and the report adds
rows comparing the lower-precision results with float64 ones
(:func:`~ocdl.checks.precision.compare_precision`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..fingerprint import describe
from ..validation import check_array, check_positive, random_generator
from .core import CheckReport, agreement, check_data, dot_test, inner, random_like, rows_alone, taylor_test
from .precision import as_dtype, precision_rows

#: Shifts :math:`\sigma` at which :func:`check_regularizer` solves :math:`(H + \sigma I) z = r`.
PRECONDITION_SHIFTS = (1e-2, 1.0, 1e2)


def kink_notes(activation: Any) -> list[str]:
    """The report's note for an activation that is not differentiable everywhere (``smooth = False``)."""
    if activation is None or getattr(activation, "smooth", True):
        return []
    return [
        f"{activation!r} is not differentiable everywhere: Taylor rates near 1 can mean that a "
        "perturbation moved a pre-activation across a kink; check the derivatives with a smooth "
        "activation (SmoothReLU)"
    ]


def sample(name: str, x: Any, width: int | None = None) -> Any:
    """``x`` checked as the sample of a check: a float32 or float64 array with entries; with ``width``, rows
    of ``width`` entries (at least one row). A check of no entries would pass without testing anything."""
    check_array(name, x, shape=None if width is None else (None, width), finite=False)
    return check_data(name, x)


def check_transform(
    transform: Any,
    Y: Any = None,
    theta: Any = None,
    n_examples: int = 3,
    rng: np.random.Generator | int | None = 0,
    tol: float = 1e-10,
) -> CheckReport:
    r"""Check a :class:`~ocdl.transforms.Transform`: :math:`Y K(\theta)` and its derivatives.

    At ``Y`` (default: ``n_examples`` random rows) and ``theta`` (default
    ``transform.init_params``):

    * the dot tests of ``apply`` against ``apply_transpose``, of ``jvp``
      against ``vjp`` and of ``transpose_jvp`` against ``transpose_vjp``;
    * Taylor tests of ``apply`` and ``apply_transpose`` in :math:`\theta`
      against ``jvp`` and ``transpose_jvp``;
    * Taylor tests of ``tangent`` (both orientations) as the derivative of
      :math:`(\theta, Y) \mapsto Y K(\theta)` and the dot tests of
      ``tangent`` against ``cotangent``;
    * each row transformed alone: ``apply`` on two halves of the rows;
    * for a transform with an explicit form (``explicit_kind``, what the fused
      GPU kernels use): ``explicit`` applied as a matrix or, for a stencil, by
      a zero-padded correlation written independently here, against ``apply``;
      the Taylor test of ``explicit`` against ``explicit_jvp`` and the dot test
      of ``explicit_jvp`` against ``explicit_vjp``; where ``explicit_stacks``,
      those three on a stack of parameter vectors against each row alone.
    """
    n_examples = check_positive("n_examples", n_examples, integer=True)
    if Y is not None:
        sample("Y", Y, transform.n_in)
    rng = random_generator("rng", rng)
    xp = get_array_module(Y, theta)
    dtype = np.float64 if Y is None else Y.dtype
    Y = xp.asarray(rng.standard_normal((n_examples, transform.n_in))) if Y is None else as_dtype(Y, np.float64)
    theta = xp.asarray(transform.init_params(rng, dtype=np.float64)) if theta is None else as_dtype(theta, np.float64)
    Z = random_like(xp.zeros((Y.shape[0], transform.n_out)), rng)
    dtheta = random_like(theta, rng)
    results: dict = {
        "apply/apply_transpose": dot_test(
            lambda v: transform.apply(theta, v), lambda w: transform.apply_transpose(theta, w), Y, Z, tol
        ),
        "apply: theta": taylor_test(lambda t: transform.apply(t, Y), theta, dtheta, transform.jvp(theta, Y, dtheta)),
        "apply_transpose: theta": taylor_test(
            lambda t: transform.apply_transpose(t, Z), theta, dtheta, transform.transpose_jvp(theta, Z, dtheta)
        ),
        "jvp/vjp": dot_test(
            lambda v: transform.jvp(theta, Y, v), lambda w: transform.vjp(theta, Y, w), dtheta, random_like(Z, rng), tol
        ),
        "transpose_jvp/transpose_vjp": dot_test(
            lambda v: transform.transpose_jvp(theta, Z, v),
            lambda w: transform.transpose_vjp(theta, Z, w),
            dtheta,
            random_like(Y, rng),
            tol,
        ),
    }
    for transpose, (V, U) in ((False, (Y, Z)), (True, (Z, Y))):
        label = "transpose " if transpose else ""
        product = transform.apply_transpose if transpose else transform.apply
        dV = random_like(V, rng)
        results[f"{label}tangent"] = taylor_test(
            lambda x, product=product: product(x[0], x[1]),
            (theta, V),
            (dtheta, dV),
            transform.tangent(theta, V, dV, dtheta, transpose),
        )
        results[f"{label}tangent/cotangent"] = dot_test(
            lambda v, V=V, transpose=transpose: transform.tangent(theta, V, v[1], v[0], transpose),
            lambda w, V=V, transpose=transpose: transform.cotangent(theta, V, w, transpose)[::-1],
            (dtheta, dV),
            random_like(U, rng),
            tol,
        )
    if Y.shape[0] >= 2:
        results["rows transformed alone"] = rows_alone(
            lambda y: transform.apply(theta, y), Y, transform.apply(theta, Y), 100 * np.finfo(float).eps
        )
    if transform.explicit_kind is not None:
        results.update(_explicit_rows(transform, theta, Y, dtheta, rng, tol))
    maps = {
        "apply": lambda t, y, z, dt: transform.apply(t, y),
        "jvp": lambda t, y, z, dt: transform.jvp(t, y, dt),
        "vjp": lambda t, y, z, dt: transform.vjp(t, y, z),
    }
    notes = precision_rows(results, dtype, maps, (theta, Y, Z, dtheta))
    return CheckReport(f"check_transform({transform!r})", results, notes)


def explicit_product(transform: Any, K: Any, Y: Any) -> Any:
    r""":math:`Y K` from the explicit form ``K`` of ``transform``: a matrix product, or for a stencil
    ``(c_out, c_in, k, k)`` on images ``image_shape`` the zero-padded correlation
    :math:`Z_{o,y,x} = \sum_{i,a,b} K_{o,i,a,b} Y_{i,\,y+a-r,\,x+b-r}`, summed shift by shift over a padded copy."""
    if transform.explicit_kind == "matrix":
        return Y @ K
    xp = get_array_module(Y, K)
    c_out, c_in, k, _ = K.shape
    H, W = transform.image_shape
    r, s = k // 2, Y.shape[0]
    padded = xp.zeros((s, c_in, H + 2 * r, W + 2 * r), dtype=Y.dtype)
    padded[:, :, r : r + H, r : r + W] = Y.reshape(s, c_in, H, W)
    Z = xp.zeros((s, c_out, H, W), dtype=Y.dtype)
    for a in range(k):
        for b in range(k):
            Z += xp.einsum("oi,siyx->soyx", K[:, :, a, b], padded[:, :, a : a + H, b : b + W])
    return Z.reshape(s, -1)


def _explicit_rows(transform: Any, theta: Any, Y: Any, dtheta: Any, rng: np.random.Generator, tol: float) -> dict:
    K = transform.explicit(theta)
    rows = {}
    if transform.explicit_stacks:  # a stack of three parameter vectors: each result the row's own
        xp = get_array_module(theta)
        thetas, dthetas, gs = (xp.stack([x, *(random_like(x, rng) for _ in range(2))]) for x in (theta, dtheta, K))
        stacked = (transform.explicit(thetas), transform.explicit_jvp(thetas, dthetas),
                   transform.explicit_vjp(thetas, gs))
        one_by_one = (xp.stack([transform.explicit(t) for t in thetas]),
                      xp.stack([transform.explicit_jvp(t, d) for t, d in zip(thetas, dthetas)]),
                      xp.stack([transform.explicit_vjp(t, g) for t, g in zip(thetas, gs)]))
        rows["explicit: stacks = rows"] = agreement(stacked, one_by_one, 1e3 * np.finfo(float).eps)
    return rows | {
        "explicit: apply": agreement(explicit_product(transform, K, Y), transform.apply(theta, Y), tol),
        "explicit: theta": taylor_test(lambda t: transform.explicit(t), theta, dtheta,
                                       transform.explicit_jvp(theta, dtheta)),
        "explicit_jvp/explicit_vjp": dot_test(
            lambda v: transform.explicit_jvp(theta, v), lambda g: transform.explicit_vjp(theta, g), dtheta,
            random_like(K, rng), tol,
        ),
    }


def check_layer(
    layer: Any,
    V: Any = None,
    theta: Any = None,
    c: float = 0.3,
    n_examples: int = 3,
    rng: np.random.Generator | int | None = 0,
    eps0: float = 1e-1,
    min_rate: float = 1.9,
    tol: float = 1e-10,
) -> CheckReport:
    r"""Check a :class:`~ocdl.Layer`'s step :math:`X + c\,\sigma(V K + b)` and its linearisation.

    At ``V`` (default: ``n_examples`` random rows), a random ``X`` and
    ``theta`` (default: the transform's ``init_params`` and a random bias),
    for :math:`K` and, with ``transpose=True``, :math:`K^T`:

    * Taylor tests of :meth:`~ocdl.Layer.step` in :math:`(\theta, V, X)`
      against :meth:`~ocdl.Layer.step_jvp` (rate at least ``min_rate``);
    * the dot test of ``step_jvp`` against :meth:`~ocdl.Layer.step_vjp`
      (the cotangent of ``X`` is ``lam`` itself);
    * ``step_vjp`` with ``lam_V`` against ``lam_V`` plus the one without,
      ``step_jvp`` with ``dX`` likewise, ``step`` with ``X = None`` against
      ``step`` less ``X``, and ``derivative=False`` against the full step;
    * each row stepping alone: ``step`` on two halves of the rows.
    """
    transform = layer.transform
    n_examples = check_positive("n_examples", n_examples, integer=True)
    if V is not None:
        sample("V", V, transform.n_in)
    if not (np.isfinite(c) and c != 0):  # c = 0: the step is X alone, its tests pass whatever the layer does
        raise ValueError(f"c must be a finite number other than 0, got {c!r}")
    rng = random_generator("rng", rng)
    xp = get_array_module(V, theta)
    dtype = np.float64 if V is None else V.dtype
    V = xp.asarray(rng.standard_normal((n_examples, transform.n_in))) if V is None else as_dtype(V, np.float64)
    if theta is None:
        theta_K = transform.init_params(rng, dtype=np.float64)
        theta = xp.asarray(np.concatenate([theta_K, 0.5 * rng.standard_normal(1)]))
    theta = as_dtype(theta, np.float64)
    eps = float(np.finfo(np.float64).eps)
    results: dict = {}
    V_T = random_like(xp.zeros((V.shape[0], transform.n_out)), rng)  # the rows K^T acts on
    for transpose, V_ in ((False, V), (True, V_T)):
        label = "transpose " if transpose else ""
        X = random_like(V_T if not transpose else V, rng)
        out, D = layer.step(theta, V_, X, c, transpose)
        dtheta, dV, dX = random_like((theta, V_, X), rng)
        lam = random_like(out, rng)

        def stepped(x, transpose=transpose):
            return layer.step(x[0], x[1], x[2], c, transpose)[0]

        def tangent(v, V_=V_, D=D, transpose=transpose):
            return layer.step_jvp(theta, V_, D, v[1], v[0], v[2], transpose)

        def adjoint(w, V_=V_, D=D, transpose=transpose):
            gV, gtheta = layer.step_vjp(theta, V_, D, w, None, transpose)
            return gtheta, gV, w

        results[f"{label}step"] = taylor_test(
            stepped, (theta, V_, X), (dtheta, dV, dX), tangent((dtheta, dV, dX)), eps0=eps0, min_rate=min_rate
        )
        results[f"{label}step_jvp/step_vjp"] = dot_test(tangent, adjoint, (dtheta, dV, dX), lam, tol)
        results[f"{label}step_vjp + lam_V"] = agreement(
            layer.step_vjp(theta, V_, D, lam, dV, transpose), (dV + adjoint(lam)[1], adjoint(lam)[0]), 100 * eps
        )
        results[f"{label}step_jvp + dX"] = agreement(
            tangent((dtheta, dV, dX)), dX + layer.step_jvp(theta, V_, D, dV, dtheta, None, transpose), 100 * eps
        )
        results[f"{label}step, X = None"] = agreement(
            layer.step(theta, V_, None, c, transpose), (out - X, D), 100 * eps
        )
        results[f"{label}step value only"] = agreement(
            layer.step(theta, V_, X, c, transpose, derivative=False)[0], out, 100 * eps
        )
        if V.shape[0] >= 2:
            results[f"{label}rows step alone"] = rows_alone(
                lambda x, transpose=transpose: layer.step(theta, x[0], x[1], c, transpose),
                (V_, X), (out, D), 100 * eps,
            )
    X = random_like(V_T, rng)
    maps = {
        "step": lambda t, v, x, dv, lam: layer.step(t, v, x, c),
        "step_jvp": lambda t, v, x, dv, lam: layer.step_jvp(t, v, layer.step(t, v, x, c)[1], dv, t, x),
        "step_vjp": lambda t, v, x, dv, lam: layer.step_vjp(t, v, layer.step(t, v, x, c)[1], lam, dv),
    }
    notes = precision_rows(results, dtype, maps, (theta, V, X, random_like(V, rng), random_like(X, rng)))
    return CheckReport(f"check_layer({layer!r})", results, notes + kink_notes(layer.activation))


def check_activation(
    activation: Any, x: Any = None, rng: np.random.Generator | int | None = 0, eps0: float = 1e-2
) -> CheckReport:
    r"""Check an :class:`~ocdl.activations.Activation`: :math:`\sigma'` against :math:`\sigma`.

    At ``x`` (default: 64 standard normal numbers):

    * the Taylor test of :math:`\sigma` along a random direction against
      :math:`\sigma'(x) \odot v` (entry by entry, so ``eps0`` is small);
    * ``value_and_derivative`` against ``__call__`` and ``derivative``;
    * the fused step kernel :math:`X + c\,\sigma(z + b)`, :math:`c\,\sigma'(z + b)`
      (``_axpy_into``, which the layers' steps use) against the formula.
    """
    if x is not None:
        sample("x", x)
    rng = random_generator("rng", rng)
    dtype = np.float64 if x is None else x.dtype
    x = rng.standard_normal(64) if x is None else as_dtype(x, np.float64)
    xp = get_array_module(x)
    v = random_like(x, rng)
    value, derivative = activation.value_and_derivative(x)
    results: dict = {
        "derivative": taylor_test(activation, x, v, derivative * v, eps0=eps0),
        "value_and_derivative": agreement(
            (value, derivative), (activation(x), activation.derivative(x)), 100 * np.finfo(float).eps
        ),
    }
    b, c, X = 0.3, -0.7, random_like(x, rng)
    out, d_out = xp.empty_like(x), xp.empty_like(x)
    activation._axpy_into(x, b, c, X, out, d_out)
    shifted = activation.value_and_derivative(x + b)
    results["fused step"] = agreement((out, d_out), (X + c * shifted[0], c * shifted[1]), 100 * np.finfo(float).eps)
    notes = precision_rows(results, dtype, {"value_and_derivative": activation.value_and_derivative}, (x,))
    return CheckReport(f"check_activation({activation!r})", results, notes + kink_notes(activation))


def check_objective(
    objective: Any, YN: Any, W: Any, mu: Any, C: Any, rng: np.random.Generator | int | None = 0, tol: float = 1e-10
) -> CheckReport:
    r"""Check an :class:`~ocdl.objectives.Objective` at :math:`(Y_N, W, \mu)` with targets ``C``.

    ``C`` is the ``(s, m)`` target matrix or the class labels
    (:meth:`~ocdl.objectives.Objective.prepare_labels` encodes them, with as
    many classes as ``W``'s columns encode). Runs:

    * Taylor tests of ``value`` against ``gradient``, in :math:`Y_N` and in
      :math:`(W, \mu)`;
    * Taylor tests of ``gradient`` against ``hessian_Y`` and ``hessian_W``;
    * the dot tests of both Hessians against themselves (symmetry);
    * ``value_and_gradient`` against ``value`` and ``gradient``;
      ``value_and_gradient_W`` and ``hessian_W`` from its logits against
      them and ``hessian_W``;
    * for float32 data, ``value``, ``gradient``, ``hessian_Y`` and ``hessian_W``
      computed in float32 against float64 (``float32: ...`` rows: float32
      results within ``1e3`` float32 epsilons); the tests above run in float64.
    """
    rng = random_generator("rng", rng)
    dtype = YN.dtype
    if C.ndim == 1:  # labels: as many classes as W's m columns encode
        m = W.shape[1]
        n_classes = next((n for n in range(2, m + 2) if objective.n_outputs(n) == m), None)
        if n_classes is None:
            raise ValueError(f"C: {objective!r} encodes no number of classes in m = {m} columns; pass the "
                             "(s, m) target matrix")
        C = objective.prepare_labels(C, n_classes, dtype=np.float64)
    YN, W, mu, C = as_dtype((YN, W, mu, C), np.float64)
    dY, dW, dmu = objective.gradient(YN, W, mu, C)
    vY, vWmu = random_like(YN, rng), random_like((W, mu), rng)

    def HY(d):
        return objective.hessian_Y(YN, W, mu, C, d)

    def HW(d):
        return objective.hessian_W(YN, W, mu, C, *d)

    value, gradient = objective.value_and_gradient(YN, W, mu, C)
    value_W, gradient_W, Z = objective.value_and_gradient_W(YN, W, mu, C)
    results: dict = {
        "gradient: YN": taylor_test(lambda y: objective.value(y, W, mu, C), YN, vY, inner(dY, vY)),
        "gradient: W, mu": taylor_test(
            lambda x: objective.value(YN, x[0], x[1], C), (W, mu), vWmu, inner((dW, dmu), vWmu)
        ),
        "hessian_Y": taylor_test(lambda y: objective.gradient(y, W, mu, C)[0], YN, vY, HY(vY)),
        "hessian_W": taylor_test(lambda x: objective.gradient(YN, x[0], x[1], C)[1:], (W, mu), vWmu, HW(vWmu)),
        "hessian_Y symmetric": dot_test(HY, HY, random_like(YN, rng), random_like(YN, rng), tol),
        "hessian_W symmetric": dot_test(HW, HW, random_like((W, mu), rng), random_like((W, mu), rng), tol),
        "value_and_gradient": agreement(
            (value, *gradient), (objective.value(YN, W, mu, C), dY, dW, dmu),
            100 * np.finfo(float).eps,
        ),
        "value_and_gradient_W": agreement(
            (value_W, *gradient_W, *objective.hessian_W(YN, W, mu, C, *vWmu, logits=Z)),
            (value, dW, dmu, *HW(vWmu)),
            100 * np.finfo(float).eps,
        ),
    }
    maps = {  # at (YN, W, mu, C) along the directions (vY, vW, vmu)
        "value": lambda Y, W, mu, C, *_: objective.value(Y, W, mu, C),
        "gradient": lambda Y, W, mu, C, *_: objective.gradient(Y, W, mu, C),
        "hessian_Y": lambda Y, W, mu, C, vY, *_: objective.hessian_Y(Y, W, mu, C, vY),
        "hessian_W": lambda Y, W, mu, C, _, vW, vmu: objective.hessian_W(Y, W, mu, C, vW, vmu),
    }
    notes = precision_rows(results, dtype, maps, (YN, W, mu, C, vY, *vWmu))
    return CheckReport(f"check_objective({describe(objective)})", results, notes)


def check_regularizer(
    regularizer: Any, x: Any, rng: np.random.Generator | int | None = 0, tol: float = 1e-10
) -> CheckReport:
    r"""Check a :class:`~ocdl.regularizers.Regularizer` :math:`R(x) = \frac12 x^T H x` at ``x``.

    * Taylor tests of ``value`` against ``gradient`` and of ``gradient``
      against ``hessian_matvec``;
    * the dot test of ``hessian_matvec`` against itself (symmetry);
    * ``precondition`` solves :math:`(H + \sigma I) z = r` for the shifts
      :data:`PRECONDITION_SHIFTS` (relative residual at most ``1e-8``);
    * for a float32 ``x``, ``value``, ``gradient``, ``hessian_matvec`` and ``precondition``
      computed in float32 against float64 (``float32: ...`` rows); the tests above run in float64.
    """
    sample("x", x)
    rng = random_generator("rng", rng)
    dtype = x.dtype
    x = as_dtype(x, np.float64)
    v = random_like(x, rng)
    results: dict = {
        "gradient": taylor_test(regularizer.value, x, v, inner(regularizer.gradient(x), v)),
        "hessian_matvec": taylor_test(regularizer.gradient, x, v, regularizer.hessian_matvec(v)),
        "hessian symmetric": dot_test(
            regularizer.hessian_matvec, regularizer.hessian_matvec, random_like(x, rng), random_like(x, rng), tol
        ),
    }
    r = random_like(x, rng)
    for shift in PRECONDITION_SHIFTS:
        z = regularizer.precondition(r, shift)
        results[f"precondition, shift {shift:g}"] = agreement(regularizer.hessian_matvec(z) + shift * z, r, 1e-8)
    maps = {
        "value": regularizer.value,
        "gradient": regularizer.gradient,
        "hessian_matvec": regularizer.hessian_matvec,
        "precondition": lambda y: regularizer.precondition(y, 1.0),
    }
    notes = precision_rows(results, dtype, maps, (x,))
    return CheckReport(f"check_regularizer({describe(regularizer)})", results, notes)
