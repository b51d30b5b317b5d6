"""CuPy path: derivative checks on the GPU and GPU-vs-CPU agreement.

Skipped, with the reason, where CuPy or a CUDA device is absent (CI on CPU).
"""

import numpy as np
import pytest

import ocdl
from ocdl.backend import asnumpy, cupy_available, to_device

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device"),
]

KINDS_AND_TRANSFORMS = [
    (name, lambda kind=kind: kind.build(ocdl.Dense(4, 3 if kind.rectangular else 4), "tanh"))
    for name, kind in ocdl.KINDS.items()
] + [("conv-resnet", lambda: ocdl.ResNet(ocdl.Layer(ocdl.Conv2d(2, 2, 4, 4), "tanh")))]


@pytest.mark.parametrize("name,make", KINDS_AND_TRANSFORMS)
def test_check_stepper_on_gpu_float64(name, make):
    stepper = make()
    rng = np.random.default_rng(0)
    Y0 = to_device(rng.standard_normal((5, stepper.n_features)), "gpu")
    report = ocdl.check_stepper(stepper, Y0, rng=rng)
    assert report.passed, str(report)


@pytest.mark.parametrize("name,make", KINDS_AND_TRANSFORMS)
def test_gpu_matches_cpu(name, make):
    stepper = make()
    rng = np.random.default_rng(1)
    net = ocdl.Network(stepper, 5, 1.0)
    theta = net.init_params(rng)
    Y0 = rng.standard_normal((6, stepper.n_features))
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-4)):
        t, Y = theta.astype(dtype), Y0.astype(dtype)
        tg, Yg = to_device(t, "gpu"), to_device(Y, "gpu")
        YN, YNg = net.forward(t, Y), net.forward(tg, Yg)
        assert ocdl.get_array_module(YNg) is not np and YNg.dtype == dtype
        np.testing.assert_allclose(asnumpy(YNg), YN, rtol=rtol, atol=rtol)
        g, gg = net.vjp(t, Y, YN), net.vjp(tg, Yg, YNg)
        np.testing.assert_allclose(asnumpy(gg), g, rtol=rtol, atol=rtol)
