r"""Example 2 / Figure 2 of Haber & Ruthotto (2017): second-order and Hamiltonian networks.

Leapfrog (eq. 4.16) with :math:`K = K_-`, :math:`h = 1`, and Verlet
(eqs. 4.15, 4.17) with :math:`K_v = K_+`, :math:`h = 0.1`, each for
:math:`N = 500` and :math:`N = 5000` steps: Verlet's features stay bounded,
two of leapfrog's drift (754 at :math:`N = 5000`). The figure and its
explanation (conventions, the choice of :math:`K_v`, why leapfrog drifts at
:math:`h = 1`) live in :mod:`ocdl.experiments.stability_figures`
(also ``ocdl phase-plane``).

Run ``python examples/stability_example2.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocdl.experiments.stability_figures import figure2

DEFAULT_OUT = Path(__file__).resolve().parent / "figures" / "figure2.png"


def main(argv: list[str] | None = None) -> Path:
    """Draw Figure 2 and print the feature bounds; return the PNG's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG file to write")
    return figure2(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
