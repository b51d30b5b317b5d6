"""The README's and the documentation's Table 1 rows say what the committed runs measured.

Each row of the Table 1 at the paper's settings (README.md, docs/experiments.md) is
recomputed here from its run's ``results.json`` in ``benchmarks/results/table1_cpu/``,
straight from the JSON fields (not through ``benchmarks/table1.py``, which wrote the rows):
the best validation error of each level, the training error at the finest level and the
wall time must all appear in the row, so a row edited by hand or left from an older run fails.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results" / "table1_cpu"
NAMES = {"resnet": "ResNet", "antisymmetric": "antisymmetric ResNet", "verlet": "Verlet"}
PAPER = {"resnet": "1.53%", "antisymmetric": "1.38%", "verlet": "1.58%"}
"""The paper's validation errors at 16 layers (its Table 1): the fourth cell of each row."""


def row(page: Path, stepper: str) -> list[str]:
    """The cells of the Table 1 row of ``stepper`` on ``page``: its name first, the paper's error fourth.

    The first such row: the table at the paper's settings comes before the older six-iteration one.
    """
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"| {NAMES[stepper]} |")
    ]
    rows = [cells for cells in rows if len(cells) == 6 and cells[3] == PAPER[stepper]]
    assert rows, f"{page}: no Table 1 row for {stepper}"
    return rows[0]


@pytest.mark.parametrize("page", ["README.md", "docs/experiments.md"])
@pytest.mark.parametrize("stepper", sorted(NAMES))
def test_table1_row_matches_its_results_json(page, stepper):
    record = json.loads((RUNS / f"{stepper}.json").read_text())
    levels = record["levels"]
    assert [level["n_layers"] for level in levels] == [4, 8, 16]
    cells = row(ROOT / page, stepper)
    errors = re.findall(r"(\d+\.\d\d)%", cells[1])
    assert errors == [f"{100 * (1 - level['best_val_accuracy']):.2f}" for level in levels], cells[1]
    assert f"{100 * (1 - levels[-1]['train_accuracy']):.2f}%" in cells[2]
    assert f"{record['time_s']:.0f} s" in cells[4]
