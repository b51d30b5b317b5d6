"""The README's "Define your own dynamics" example runs as it stands.

The code is the first ```python block of the section under the heading
``## Define your own dynamics`` in ``README.md``.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Define your own dynamics"
README = ROOT / "README.md"


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


def test_section_code_takes_the_first_python_block_of_the_section():
    markdown = "\n".join([
        "# ocdl", "```python", "print('not this')", "```",
        HEADING, "text", "```bash", "pip install ocdl", "```", "```python", "x = 1", "print(x)", "```",
        "```python", "print('not this either')", "```", "## Next", "```python", "y = 2", "```",
    ])
    assert section_code(markdown) == "x = 1\nprint(x)\n"
    assert section_code("# ocdl\n## Other\n") is None
    assert section_code(HEADING + "\nno code\n## Next\n```python\nz = 3\n```\n") == ""


def test_define_your_own_dynamics_example_runs(tmp_path):
    code = section_code(README.read_text(encoding="utf-8"))
    assert code, f"README.md has no ```python block under {HEADING!r}"
    script = tmp_path / "own_dynamics.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"the README example failed:\n{run.stdout}\n{run.stderr}"
    assert "check_stepper(" in run.stdout and "passed" in run.stdout, run.stdout
