"""One top-level import name, ``ocdl``: the folders solvers/ and problems/ install as ocdl.solvers, ocdl.problems."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(out), str(ROOT)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{proc.stderr[-2000:]}")
    (path,) = out.glob("ocdl-*.whl")
    return path


def test_wheel_has_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"ocdl"}
    for module in ("ocdl/solvers/__init__.py", "ocdl/solvers/multilevel.py", "ocdl/problems/__init__.py",
                   "ocdl/problems/mnist.py"):
        assert module in names
    top_level = [n for n in names if n.endswith("top_level.txt")]
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level[0]).decode().split() == ["ocdl"]


def test_installed_names_from_any_folder(tmp_path):
    """From a folder outside the repository, ocdl.solvers and ocdl.problems import; bare solvers/problems do not."""
    code = (
        "import importlib.util, ocdl.solvers, ocdl.problems;"
        "print(importlib.util.find_spec('solvers') is None, importlib.util.find_spec('problems') is None)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "True"]


def test_problems_do_not_import_solvers():
    """Problems return arrays and know nothing of the solvers (the layer contract, checked by source too)."""
    code = (
        "import sys, ocdl.problems, ocdl.problems.heat_inverse;"
        "print(any(m.startswith('ocdl.solvers') for m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
