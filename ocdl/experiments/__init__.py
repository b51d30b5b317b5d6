"""The experiments of Haber & Ruthotto (2017), section 6, as reusable functions.

* :mod:`~ocdl.experiments.settings`: the paper's settings per problem (:func:`paper_settings`);
* :mod:`~ocdl.experiments.data`, :mod:`~ocdl.experiments.model`: data widened by
  duplication; networks, objectives and regularizers from the settings;
* :mod:`~ocdl.experiments.training`: multilevel training (:func:`train`, :class:`Run`);
* :mod:`~ocdl.experiments.output`: run folders (``results.json``, ``params.h5``,
  figures), comparisons of steppers and their table;
* :mod:`~ocdl.experiments.saved`: a run folder read back to classify new examples (:func:`load_run`);
* :mod:`~ocdl.experiments.plotting`: Figures 3-7;
* :mod:`~ocdl.experiments.stability_figures`: Figures 1 and 2.

Example::

    from ocdl.experiments import paper_settings, train, write_run
    run = train(paper_settings("ellipses", "verlet", max_layers=64))
    write_run(run, "runs/ellipses-verlet")
"""

from .data import load_data, widen
from .model import build_network, build_problem, examples_kept, memory_policy, numbers_per_step
from .output import compare, compare_plan, results_table, resume_compare, write_run
from .saved import SavedRun, load_run
from .settings import DEVICES, DTYPES, MEMORY, PAPER_STEPPERS, PROBLEMS, Settings, folder_name, paper_settings
from .stability_figures import figure1, figure2, stability_figures
from .training import Run, iteration_cost, train

__all__ = [
    "DEVICES", "DTYPES", "MEMORY", "PAPER_STEPPERS", "PROBLEMS", "Run", "SavedRun", "Settings", "build_network",
    "build_problem", "compare", "compare_plan", "resume_compare", "figure1", "figure2", "folder_name", "load_data",
    "load_run", "paper_settings", "results_table",
    "stability_figures", "examples_kept", "iteration_cost", "memory_policy",
    "numbers_per_step", "train", "widen", "write_run",
]
