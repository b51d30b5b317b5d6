"""The README's "Define your own dynamics" example runs as it stands.

The code is the first ```python block of the section under the heading
``## Define your own dynamics`` in ``README.md``; while README.md lacks that
heading, the draft ``docs/own_dynamics.md`` is tested instead.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Define your own dynamics"
SOURCES = (ROOT / "README.md", ROOT / "docs" / "own_dynamics.md")  # README first: once pasted, it is what runs


def section_code(markdown: str, heading: str = HEADING) -> str | None:
    """The first ```python block between ``heading`` and the next heading of level 1 or 2.

    ``None`` if the heading is missing; ``""`` if its section has no python block.
    """
    lines = markdown.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    if not starts:
        return None
    code, inside = [], False
    for line in lines[starts[0] + 1 :]:
        if not inside and line.startswith(("# ", "## ")):
            break
        if not inside and line.strip() == "```python":
            inside = True
        elif inside and line.strip() == "```":
            return "\n".join(code) + "\n"
        elif inside:
            code.append(line)
    return ""


def example() -> tuple[Path, str]:
    """``(file, code)`` from the first of :data:`SOURCES` that has the heading."""
    for path in SOURCES:
        if path.exists():
            code = section_code(path.read_text(encoding="utf-8"))
            if code is not None:
                return path, code
    raise AssertionError(f"no {HEADING!r} section in {', '.join(str(p) for p in SOURCES)}")


def test_section_code_takes_the_first_python_block_of_the_section():
    markdown = "\n".join([
        "# ocdl", "```python", "print('not this')", "```",
        HEADING, "text", "```bash", "pip install ocdl", "```", "```python", "x = 1", "print(x)", "```",
        "```python", "print('not this either')", "```", "## Next", "```python", "y = 2", "```",
    ])
    assert section_code(markdown) == "x = 1\nprint(x)\n"
    assert section_code("# ocdl\n## Other\n") is None
    assert section_code(HEADING + "\nno code\n## Next\n```python\nz = 3\n```\n") == ""


def test_readme_takes_precedence_over_the_draft(tmp_path, monkeypatch):
    readme, draft = tmp_path / "README.md", tmp_path / "own_dynamics.md"
    draft.write_text(f"{HEADING}\n```python\nprint('draft')\n```\n", encoding="utf-8")
    readme.write_text("# ocdl\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "SOURCES", (readme, draft))
    assert example() == (draft, "print('draft')\n")
    readme.write_text(f"# ocdl\n{HEADING}\n```python\nprint('readme')\n```\n", encoding="utf-8")
    assert example() == (readme, "print('readme')\n")


def test_define_your_own_dynamics_example_runs(tmp_path):
    path, code = example()
    assert code, f"the {HEADING!r} section of {path} has no ```python block"
    script = tmp_path / "own_dynamics.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - start
    assert run.returncode == 0, f"the example in {path} failed:\n{run.stdout}\n{run.stderr}"
    assert "check_stepper(" in run.stdout and "passed" in run.stdout, run.stdout
    assert seconds < 10, f"the example took {seconds:.1f} s (promised: under 10 s)"
