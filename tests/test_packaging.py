"""One top-level import name, ``ocdl``: the folders solvers/ and problems/ install as ocdl.solvers, ocdl.problems."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a clean copy: an in-tree build would reuse a stale build/ folder (deleted or unlisted modules)
    source = tmp_path_factory.mktemp("source") / "ocdl"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(out), str(source)],
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



def test_wheel_has_every_subpackage_and_no_stale_module(wheel):
    """Each folder with an ``__init__.py`` (the explicit list in pyproject.toml) is in the wheel, and
    each module of the wheel is a file of the source tree."""
    names = set(zipfile.ZipFile(wheel).namelist())
    folders = {"ocdl/solvers": ROOT / "solvers", "ocdl/problems": ROOT / "problems", "ocdl": ROOT / "ocdl"}
    for prefix, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                assert f"{prefix}/{init.relative_to(folder).as_posix()}" in names
    for name in names:
        if name.endswith(".py"):
            prefix = next(p for p in folders if name.startswith(p + "/"))
            assert (folders[prefix] / name[len(prefix) + 1 :]).is_file(), name

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
