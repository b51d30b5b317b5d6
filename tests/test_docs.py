"""The documentation's code runs as written: every ```python block of the README and of the
documentation's Getting started and Your own dynamics pages (``docs/``), each block a script of its own.

The pages include parts of the README by pymdownx.snippets lines (``--8<-- "README.md:NAME"``,
the lines between ``<!-- --8<-- [start:NAME] -->`` and ``[end:NAME]``); they are expanded
here as the site build expands them. Each block runs in a fresh process in an empty folder.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/getting-started.md", "docs/own-dynamics.md"]
"""Files whose python blocks must run (README.md: the quick start and the core in five lines)."""

_SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')


def expand_snippets(markdown: str, root: Path = ROOT) -> str:
    """``markdown`` with each ``--8<-- "FILE[:NAME | :START[:END]]"`` line replaced by what it includes.

    ``FILE:NAME`` takes the lines between the markers ``[start:NAME]`` and ``[end:NAME]``;
    ``FILE:START:END`` lines START to END (1-based, END optional), as pymdownx.snippets does.
    """
    out = []
    for line in markdown.splitlines():
        match = _SNIPPET.match(line)
        if not match:
            out.append(line)
            continue
        name, *parts = match.group(1).split(":")
        lines = (root / name).read_text(encoding="utf-8").splitlines()
        if parts and not parts[0].isdigit():
            start = next(i for i, text in enumerate(lines) if f"[start:{parts[0]}]" in text)
            end = next(i for i, text in enumerate(lines) if f"[end:{parts[0]}]" in text)
            lines = lines[start + 1 : end]
        elif parts:
            lines = lines[int(parts[0]) - 1 : int(parts[1]) if len(parts) > 1 and parts[1] else None]
        out += lines
    return "\n".join(out) + "\n"


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of ``markdown``, in order."""
    blocks, code, inside = [], [], False
    for line in markdown.splitlines():
        if not inside and line.strip() == "```python":
            inside, code = True, []
        elif inside and line.strip() == "```":
            blocks.append("\n".join(code) + "\n")
            inside = False
        elif inside:
            code.append(line)
    return blocks


def test_snippets_and_blocks_are_found(tmp_path):
    part = ["a", "<!-- --8<-- [start:x] -->", "```python", "x = 1", "```", "<!-- --8<-- [end:x] -->", "b"]
    (tmp_path / "part.md").write_text("\n".join(part) + "\n")
    page = ["# Page", '--8<-- "part.md:x"', "```bash", "ls", "```", "```python", "print(x)", "```",
            '--8<-- "part.md:7"']
    page = expand_snippets("\n".join(page) + "\n", tmp_path)
    assert page == "# Page\n```python\nx = 1\n```\n```bash\nls\n```\n```python\nprint(x)\n```\nb\n"
    assert python_blocks(page) == ["x = 1\n", "print(x)\n"]


BLOCKS = [(page, index, code) for page in PAGES
          for index, code in enumerate(python_blocks(expand_snippets((ROOT / page).read_text(encoding="utf-8"))))]


def test_the_pages_have_their_examples():
    counts = {page: sum(1 for name, *_ in BLOCKS if name == page) for page in PAGES}
    assert counts["README.md"] >= 2 and counts["docs/getting-started.md"] >= 1, counts
    assert counts["docs/own-dynamics.md"] >= 2, counts  # a stepper from scratch, a stepper on a layer


@pytest.mark.parametrize(("page", "index", "code"), BLOCKS, ids=[f"{page}-{index}" for page, index, _ in BLOCKS])
def test_python_block_runs(page, index, code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"python block {index} of {page} failed:\n{run.stdout}\n{run.stderr}"
    if page == "docs/own-dynamics.md":
        assert "check_stepper(" in run.stdout and "passed" in run.stdout, run.stdout


def test_rst_in_docstrings_becomes_markdown():
    pytest.importorskip("griffe")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from rst_roles import to_markdown
    finally:
        sys.path.remove(str(ROOT / "docs"))
    text = "\n".join([
        "Step :math:`h = T/N` of :func:`~ocdl.network`, :class:`ocdl.Network`; ``theta``.",
        "", ".. math::", "", "   x_{j+1} = x_j", "", "Example::", "", "    run()", "",
        "=====  ====", "name   T", "=====  ====", "a      20", "=====  ====", "",
        "Parameters", "----------", "n : :math:`N \\ge 1`.", "m : int", "    Count.", "",
        "Prose after the entries.",
    ])
    assert to_markdown(text).splitlines() == [
        "Step $h = T/N$ of `network`, `ocdl.Network`; `theta`.",
        "", "$$", "x_{j+1} = x_j", "$$", "", "Example:", "", "    run()", "",
        "| name | T |", "|---|---|", "| a | 20 |", "",
        "Parameters", "----------", "n", "    $N \\ge 1$.", "m : int", "    Count.", "",
        "Notes", "-----", "Prose after the entries.",
    ]


def test_no_docstring_holds_a_control_character():
    r"""A backslash that starts a LaTeX command in a docstring that is not raw is a string escape when it is
    ``\t``, ``\b``, ``\f``, ``\a``, ``\v`` or ``\r`` (``:math:`K(\theta)``` holds a tab): the page then shows
    "K( heta)". Every string constant of the package, the tests, examples and benchmarks is read here."""
    import ast

    control = {chr(code) for code in (7, 8, 9, 11, 12, 13)}  # what \a \b \t \v \f \r become
    found = []
    for folder in ("ocdl", "solvers", "problems", "tests", "examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    bad = sorted({repr(c) for c in node.value if c in control})
                    if bad:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {' '.join(bad)}")
    assert not found, "string escapes where a raw string was meant (r\"\"\"...): " + "; ".join(found)
