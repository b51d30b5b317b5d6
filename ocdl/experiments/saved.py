r"""A run folder of ``ocdl train`` read back as a classifier of new examples (:func:`load_run`).

The folder's ``params.h5`` holds the finest level's parameters and the run's settings; from them
:func:`load_run` rebuilds the network and the classifier of eq. 2.4, so that new examples are
classified as in the run: widened as the training examples were (:func:`~ocdl.experiments.widen`),
propagated, :math:`Y_N`, and assigned the class of the largest entry of :math:`Y_N W + \mu` (the
softmax's, or the logistic's sign for two classes).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import Array
from ..io import OcdlFileError, load_params
from ..objectives import Objective
from ..propagation import Network
from .data import widen
from .model import build_network, build_objective
from .settings import Settings


@dataclass(frozen=True)
class SavedRun:
    """The finest network of a run folder with its parameters.

    Attributes
    ----------
    settings : Settings
        The run's settings (as ``ocdl train`` was given them, the paper's defaults filled in).
    network : Network
        The finest level's network.
    theta, W, mu : numpy.ndarray
        Its parameters (of best validation accuracy) and the classifier's.
    objective : Objective
        The loss the run minimised; its ``predict`` classifies.
    """

    settings: Settings
    network: Network
    theta: np.ndarray
    W: np.ndarray
    mu: np.ndarray
    objective: Objective

    def features(self, Y: Array) -> Array:
        """:math:`Y_N` of the examples ``Y`` (rows; the data set's own features, e.g. 2 or 784), widened first."""
        return self.network.forward(self.theta, widen(Y, self.settings))

    def predict(self, Y: Array) -> Array:
        """The class indices of the examples ``Y`` (rows of the data set's features)."""
        return self.objective.predict(self.features(Y), self.W, self.mu)

    def accuracy(self, Y: Array, C: Array) -> float:
        """The fraction of the examples ``Y`` classified as their class indices ``C``."""
        C = np.asarray(C)
        if C.shape != (Y.shape[0],):
            raise ValueError(f"C must hold one class index per row of Y ({Y.shape[0]}), got shape {C.shape}")
        return float((self.predict(Y) == C).mean())


def load_run(folder: str | os.PathLike) -> SavedRun:
    """The network and parameters of the run folder ``folder`` (of ``ocdl train``, or one of ``ocdl compare``'s).

    Raises
    ------
    FileNotFoundError
        If ``folder`` holds no ``params.h5`` (an unfinished run: continue it with ``ocdl train --resume``).
    ocdl.io.OcdlFileError
        If ``params.h5`` is damaged or was not written by ``ocdl train``.
    ValueError
        If the run's stepper cannot be built here (a user's ``"module:Class"``
        whose module is not found from the current folder, see
        :func:`ocdl.factory.find_kind`), or builds another stepper than the
        run trained (its ``repr`` differs: the class's defaults were edited).
        Folders written before the ``repr`` was recorded are not compared.
    """
    path = Path(folder) / "params.h5"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no params.h5: not a finished run folder of ocdl train")
    saved = load_params(path)
    stored = dict(saved["settings"])
    n_layers, trained = stored.pop("n_layers", None), stored.pop("stepper_repr", None)
    names = {field.name for field in dataclasses.fields(Settings)}
    if n_layers is None or set(stored) != names:
        raise OcdlFileError(f"{path}: parameters without the settings of ocdl train; rebuild the network in Python "
                            "and use ocdl.io.load_params")
    try:
        settings = Settings(**stored)
    except ValueError as error:  # a user's stepper whose module is not found from here, say
        raise ValueError(f"{folder}: {error}") from None
    network = build_network(settings, int(n_layers))
    if trained is not None and repr(network.stepper) != trained:
        raise ValueError(f"{folder} was trained with {trained}; the stepper {settings.stepper!r} now builds "
                         f"{network.stepper!r}: restore its module as it was trained, or train anew")
    n_outputs = saved["W"].shape[1]
    objective = build_objective(2 if n_outputs == 1 else n_outputs)
    return SavedRun(settings, network, saved["theta"], saved["W"], saved["mu"], objective)
