"""Transforms and activations: Taylor tests, dot tests, independent formulas."""

import numpy as np
import pytest

import ocdl
from ocdl.checks import DotResult, TaylorResult, dot_test

TRANSFORMS = {
    "dense": lambda: ocdl.Dense(4, 4),
    "dense-rect": lambda: ocdl.Dense(4, 3),
    "antisymmetric": lambda: ocdl.Antisymmetric(ocdl.Dense(4), gamma=0.3),
    "negative-definite": lambda: ocdl.NegativeDefinite(ocdl.Dense(3, 4), gamma=0.1),
    "conv2d": lambda: ocdl.Conv2d(2, 3, 4, 5),
    "conv2d-antisymmetric": lambda: ocdl.Antisymmetric(ocdl.Conv2d(2, 2, 4, 3)),
}


@pytest.fixture(params=sorted(TRANSFORMS))
def transform(request):
    return TRANSFORMS[request.param]()


def test_check_transform(transform, rng):
    """Every derivative and adjoint of the transform (ocdl.check_transform), in float64 and float32."""
    report = ocdl.check_transform(transform, rng.standard_normal((3, transform.n_in)))
    assert report.passed, str(report)
    report = ocdl.check_transform(transform, rng.standard_normal((3, transform.n_in)).astype(np.float32))
    assert report.passed, str(report)


@pytest.mark.parametrize("activation", ["tanh", "smoothrelu", "identity"])
def test_check_layer(transform, activation, rng):
    """The layer's public step, its tangent and its transpose (ocdl.check_layer): Taylor rate >= 1.9,
    dot tests <= 1e-10, for K and K^T, in float64 and (against float64) in float32."""
    layer = ocdl.Layer(transform, activation)
    report = ocdl.check_layer(layer, rng.standard_normal((3, transform.n_in)), rng=rng)
    assert report.passed, str(report)
    taylor = [r for r in report.results.values() if isinstance(r, TaylorResult)]
    dots = [r for r in report.results.values() if isinstance(r, DotResult)]
    assert len(taylor) == len(dots) == 2  # K and K^T
    assert all(r.rate1 >= 1.9 for r in taylor) and all(r.tol <= 1e-10 and r.passed for r in dots)
    report = ocdl.check_layer(layer, rng.standard_normal((3, transform.n_in)).astype(np.float32), rng=rng)
    assert report.passed and "float32: step_vjp" in report.results, str(report)


