"""The README's "Define your own dynamics" examples run as they stand.

The code is every ```python block of the section under the heading
``## Define your own dynamics`` in ``README.md``, each run as a script.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Define your own dynamics"
README = ROOT / "README.md"


def section_blocks(markdown: str, heading: str = HEADING) -> list[str] | None:
    """The ```python blocks between ``heading`` and the next heading of level 1 or 2, in order.

    ``None`` if the heading is missing; ``[]`` if its section has no python block.
    """
    lines = markdown.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    if not starts:
        return None
    blocks, code, inside = [], [], False
    for line in lines[starts[0] + 1 :]:
        if not inside and line.startswith(("# ", "## ")):
            break
        if not inside and line.strip() == "```python":
            inside, code = True, []
        elif inside and line.strip() == "```":
            blocks.append("\n".join(code) + "\n")
            inside = False
        elif inside:
            code.append(line)
    return blocks


def test_section_blocks_takes_the_python_blocks_of_the_section():
    markdown = "\n".join([
        "# ocdl", "```python", "print('not this')", "```",
        HEADING, "text", "```bash", "pip install ocdl", "```", "```python", "x = 1", "print(x)", "```",
        "```python", "print('this too')", "```", "## Next", "```python", "y = 2", "```",
    ])
    assert section_blocks(markdown) == ["x = 1\nprint(x)\n", "print('this too')\n"]
    assert section_blocks("# ocdl\n## Other\n") is None
    assert section_blocks(HEADING + "\nno code\n## Next\n```python\nz = 3\n```\n") == []


BLOCKS = section_blocks(README.read_text(encoding="utf-8")) or []


def test_the_section_has_its_examples():
    assert len(BLOCKS) >= 2, f"README.md has fewer than two ```python blocks under {HEADING!r}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_define_your_own_dynamics_example_runs(index, tmp_path):
    script = tmp_path / f"own_dynamics_{index}.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"the README example failed:\n{run.stdout}\n{run.stderr}"
    assert "check_stepper(" in run.stdout and "passed" in run.stdout, run.stdout
