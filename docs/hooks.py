"""MkDocs hooks of ocdl's documentation site (``hooks:`` in ``mkdocs.yml``).

* The folders ``solvers/`` and ``problems/`` are installed as ``ocdl.solvers`` and
  ``ocdl.problems`` (``package-dir`` in ``pyproject.toml``). Griffe reads the sources
  from folders, so the site is built from a temporary ``ocdl`` folder of links that
  puts them where the installed package has them.
* The figures the pages show live beside the code that draws them
  (``examples/figures``, ``benchmarks/results``); they are added to the site under
  the same paths, so a page links them as the README does.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
MAPPED = ("ocdl.solvers", "ocdl.problems")
"""Subpackages installed from a folder outside ``ocdl/``."""
FIGURES = ("examples/figures", "benchmarks/results")
"""Folders whose ``.png`` files the pages show."""

_sources: Path | None = None


def package_tree(target: Path) -> Path:
    """Under ``target``, an ``ocdl`` folder of links to ``ocdl/*`` and to the mapped subpackages; return ``target``."""
    package = target / "ocdl"
    package.mkdir(parents=True)
    for entry in (ROOT / "ocdl").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in MAPPED:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{name} is not installed; pip install -e '.[docs]' first")
        (package / name.rsplit(".", 1)[1]).symlink_to(Path(spec.submodule_search_locations[0]))
    return target


@event_priority(100)  # before mkdocstrings reads its handler's options
def on_config(config):
    global _sources
    _sources = package_tree(Path(tempfile.mkdtemp(prefix="ocdl-docs-")))
    config.plugins["mkdocstrings"].config["handlers"]["python"]["paths"] = [str(_sources)]
    return config


def on_files(files: Files, config) -> Files:
    for folder in FIGURES:
        for path in sorted((ROOT / folder).glob("*.png")):
            files.append(File(path.relative_to(ROOT).as_posix(), str(ROOT), config.site_dir,
                              config.use_directory_urls))
    return files


def on_shutdown() -> None:
    if _sources is not None:
        shutil.rmtree(_sources, ignore_errors=True)
