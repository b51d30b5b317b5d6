r"""Example 1 / Figure 1 of Haber & Ruthotto (2017): stability of the ResNet.

A ResNet with :math:`N = 10` identical layers, :math:`h = 0.1`, :math:`b = 0`,
for the three matrices :math:`K_+, K_-, K_0` of eq. (3.10): :math:`K_+` pushes
the features away from the origin, :math:`K_-` contracts them to it,
:math:`K_0` rotates them. The figure and its explanation live in
:mod:`ocdl.experiments.stability_figures` (also ``ocdl phase-plane``).

Run ``python examples/stability_example1.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocdl.experiments.stability_figures import figure1

DEFAULT_OUT = Path(__file__).resolve().parent / "figures" / "figure1.png"


def main(argv: list[str] | None = None) -> Path:
    """Draw Figure 1, print the eigenvalues and Euler factors; return the PNG's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG file to write")
    return figure1(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
