"""A user's stepper by its import path, ``"module:Class"``: in ``ocdl.network``, the experiments, the command line
(``train``, ``compare``, ``--resume``) and ``load_run``, imported from the current folder as a user's file is."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ocdl
from ocdl.cli import main
from ocdl.factory import find_kind

MODULE = "ocdl_test_user_steppers"

SOURCE = '''
import ocdl


class DampedResNet(ocdl.LayerStepper):
    """Forward Euler on dY/dt = sigma(Y K + b) - gamma Y."""

    def __init__(self, layer, gamma=0.5):
        super().__init__(layer)
        self.gamma = gamma

    def step(self, state, theta, h):
        (Y,) = state
        Y_next, D = self.layer.step(theta, Y, (1 - h * self.gamma) * Y, h)
        return (Y_next,), D

    def step_jvp(self, state, theta, h, dstate, dtheta, cache):
        (Y,), (dY,) = state, dstate
        return (self.layer.step_jvp(theta, Y, cache, dY, dtheta, (1 - h * self.gamma) * dY),)

    def step_vjp(self, state, theta, h, lam, cache):
        (Y,), (L,) = state, lam
        lam_Y, gtheta = self.layer.step_vjp(theta, Y, cache, L, (1 - h * self.gamma) * L)
        return (lam_Y,), gtheta


class NotAStepper:
    pass


class Incomplete(ocdl.LayerStepper):
    """Writes step alone."""

    def step(self, state, theta, h):
        return state, None


class NeedsAlpha(DampedResNet):
    def __init__(self, layer, alpha):
        super().__init__(layer)
        self.alpha = alpha


class WrongVjp(DampedResNet):
    """DampedResNet whose adjoint forgets the damping."""

    def step_vjp(self, state, theta, h, lam, cache):
        (Y,), (L,) = state, lam
        lam_Y, gtheta = self.layer.step_vjp(theta, Y, cache, L, L)
        return (lam_Y,), gtheta


class ClassDamped(ocdl.ResNet):
    """A ResNet damped by a class attribute: Y + h (sigma(Y K + b) - gamma Y)."""

    gamma = 0.5
    step, step_jvp, step_vjp = DampedResNet.step, DampedResNet.step_jvp, DampedResNet.step_vjp


class SameVerlet(ocdl.Verlet):
    """Verlet, under another name."""
'''

NAME = f"{MODULE}:DampedResNet"
TINY = ["--max-layers", "8", "--iterations", "2", "--no-progress"]


@pytest.fixture
def in_users_folder(tmp_path, monkeypatch):
    """The current folder holds the user's module (and is not on sys.path); the module is forgotten afterwards."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    (tmp_path / "broken_steppers.py").write_text("import no_such_dependency_of_the_user\n")
    (tmp_path / "syntax_steppers.py").write_text("class Stepper(:\n")
    (tmp_path / "raising_steppers.py").write_text("raise TypeError('no')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    for name in (MODULE, "broken_steppers", "syntax_steppers", "raising_steppers"):
        sys.modules.pop(name, None)


def by_hand(width: int, n_steps: int, final_time: float):
    """The same network built from the user's class directly, as ``Network(Class(Layer(Dense(n, n))))``."""
    cls = sys.modules[MODULE].DampedResNet
    return ocdl.Network(cls(ocdl.Layer(ocdl.Dense(width, width), "tanh")), n_steps, final_time)


def test_network_by_import_path_is_the_class_built_by_hand(in_users_folder):
    net = ocdl.network(NAME, 3, 5, 2.0)
    assert type(net.stepper).__name__ == "DampedResNet" and net.stepper.gamma == 0.5
    assert sys.path.count(str(in_users_folder)) == 1  # found there: kept, for what its steps import later
    before = list(sys.path)
    ocdl.network("ocdl:ResNet", 2, 2, 1.0)  # found elsewhere: the path as it was
    assert sys.path == before
    rng = np.random.default_rng(1)
    theta, Y0 = rng.standard_normal(net.n_params), rng.standard_normal((4, 3))
    reference = by_hand(3, 5, 2.0)
    np.testing.assert_array_equal(net.forward(theta, Y0), reference.forward(theta, Y0))
    # independent of ocdl's stepping: y <- (1 - h gamma) y + h tanh(y K + b), step by step (b a scalar)
    Y, h = Y0, 2.0 / 5
    for K, b in zip(theta.reshape(5, 10)[:, :9].reshape(5, 3, 3), theta.reshape(5, 10)[:, 9]):
        Y = (1 - h * 0.5) * Y + h * np.tanh(Y @ K + b)
    np.testing.assert_allclose(net.forward(theta, Y0), Y, rtol=1e-13)
    assert find_kind(NAME).dynamics == "Forward Euler on dY/dt = sigma(Y K + b) - gamma Y."
    assert not find_kind(NAME).reversible


@pytest.mark.parametrize("name, message", [
    ("euler", "kind must be one of resnet, antisymmetric, leapfrog, verlet, rk4, or MODULE:CLASS"),
    (":DampedResNet", "kind must be one of"),
    (f"{MODULE}:", "kind must be one of"),
    ("no_such_module_here:Stepper", "kind 'no_such_module_here:Stepper': no module 'no_such_module_here' "
                                    "(install it, put it on PYTHONPATH or run from its folder)"),
    ("ocdl.no_such_sub:Stepper", "no module 'ocdl.no_such_sub'"),
    (f"{MODULE}:Missing", f"{MODULE}.py) has no 'Missing'"),
    (f"{MODULE}:NotAStepper", "not a subclass of ocdl.LayerStepper"),
    ("ocdl:Layer", "not a subclass of ocdl.LayerStepper"),
    ("json:DampedResNet", "module 'json' ("),  # a module of that name shadows one in the current folder: say whose
    ("__main__:DampedResNet", "a class of the running script cannot be found again"),
    (f"{MODULE}:Incomplete", "does not write step_jvp, step_vjp"),
    ("ocdl:LayerStepper", "does not write step, step_jvp, step_vjp"),
    (f"{MODULE}:NeedsAlpha", "is built as NeedsAlpha(layer), its other arguments at their defaults: give "
                             "NeedsAlpha(layer, alpha) defaults"),
    ("broken_steppers:Stepper", "importing 'broken_steppers' failed: ModuleNotFoundError: No module named "
                                "'no_such_dependency_of_the_user' ("),
    ("syntax_steppers:Stepper", "importing 'syntax_steppers' failed: SyntaxError: "),
    ("raising_steppers:Stepper", "importing 'raising_steppers' failed: TypeError: no (")
])
def test_bad_names_say_what_is_wrong(in_users_folder, name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ocdl.network(name, 2, 4, 1.0)


def test_a_verlet_of_yours_is_a_verlet():
    """A subclass of Verlet has the paper's Verlet width in the experiments, and may be n x m."""
    from ocdl.experiments import paper_settings

    assert paper_settings("swiss-roll", "ocdl:Verlet").width == paper_settings("swiss-roll", "verlet").width == 2
    assert paper_settings("swiss-roll", "ocdl:ResNet").width == 4
    assert ocdl.network("ocdl:Verlet", 3, 4, 1.0, hidden_width=5).n_params == 4 * (3 * 5 + 1)  # K: 3 x 5, b


def test_class_attributes_of_yours_are_settings(in_users_folder):
    """A setting in the class body is in the repr (checkpoints and processes compare steppers by it); ocdl's
    classes' reprs are unchanged."""
    net = ocdl.network(f"{MODULE}:ClassDamped", 2, 4, 1.0)
    assert repr(net.stepper) == "ClassDamped(Layer(Dense(n_in=2, n_out=2), Tanh()), gamma=0.5)"
    net.stepper.gamma = 5.0
    assert repr(net.stepper).endswith("gamma=5.0)")
    assert repr(ocdl.network("verlet", 2, 4, 1.0).stepper) == "Verlet(Layer(Dense(n_in=2, n_out=2), Tanh()))"

    class WithTools(type(net.stepper)):  # what a class body holds beside settings: not settings
        xp = np  # a module (its repr held NumPy's ndim function, which failed the stepper's repr)
        tools = staticmethod(print)
        kind = ocdl.Tanh  # a class

        @property
        def scale(self):
            return 2.0

    stepper = WithTools(ocdl.Layer(ocdl.Dense(2), "tanh"))
    assert repr(stepper) == "WithTools(Layer(Dense(n_in=2, n_out=2), Tanh()), gamma=0.5)"


def test_train_resume_and_load_run_with_a_users_stepper(in_users_folder, capsys):
    """``ocdl train --stepper module:Class`` trains the user's dynamics (the default folder named
    ``module.Class``), a finished run says so on ``--resume``, and ``load_run`` classifies as the run did."""
    from ocdl.experiments import load_data, load_run

    assert main(["train", "--problem", "ellipses", "--stepper", NAME, *TINY]) == 0
    out = in_users_folder / "runs" / f"ellipses-{MODULE}.DampedResNet"
    results = json.loads((out / "results.json").read_text())
    assert results["stepper"] == NAME and [rec["n_layers"] for rec in results["levels"]] == [4, 8]
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "holds a finished run, up to 8 layers" in capsys.readouterr().out
    sys.modules.pop(MODULE)  # a new process: load_run imports the module again
    run = load_run(out)
    assert type(run.network.stepper).__name__ == "DampedResNet" and run.network.n_steps == 8
    data = load_data(run.settings)
    assert run.accuracy(data.Y_val, data.C_val) == results["levels"][-1]["best_val_accuracy"]
    features = by_hand(2, 8, 20.0).forward(run.theta, data.Y_val)
    np.testing.assert_array_equal(run.predict(data.Y_val), (features @ run.W + run.mu > 0).astype(int).ravel())
    sys.modules.pop(MODULE)
    (in_users_folder / f"{MODULE}.py").write_text(SOURCE.replace("gamma=0.5", "gamma=0.05"))  # edited since
    with pytest.raises(ValueError, match=re.escape("was trained with DampedResNet(Layer(Dense(n_in=2, n_out=2), "
                                                   "Tanh()), gamma=0.5); the stepper")):
        load_run(out)
    (in_users_folder / f"{MODULE}.py").unlink()
    sys.modules.pop(MODULE)
    with pytest.raises(ValueError, match=re.escape(f"{out}: stepper '{NAME}': no module '{MODULE}'")):
        load_run(out)  # from a folder where the module is not


def test_a_stepper_of_yours_with_wrong_derivatives_is_refused_before_training(in_users_folder, capsys):
    """ocdl.check_stepper runs before a stepper of yours trains (its vjp here forgets the damping: the gradient
    would be wrong, and training would go on in silence)."""
    argv = ["train", "--problem", "ellipses", "--stepper", f"{MODULE}:WrongVjp", "--out", "wrong", *TINY]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"stepper '{MODULE}:WrongVjp' fails ocdl.check_stepper (step: jvp/vjp adjoint in state, " in err, err
    assert len(err.strip().splitlines()) == 1 and not (in_users_folder / "wrong" / "checkpoint.h5").exists()


def test_a_class_setting_changed_since_the_checkpoint_is_refused_on_resume(in_users_folder, capsys, monkeypatch):
    import ocdl.experiments.training as training

    multilevel = training.multilevel

    def stopped(*args, **kwargs):  # Ctrl-C in the second iteration of the first level
        def callback(k, state):
            if k == 1:
                raise KeyboardInterrupt

        return multilevel(*args, callback=callback, **kwargs)

    monkeypatch.setattr(training, "multilevel", stopped)
    assert main(["train", "--problem", "ellipses", "--stepper", f"{MODULE}:ClassDamped", "--out", "run", *TINY]) == 130
    monkeypatch.setattr(training, "multilevel", multilevel)
    sys.modules.pop(MODULE)
    (in_users_folder / f"{MODULE}.py").write_text(SOURCE.replace("    gamma = 0.5", "    gamma = 5.0"))
    assert main(["train", "--resume", "run", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "gamma=0.5" in err and "gamma=5.0" in err and "was written by a different run" in err, err


def test_overwrite_keeps_to_the_comparison_folder(in_users_folder, capsys):
    """--overwrite removes the run folders a comparison's plan.json names, never a folder outside it."""
    out, victim = in_users_folder / "cmp", in_users_folder / "victim"
    out.mkdir()
    victim.mkdir()
    (victim / "results.json").write_text("{}")
    (out / "plan.json").write_text(json.dumps({"problem": "ellipses", "steppers": ["../victim", 3]}))
    assert main(["compare", "--problem", "ellipses", "--steppers", "resnet", "--out", str(out), "--overwrite",
                 *TINY]) == 0
    assert (victim / "results.json").is_file()


def test_compare_a_users_stepper_with_the_papers(in_users_folder, capsys):
    out = in_users_folder / "cmp"
    argv = ["compare", "--problem", "ellipses", "--steppers", f"resnet,{NAME}", "--out", str(out), *TINY]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert f"{NAME} train acc (%)" in table
    assert (out / f"{MODULE}.DampedResNet" / "results.json").is_file() and (out / "resnet" / "params.h5").is_file()
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0
    assert "holds a finished run" in capsys.readouterr().out
    assert main(argv) == 2  # the folder holds a finished comparison ...
    assert f"{MODULE}.DampedResNet/results.json" in capsys.readouterr().err  # ... the user's run folder among it
    assert main([*argv[:4], "resnet", *argv[5:], "--overwrite"]) == 0
    assert not (out / f"{MODULE}.DampedResNet" / "results.json").exists()  # --overwrite removed the user's run


@pytest.mark.parametrize("argv, status, message", [
    (["compare", "--problem", "ellipses", "--steppers", f"{MODULE}:a.B,{MODULE}.a:B"], 2,
     "argument --steppers: steppers must be a comma-separated list of distinct names (and run folders)"),
    (["train", "--problem", "ellipses", "--stepper", f"{MODULE}:DampedResNet", "--gamma", "1"], 1,
     "(a stepper of yours takes its settings as its class's defaults)"),
    (["train", "--problem", "ellipses", "--stepper", f"{MODULE}:DampedResNet", "--memory", "reversible"], 1,
     "needs a reversible stepper (leapfrog, verlet, or one of yours that sets reversible = True and writes "
     "reverse_step)"),
    (["train", "--problem", "ellipses", "--stepper", "no_such_module_here:S"], 1,
     "ocdl: error: stepper 'no_such_module_here:S': no module 'no_such_module_here'"),
    (["compare", "--problem", "ellipses", "--steppers", f"resnet,{MODULE}:NotAStepper"], 1,
     "ocdl: error: stepper 'ocdl_test_user_steppers:NotAStepper' is "),
    (["train", "--problem", "ellipses", "--stepper", "euler"], 2,
     "argument --stepper: stepper must be one of resnet, antisymmetric, leapfrog, verlet, rk4, or MODULE:CLASS"),
    (["compare", "--problem", "peaks", "--steppers", "resnet,euler"], 2,
     "argument --steppers: stepper must be one of resnet, antisymmetric, leapfrog, verlet, rk4, or MODULE:CLASS"),
])
def test_the_command_line_names_a_bad_stepper_in_one_line(in_users_folder, capsys, argv, status, message):
    """A name of the wrong form is a usage error (2); a module or class that is not a stepper a value's (1), said
    before any data are read."""
    assert main([*argv, "--out", str(in_users_folder / "x")]) == status
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (in_users_folder / "x").exists()


def test_the_ocdl_command_finds_a_module_in_the_current_folder(in_users_folder):
    """The console script, unlike ``python -m``, has no current folder on its path: it is searched for steppers."""
    script = textwrap.dedent(f"""
        import sys
        sys.path = [p for p in sys.path if p not in ('', {str(in_users_folder)!r})]
        import ocdl
        print(type(ocdl.network({NAME!r}, 2, 4, 1.0).stepper).__name__)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=in_users_folder, capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "DampedResNet"