@pytest.mark.parametrize("c_in, c_out", [(2, 2), (2, 3), (3, 1)])
@pytest.mark.parametrize("transpose", [False, True])
def test_conv2d_fused_products_equal_the_separate_ones(c_in, c_out, transpose, rng):
    """Conv2d's one-stack tangent and cotangent equal the sums and pairs of apply, jvp and vjp
    (the Transform defaults), on a batch of several blocks of images run on threads."""
    conv = ocdl.Conv2d(c_in, c_out, 28, 28)
    theta, dtheta = conv.init_params(rng), rng.standard_normal(conv.n_params)
    n_from, n_to = (conv.n_out, conv.n_in) if transpose else (conv.n_in, conv.n_out)
    Y, dY, W = (rng.standard_normal((200, n)) for n in (n_from, n_from, n_to))
    np.testing.assert_allclose(conv.tangent(theta, Y, dY, dtheta, transpose),
                               ocdl.Transform.tangent(conv, theta, Y, dY, dtheta, transpose), rtol=1e-12, atol=1e-12)
    if c_in == c_out and not transpose:  # a ResNet step: its product streamed block by block into tanh
        (Y1,) = ocdl.ResNet(ocdl.Layer(conv, "tanh")).advance((Y,), np.append(theta, 0.3), 0.1)
        np.testing.assert_allclose(Y1, Y + 0.1 * np.tanh(conv.apply(theta, Y) + 0.3), rtol=1e-13, atol=1e-13)
    out = np.zeros((2 * Y.shape[0], n_to))[::2]  # a strided target is filled too
    assert conv.tangent(theta, Y, dY, dtheta, transpose, out=out) is out
    np.testing.assert_allclose(out, conv.tangent(theta, Y, dY, dtheta, transpose), rtol=1e-15, atol=0)
    for fused, separate in zip(conv.cotangent(theta, Y, W, transpose),
                               ocdl.Transform.cotangent(conv, theta, Y, W, transpose), strict=True):
        np.testing.assert_allclose(fused, separate, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("base", [lambda: ocdl.Dense(5), lambda: ocdl.Conv2d(3, 3, 6, 5),
                                  lambda: ocdl.Conv2d(2, 2, 6, 5), lambda: ocdl.Conv2d(4, 4, 5, 6, kernel_size=5)],
                         ids=["dense", "conv2d", "conv2d-2-channels", "conv2d-4-channels-5x5"])  # c != k as well
@pytest.mark.parametrize("gamma", [0.0, 0.4])
def test_antisymmetric_products_equal_those_of_the_base_and_its_transpose(base, gamma, rng):
    """Antisymmetric runs each product as one product of its base with the stencil or matrix S(theta); they
    equal eq. (4.12)'s K = (B - B^T - gamma I) / 2 written with the base's own products of B and B^T."""
    B = base()
    A = ocdl.Antisymmetric(B, gamma)
    theta, dtheta = rng.standard_normal(A.n_params), rng.standard_normal(A.n_params)
    Y, dY, lam = (rng.standard_normal((7, A.n_in)) for _ in range(3))

    def K(t, X, g=gamma):  # X K(t), and X K(t)^T = -X K(t) - g X
        return 0.5 * (B.apply(t, X) - B.apply_transpose(t, X) - g * X)

    def grad(X, L):  # grad_t <X K(t), L>
        return 0.5 * (B.vjp(theta, X, L) - B.vjp(theta, L, X))

    close = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(A.apply(theta, Y), K(theta, Y), **close)
    np.testing.assert_allclose(A.apply_transpose(theta, Y), -K(theta, Y) - gamma * Y, **close)
    np.testing.assert_allclose(A.jvp(theta, Y, dtheta), K(dtheta, Y, 0.0), **close)
    np.testing.assert_allclose(A.vjp(theta, Y, lam), grad(Y, lam), **close)
    np.testing.assert_allclose(A.tangent(theta, Y, dY, dtheta), K(theta, dY) + K(dtheta, Y, 0.0), **close)
    np.testing.assert_allclose(A.tangent(theta, Y, dY, dtheta, transpose=True),
                               -K(theta, dY) - gamma * dY - K(dtheta, Y, 0.0), **close)
    for got, want in zip(A.cotangent(theta, Y, lam), (-K(theta, lam) - gamma * lam, grad(Y, lam)), strict=True):
        np.testing.assert_allclose(got, want, **close)
    for got, want in zip(A.cotangent(theta, Y, lam, transpose=True), (K(theta, lam), grad(lam, Y)), strict=True):
        np.testing.assert_allclose(got, want, **close)
    blocks = []
    A._apply_blocks(theta, Y, lambda rows, Z: blocks.append(np.array(Z)), transpose=True)
    np.testing.assert_allclose(np.concatenate(blocks), -K(theta, Y) - gamma * Y, **close)


class MatrixSquare(ocdl.Transform):
    """A user's transform nonlinear in theta, K(theta) = M M with M = theta as an n x n matrix."""

    linear_in_params = False

    def __init__(self, n):
        self.n_in = self.n_out = n
        self.n_params, self.param_shape = n * n, (n, n)

    def apply(self, theta, Y):
        M = theta.reshape(self.param_shape)
        return Y @ M @ M

    def apply_transpose(self, theta, Z):
        M = theta.reshape(self.param_shape)
        return Z @ M.T @ M.T

    def jvp(self, theta, Y, dtheta):
        M, dM = theta.reshape(self.param_shape), dtheta.reshape(self.param_shape)
        return Y @ (dM @ M + M @ dM)

    def transpose_jvp(self, theta, Z, dtheta):
        M, dM = theta.reshape(self.param_shape), dtheta.reshape(self.param_shape)
        return Z @ (dM @ M + M @ dM).T

    def vjp(self, theta, Y, lam):
        M, G = theta.reshape(self.param_shape), Y.T @ lam
        return (G @ M.T + M.T @ G).ravel()

    def init_params(self, rng, scale=1.0, dtype=np.float64):
        return (scale * rng.standard_normal(self.n_params)).astype(dtype)


@pytest.mark.parametrize("make", [
    lambda: MatrixSquare(3),
    lambda: ocdl.Antisymmetric(MatrixSquare(3)),
    lambda: ocdl.NegativeDefinite(MatrixSquare(3)),
    lambda: ocdl.NegativeDefinite(ocdl.Antisymmetric(ocdl.Dense(3), gamma=0.3)),
    lambda: ocdl.NegativeDefinite(ocdl.NegativeDefinite(ocdl.Dense(3))),
], ids=["square", "antisymmetric-of-square", "negative-definite-of-square", "negative-definite-of-affine",
        "negative-definite-of-quadratic"])
def test_transforms_built_on_a_base_not_linear_in_theta(make, rng):
    """Antisymmetric and NegativeDefinite took the base's derivative as C(dtheta), true of a base linear in
    theta only: their jvp was off by 3% (an affine base) to 170% (a quadratic one) while their vjp was right."""
    transform = make()
    report = ocdl.check_transform(transform, rng.standard_normal((4, 3)))
    assert report.passed, str(report)
    theta, dtheta, Y = rng.standard_normal(transform.n_params), rng.standard_normal(transform.n_params), \
        rng.standard_normal((4, 3))
    eps = 1e-5  # central differences of apply, an independent computation: error O(eps^2)
    fd = (transform.apply(theta + eps * dtheta, Y) - transform.apply(theta - eps * dtheta, Y)) / (2 * eps)
    np.testing.assert_allclose(transform.jvp(theta, Y, dtheta), fd, rtol=1e-7, atol=1e-8 * np.abs(fd).max())


def test_linear_in_params_says_what_k_is():
    assert ocdl.Antisymmetric(ocdl.Dense(3)).linear_in_params
    assert not ocdl.Antisymmetric(ocdl.Dense(3), gamma=0.1).linear_in_params  # affine
    assert not ocdl.Antisymmetric(MatrixSquare(3)).linear_in_params
    assert not ocdl.NegativeDefinite(ocdl.Dense(3)).linear_in_params


def test_dense_family_matrices(rng):
    B = rng.standard_normal((4, 4))
    Y = rng.standard_normal((5, 4))
    A = ocdl.Antisymmetric(ocdl.Dense(4), gamma=0.5)
    K = 0.5 * (B - B.T - 0.5 * np.eye(4))
    np.testing.assert_allclose(A.apply(B.ravel(), Y), Y @ K, rtol=1e-12, atol=1e-13)
    eig = np.linalg.eigvals(A.matrix(B.ravel()))
    np.testing.assert_allclose(eig.real, -0.25, atol=1e-12)  # real parts -gamma/2
    C = rng.standard_normal((3, 4))
    N = ocdl.NegativeDefinite(ocdl.Dense(3, 4))
    np.testing.assert_allclose(N.apply(C.ravel(), Y), -Y @ C.T @ C, rtol=1e-12, atol=1e-13)
    assert np.linalg.eigvalsh(N.matrix(C.ravel())).max() <= 1e-12


def test_conv2d_against_direct_loops(rng):
    c_in, c_out, H, W = 2, 3, 4, 5
    conv = ocdl.Conv2d(c_in, c_out, H, W)
    kernel = rng.standard_normal((c_out, c_in, 3, 3))
    Y = rng.standard_normal((2, c_in * H * W))
    images = np.pad(Y.reshape(2, c_in, H, W), ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, c_out, H, W))
    for s in range(2):
        for o in range(c_out):
            for y in range(H):
                for x in range(W):
                    expected[s, o, y, x] = np.sum(kernel[o] * images[s, :, y : y + 3, x : x + 3])
    np.testing.assert_allclose(conv.apply(kernel.ravel(), Y), expected.reshape(2, -1), rtol=1e-12, atol=1e-13)
    # the exact transpose: K^T as a dense matrix equals the dense K transposed
    K = conv.matrix(kernel.ravel())
    Kt = conv.apply_transpose(kernel.ravel(), np.eye(conv.n_out))
    np.testing.assert_allclose(Kt, K.T, atol=1e-14)


