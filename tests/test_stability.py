"""Tests of :mod:`ocdl.stability`, of its drawings (:mod:`ocdl.experiments.stability_figures`) and of the
Example 1 / 2 scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import ocdl
from ocdl.experiments.stability_figures import phase_plane, plot_eigenvalues
from ocdl.stability import euler_factor, feature_trajectory, layer_jacobian_eigenvalues

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
K_PLUS = np.array([[2.0, -2.0], [0.0, 2.0]])  # paper eq. (3.10), column convention
K_MINUS = np.array([[-2.0, 0.0], [2.0, -2.0]])
K_ZERO = np.array([[0.0, -1.0], [1.0, 0.0]])
FEATURES = np.array([[0.1, 0.1], [-0.1, -0.1], [0.0, 0.5]])


def resnet(K_paper: np.ndarray, n_steps: int = 10, final_time: float = 1.0):
    net = ocdl.network("resnet", K_paper.shape[0], n_steps, final_time)
    return net, net.pack([K_paper.T] * n_steps, [0.0] * n_steps)


def test_eigenvalues_of_K0_at_the_origin_are_plus_minus_i():
    net, theta = resnet(K_ZERO, n_steps=3)
    lam = layer_jacobian_eigenvalues(net, theta, np.zeros((2, 2)))
    assert lam.shape == (3, 2, 2) and np.iscomplexobj(lam)
    np.testing.assert_allclose(np.sort_complex(lam.reshape(-1, 2)), [[-1j, 1j]] * 6, atol=1e-14)


def test_eigenvalues_match_a_direct_computation():
    rng = np.random.default_rng(1)
    n, s, n_steps, h = 3, 4, 5, 0.2
    Ks = [rng.standard_normal((n, n)) for _ in range(n_steps)]
    bs = list(rng.standard_normal(n_steps))
    net = ocdl.network("resnet", n, n_steps, n_steps * h)
    Y = rng.standard_normal((s, n))
    lam = layer_jacobian_eigenvalues(net, net.pack(Ks, bs), Y)
    for j, (K, b) in enumerate(zip(Ks, bs)):
        for i in range(s):
            J = np.diag(1 - np.tanh(Y[i] @ K + b) ** 2) @ K.T  # eq. (3.7), row convention
            np.testing.assert_allclose(np.sort_complex(lam[j, i]), np.sort_complex(np.linalg.eigvals(J)),
                                       rtol=1e-10, atol=1e-12)
        Y = Y + h * np.tanh(Y @ K + b)


def test_eigenvalues_keep_single_precision():
    net, theta = resnet(K_PLUS)
    lam = layer_jacobian_eigenvalues(net, theta.astype(np.float32), FEATURES.astype(np.float32))
    assert lam.dtype == np.complex64


def test_eigenvalues_need_a_square_layer_transform():
    verlet = ocdl.network("verlet", 2, 3, 1.0, hidden_width=3)
    with pytest.raises(ValueError, match="square"):
        layer_jacobian_eigenvalues(verlet, verlet.init_params(), FEATURES)

    class Shift(ocdl.Stepper):
        n_params = 1

        def step(self, state, theta, h):
            return (state[0] + h * theta[0],), None

    net = ocdl.Network(Shift(), 2, 1.0)
    with pytest.raises(TypeError, match="layer"):
        layer_jacobian_eigenvalues(net, np.ones(2), FEATURES)


def test_euler_factor_by_hand():
    assert euler_factor(np.array([-2.0, -2.0]), 0.1) == pytest.approx(0.8)
    assert euler_factor(np.array([2.0, 2.0]), 0.1) == pytest.approx(1.2)
    assert euler_factor(np.array([1j, -1j]), 0.1) == pytest.approx(np.sqrt(1.01))
    per_step = euler_factor(np.array([[[-2.0, -1.0]], [[0.5j, 3.0]]]), 0.5, per_step=True)
    np.testing.assert_allclose(per_step, [0.5, 2.5])
    with pytest.raises(ValueError, match="h"):
        euler_factor(np.array([1.0]), 0.0)


def test_example1_K_plus_grows_and_K_minus_decays():
    growth = {}
    for name, K in (("plus", K_PLUS), ("minus", K_MINUS)):
        net, theta = resnet(K)
        paths = feature_trajectory(net, theta, FEATURES)
        assert paths.shape == (11, 3, 2)
        np.testing.assert_array_equal(paths[0], FEATURES)
        np.testing.assert_allclose(paths[-1], net.forward(theta, FEATURES))
        norms = np.linalg.norm(paths, axis=2)
        growth[name] = norms[-1] / norms[0]
        lam = layer_jacobian_eigenvalues(net, theta, FEATURES)
        np.testing.assert_allclose(lam[0, 0], [2.0 if name == "plus" else -2.0] * 2, atol=0.2)
    assert np.all(growth["plus"] > 2) and np.all(growth["minus"] < 0.5)
    net, theta = resnet(K_MINUS)
    assert euler_factor(layer_jacobian_eigenvalues(net, theta, np.zeros((1, 2))), net.h) == pytest.approx(0.8)


def test_phase_plane_and_plot_eigenvalues_draw():
    net, theta = resnet(K_ZERO)
    ax = Figure().subplots()
    assert phase_plane(ax, net, theta, FEATURES) is ax
    assert len(ax.lines) == 3 * 3  # one path, one start and one end marker per example
    assert len(ax.collections) == 1 and ax.get_legend() is not None  # the quiver field
    lam = layer_jacobian_eigenvalues(net, theta, FEATURES)
    ax = Figure().subplots()
    assert plot_eigenvalues(ax, lam, net.h) is ax
    assert len(ax.patches) == 1
    wide = ocdl.network("resnet", 3, 2, 1.0)
    with pytest.raises(ValueError, match="2 features"):
        phase_plane(Figure().subplots(), wide, wide.init_params(), np.zeros((1, 3)))


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["stability_example1", "stability_example2"])
def test_example_scripts_write_a_png(name, tmp_path, capsys):
    out = tmp_path / "figures" / f"{name}.png"
    assert load_example(name).main(["--out", str(out)]) == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_input_sensitivity_of_euler_on_a_rotation_is_the_closed_form():
    # linear ResNet: Y_N = Y_0 (I + h K)^N; K = K_ZERO^T is normal with eigenvalues +-i, so
    # || dY_N/dY_0 ||_2 = |1 + i h|^N = (1 + h^2)^(N/2) (forward Euler grows on imaginary eigenvalues)
    n_steps, final_time = 8, 4.0
    net = ocdl.network("resnet", 2, n_steps, final_time, activation="identity")
    theta = net.pack([K_ZERO.T] * n_steps, [0.0] * n_steps)
    h = final_time / n_steps
    sensitivity = ocdl.input_sensitivity(net, theta, FEATURES)
    assert sensitivity == pytest.approx((1 + h**2) ** (n_steps / 2), rel=1e-10)


def test_input_sensitivity_matches_the_norm_of_a_finite_difference_jacobian():
    net = ocdl.network("verlet", 3, 6, 2.0)
    theta = net.init_params(rng=1)
    Y0 = np.random.default_rng(2).standard_normal((4, 3))
    eps, columns = 1e-6, []
    for k in range(Y0.size):
        E = np.zeros(Y0.size)
        E[k] = eps
        E = E.reshape(Y0.shape)
        columns.append(((net.forward(theta, Y0 + E) - net.forward(theta, Y0 - E)) / (2 * eps)).ravel())
    expected = np.linalg.norm(np.stack(columns, axis=1), 2)
    assert ocdl.input_sensitivity(net, theta, Y0) == pytest.approx(expected, rel=1e-7)


def test_input_sensitivity_needs_two_entries():
    net = ocdl.network("resnet", 1, 2, 1.0)
    with pytest.raises(ValueError, match="Y0 needs at least 2 entries"):
        ocdl.input_sensitivity(net, net.init_params(rng=0), np.ones((1, 1)))


def test_the_blow_up_diagnosis_prints_a_zero_growth_as_0_not_minus_0(monkeypatch):
    """Eigenvalues with real parts -0.0 (an antisymmetric K's, as LAPACK returns them) read "max Re lambda = -0"."""
    import ocdl.stability as stability

    monkeypatch.setattr(stability, "layer_eigenvalues", lambda layer, theta, Y: np.array([-0.0 + 1j, -0.0 - 1j]))
    layer = ocdl.Layer(ocdl.Dense(2), "identity")
    message = stability.layer_growth_diagnosis(layer, np.zeros(layer.n_params), np.ones((3, 2)), 0.5)
    assert "max Re lambda = 0;" in message and "-0" not in message, message


def _eigenvalues(theta, Y):
    return ocdl.stability.layer_eigenvalues(ocdl.Layer(ocdl.Dense(3)), theta, Y)


@pytest.mark.parametrize("call, error, match", [
    (lambda: ocdl.euler_factor(np.array([1j, np.nan]), 0.1), ValueError, "eigenvalues must be finite"),
    (lambda: ocdl.euler_factor(-1.0, 0.1, per_step=True), ValueError, "first axis of steps"),
    (lambda: ocdl.euler_factor("abc", 0.1), TypeError, "eigenvalues must be an array of numbers"),
    (lambda: ocdl.euler_factor([{}], 0.1), TypeError, "eigenvalues must be an array of numbers"),
    (lambda: _eigenvalues(np.zeros(10), np.ones(3)), ValueError, "Y must"),
    (lambda: _eigenvalues(np.zeros(10), np.ones((2, 4))), ValueError, "Y must"),
    (lambda: _eigenvalues(np.zeros(4), np.ones((2, 3))), ValueError, "theta"),
    (lambda: _eigenvalues(np.zeros(10), [[1.0, 2.0, 3.0]]), TypeError, "Y"),
    (lambda: ocdl.stability.layer_eigenvalues(None, np.zeros(10), np.ones((2, 3))), TypeError, "layer must be an"),
    (lambda: ocdl.input_sensitivity(None, np.zeros(3), np.ones((2, 2))), TypeError, "network must be an ocdl"),
    (lambda: ocdl.layer_jacobian_eigenvalues(None, np.zeros(3), np.ones((2, 2))), TypeError, "network must be an"),
])
def test_stability_tools_name_bad_input(call, error, match):
    """A NaN eigenvalue gave a NaN factor, which a test '<= 1' passes as stable; a 1-D Y gave one row per entry;
    the rest gave NumPy's messages (a reshape, a matmul, 'tuple index out of range')."""
    with pytest.raises(error, match=match):
        call()
