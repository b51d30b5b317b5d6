import os

import numpy as np
import pytest

if os.environ.get("OCDL_STANDIN_CUPY"):  # the GPU tests on a CPU stand-in for CuPy (tests/standin_cupy.py)
    import standin_cupy

    standin_cupy.install()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