@pytest.mark.parametrize(
    "c_in, c_out, H, W, k, s",
    [
        (2, 3, 4, 5, 1, 3),
        (2, 3, 4, 5, 5, 3),
        (1, 2, 3, 1, 3, 2),  # one pixel across: every horizontal neighbour is padding
        (2, 1, 2, 2, 5, 2),  # stencil wider than the image
        (2, 2, 28, 28, 3, 200),  # several blocks of images, a partial last one, on threads
    ],
)
def test_conv2d_against_scipy(c_in, c_out, H, W, k, s, rng):
    """apply = sum over input channels of scipy's zero-padded 2-D correlation; transpose and
    parameter gradient are the adjoints of apply on the same (multi-block) batch."""
    from scipy.signal import correlate

    conv = ocdl.Conv2d(c_in, c_out, H, W, kernel_size=k)
    kernel = rng.standard_normal((c_out, c_in, k, k))
    Y = rng.standard_normal((s, c_in * H * W))
    Z = rng.standard_normal((s, c_out * H * W))
    images = Y.reshape(s, c_in, H, W)
    expected = np.array([
        [sum(correlate(images[n, i], kernel[o, i], mode="same", method="direct") for i in range(c_in))
         for o in range(c_out)]
        for n in range(s)
    ])
    np.testing.assert_allclose(conv.apply(kernel.ravel(), Y), expected.reshape(s, -1), rtol=1e-12, atol=1e-12)
    r = dot_test(lambda v: conv.apply(kernel.ravel(), v), lambda w: conv.apply_transpose(kernel.ravel(), w), Y, Z)
    assert r.rel_error <= 1e-10, r
    # the map is linear in theta: gradient entry j is <Z, apply(e_j, Y)>
    gradient = [np.vdot(Z, conv.apply(e, Y)) for e in np.eye(conv.n_params)]
    np.testing.assert_allclose(conv.vjp(kernel.ravel(), Y, Z), gradient, rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("name", sorted(ocdl.activations.ACTIVATIONS))
def test_activation_derivatives(name, rng):
    act = ocdl.get_activation(name)
    x = rng.standard_normal(50) + 0.5  # away from 0 where relu has its kink
    x[np.abs(x) < 0.2] += 0.5
    report = ocdl.check_activation(act, x)
    assert report.passed, str(report)
    h = 1e-6
    np.testing.assert_allclose(act.derivative(x), (act(x + h) - act(x - h)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_activation_errors():
    with pytest.raises(ValueError, match="activation must be"):
        ocdl.get_activation("sigmoidal")
    with pytest.raises(ValueError, match="eta"):
        ocdl.SmoothReLU(eta=0)


def test_transform_errors():
    with pytest.raises(ValueError, match="square"):
        ocdl.Antisymmetric(ocdl.Dense(3, 4))
    with pytest.raises(ValueError, match="kernel_size"):
        ocdl.Conv2d(1, 1, 4, 4, kernel_size=2)
    with pytest.raises(ValueError, match="n_in must be an integer >= 1"):
        ocdl.Dense(0, 3)


def test_conv2d_is_pure_across_geometries(rng):
    """Two geometries whose padded work arrays have one shape (4 x 6 and 7 x 4 images, 3 x 3
    stencils: 38 numbers) must not share them: one's pixels would sit in the other's zero pads."""
    A, B = ocdl.Conv2d(1, 1, 4, 6), ocdl.Conv2d(1, 1, 7, 4)
    theta_A, theta_B = A.init_params(rng), B.init_params(rng)
    Y_A, Y_B = rng.standard_normal((2, A.n_in)), rng.standard_normal((2, B.n_in))
    before = A.apply(theta_A, Y_A)
    B.apply(theta_B, 100 * Y_B)
    np.testing.assert_array_equal(A.apply(theta_A, Y_A), before)
    Z_B = rng.standard_normal((2, B.n_out))
    before = B.apply_transpose(theta_B, Z_B)
    A.apply_transpose(theta_A, 100 * rng.standard_normal((2, A.n_out)))
    np.testing.assert_array_equal(B.apply_transpose(theta_B, Z_B), before)
