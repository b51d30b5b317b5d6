r"""A PDE-constrained inverse problem with user-defined dynamics: recover a heat source.

The temperature on :math:`(0, 1)`, zero at both ends and at :math:`t = 0`, obeys

.. math::  u_t = \kappa\, u_{xx} + q_1(t)\, g_1(x) + q_2(t)\, g_2(x), \qquad t \in (0, 1],

with known Gaussian profiles :math:`g_k` at :math:`x = 0.3, 0.7` and unknown
intensities :math:`q_k(t)`. Four sensors (:math:`x = 0.2, 0.4, 0.6, 0.8`)
read :math:`u` at every time step with 1% noise. The dynamics are the
steppers of :mod:`ocdl.problems.heat` (``ocdl.Stepper`` subclasses: forward Euler,
backward Euler, Crank-Nicolson, :math:`n = 63` nodes); the control
:math:`\theta_j = q(t_{j+1/2})` of :math:`N = 100` Crank-Nicolson steps is
recovered by Tikhonov regularisation with time smoothness,

.. math::  \min_\theta \tfrac12 \|F(\theta) - d\|^2 + \frac{\alpha}{2h} \sum_j \|\theta_j - \theta_{j-1}\|^2,

solved by Gauss-Newton-PCG (preconditioned by the regulariser), with
:math:`\alpha` from the discrepancy principle :math:`\|F(\theta_\alpha) - d\|
\approx 1.1\,\delta`. The data come from 8 times finer time steps (no
inverse crime in time). Then steepest descent on the same problem, and a
table comparing the explicit and implicit steppers (accuracy, stability,
cost): forward Euler blows up above :math:`h = 2 / (\kappa |\mu_{\max}|)`,
slightly above :math:`\Delta x^2 / (2\kappa)`.

Run ``python examples/heat_inverse.py [--out DIR]`` (about 12 s); writes
``DIR/heat_inverse.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from ocdl.problems.heat_inverse import HeatSource, Tikhonov
from ocdl.solvers import discrepancy_principle, gauss_newton_pcg, steepest_descent

import ocdl

DEFAULT_OUT = Path(__file__).resolve().parent / "figures"
TAU = 1.1
GTOL = 1e-6  # relative gradient reduction for both solvers
#: (scheme, N) rows of the stepper comparison; the limit of forward Euler is N >= 410 here
SCHEMES = [
    ("forward-euler", 100),
    ("forward-euler", 375),
    ("forward-euler", 425),
    ("forward-euler", 2000),
    ("backward-euler", 25),
    ("backward-euler", 100),
    ("backward-euler", 800),
    ("crank-nicolson", 25),
    ("crank-nicolson", 100),
    ("crank-nicolson", 800),
]
N_COMMON = 25  # readings compared at t = k / 25


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def best_time(f, repeats: int = 3) -> float:
    """The shortest of ``repeats`` wall-clock times of ``f()``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def compare_steppers() -> list[dict]:
    """Readings of the true source by every (scheme, N) against Crank-Nicolson with 6400 steps."""
    reference = HeatSource(n_steps=6400)
    ref = reference.forward(reference.true_theta())[6400 // N_COMMON - 1 :: 6400 // N_COMMON]
    rows = []
    for scheme, n_steps in SCHEMES:
        setup = HeatSource(n_steps=n_steps, scheme=scheme)
        theta, stepper = setup.true_theta(), setup.stepper
        dx = setup.x[0]
        row = {"scheme": scheme, "N": n_steps, "r": stepper.kappa * setup.network.h / dx**2}
        try:
            readings = setup.forward(theta)
        except ocdl.PropagationError as err:
            row["status"] = "blew up at step " + str(err).split("step ")[1].split(" of")[0]
            rows.append(row)
            continue
        W = np.ones((1,) + readings.shape)
        row["error"] = relative_error(readings[n_steps // N_COMMON - 1 :: n_steps // N_COMMON], ref)
        row["forward_ms"] = 1e3 * best_time(lambda s=setup, t=theta: s.forward(t))
        row["gradient_ms"] = 1e3 * best_time(lambda s=setup, t=theta, W=W: s.observations.vjp(t, s.U0, W))
        row["status"] = "stable"
        rows.append(row)
    return rows


def max_temperature(scheme: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``t_j`` and :math:`\max_x |u_j|` over the run (no blow-up check: watch it grow)."""
    setup = HeatSource(n_steps=n_steps, scheme=scheme)
    net = ocdl.Network(setup.stepper, n_steps, setup.network.final_time, blow_up=None)
    with net.trajectory(setup.true_theta(), setup.U0) as traj:
        peaks = [np.abs(state[0]).max() for _, state, _ in traj.steps()] + [np.abs(traj.final_state[0]).max()]
    return setup.t, np.array(peaks)


def print_table(rows: list[dict], h_limit_r: float) -> None:
    print(f"\nExplicit vs implicit time stepping (n = 63, kappa = 0.05, T = 1; forward Euler needs "
          f"r = kappa h / dx^2 <= {h_limit_r:.3f})")
    print(f"{'scheme':<16}{'N':>6}{'r':>8}  {'rel. error':>10}  {'forward ms':>10}  {'gradient ms':>11}  status")
    for row in rows:
        if "error" in row:
            numbers = f"{row['error']:10.2e}  {row['forward_ms']:10.1f}  {row['gradient_ms']:11.1f}"
        else:
            numbers = f"{'-':>10}  {'-':>10}  {'-':>11}"
        print(f"{row['scheme']:<16}{row['N']:>6}{row['r']:8.3f}  {numbers}  {row['status']}")
    print("(rel. error: sensor readings at t = k/25 against Crank-Nicolson with N = 6400; "
          "gradient: one forward and one adjoint sweep)")


def main(argv: list[str] | None = None) -> Path:
    """Run the inversion and the comparisons, print the tables, write the figure; return its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for heat_inverse.png")
    parser.add_argument("--noise", type=float, default=0.01, help="relative noise level (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    setup = HeatSource()
    truth = setup.true_theta()
    data, delta = setup.noisy_data(args.noise, rng=args.seed, refine=8)
    problem = Tikhonov(setup, data, alpha=1.0)
    print(f"{setup.n_params} unknowns (N = {setup.network.n_steps} steps x p = 2 sources), "
          f"{data.size} readings, noise {100 * args.noise:g}%: delta = {delta:.3e}")

    # -- the discrepancy principle -------------------------------------------------------------------
    dp = discrepancy_principle(problem, delta, tau=TAU)
    print(f"\nDiscrepancy principle (tau = {TAU}): alpha / sigma, misfit / delta, relative error")
    for alpha, misfit, x in sorted(dp.path, key=lambda p: -p[0]):
        mark = "  <- chosen" if alpha == dp.alpha else ""
        print(f"  {alpha / problem.sigma:10.4f}  {misfit / delta:7.3f}  {relative_error(x, truth):8.4f}{mark}")
    noise_free, _ = setup.noisy_data(0.0, refine=8)
    small_alpha = gauss_newton_pcg(problem.with_alpha(1e-4 * problem.sigma), dp.theta, gtol=1e-6,
                                   cg_maxiter=300, cg_rtol=1e-7).x
    print(f"chosen alpha = {dp.alpha:.3e} (misfit {dp.misfit:.4e} <= tau delta = {dp.target:.4e}): "
          f"relative error {relative_error(dp.theta, truth):.4f}; "
          f"with alpha = 1e-4 sigma (under-regularised): {relative_error(small_alpha, truth):.4f}")

    # -- Gauss-Newton vs steepest descent at the chosen alpha -----------------------------------------
    histories = {}
    print(f"\nSolvers at the chosen alpha, to ||grad|| <= {GTOL:g} ||grad_0||:")
    print(f"{'solver':<20}{'iterations':>11}{'sweeps':>8}{'seconds':>9}  {'rel. error':>10}  message")
    for name in ("Gauss-Newton-PCG", "steepest descent"):
        p = problem.with_alpha(dp.alpha)
        x0 = p.theta0
        misfit0, p.n_solves = p.misfit(x0), 0
        tic = time.perf_counter()
        if name == "Gauss-Newton-PCG":
            result = gauss_newton_pcg(p, x0, max_iter=50, gtol=GTOL, cg_maxiter=100, cg_rtol=1e-2)
        else:
            result = steepest_descent(p, x0, max_iter=5000, gtol=GTOL)
        seconds, sweeps = time.perf_counter() - tic, p.n_solves
        final_gradient = np.linalg.norm(p.model(result.x).gradient) / result.history[0]["grad_norm"]
        histories[name] = {
            "sweeps": np.concatenate([[0], result.trace("n_solves")]),
            "misfit": np.concatenate([[misfit0], result.trace("misfit")]) / delta,
            "rel_grad_norm": np.concatenate([result.trace("rel_grad_norm"), [final_gradient]]),
            "label": f"{name}: {result.nit} iterations, {sweeps} sweeps",
        }
        print(f"{name:<20}{result.nit:>11}{sweeps:>8}{seconds:9.2f}  "
              f"{relative_error(result.x, truth):10.4f}  {result.message}")
    print("(sweeps: forward, tangent and adjoint solves of N steps each)")

    # -- explicit vs implicit -------------------------------------------------------------------------
    dx = setup.x[0]
    r_limit = setup.stepper.kappa * setup.stepper.max_stable_step() / dx**2
    rows = compare_steppers()
    print_table(rows, r_limit)

    # -- figure -----------------------------------------------------------------------------------------
    fig = Figure(figsize=(16, 9.5), layout="constrained")
    ax = fig.subplots(2, 3)
    t_mid = 0.5 * (setup.t[:-1] + setup.t[1:])
    colours = ["tab:blue", "tab:red"]
    a = ax[0, 0]
    for k, c in enumerate(colours):
        a.plot(t_mid, setup.intensities(small_alpha)[:, k], color=c, lw=0.7, alpha=0.35)
        a.plot(t_mid, setup.intensities(truth)[:, k], "k-", lw=2.5, alpha=0.6)
        a.plot(t_mid, setup.intensities(dp.theta)[:, k], color=c, lw=2, label=f"$q_{k + 1}$ recovered")
    a.plot([], [], "k-", lw=2.5, alpha=0.6, label="truth")
    a.plot([], [], color="gray", lw=0.7, label=r"$\alpha = 10^{-4}\sigma$ (under-regularised)")
    a.set(xlabel="t", ylabel="source intensity", ylim=(-0.5, 3.0),
          title=f"(a) truth and recovery (discrepancy principle), error {relative_error(dp.theta, truth):.1%}")
    a.legend(fontsize=8, loc="upper left")

    a = ax[0, 1]
    fitted = setup.forward(dp.theta)
    for i, x_s in enumerate(setup.sensors):
        line = a.plot(setup.t[1:], fitted[:, i], lw=1.8, label=f"sensor x = {x_s:g}")[0]
        a.plot(setup.t[1:], data[:, i], ".", ms=3, color=line.get_color(), alpha=0.6)
        a.plot(setup.t[1:], noise_free[:, i], "k:", lw=0.8)
    a.set(xlabel="t", ylabel="temperature u", title="(b) readings (dots: 1% noise), fit (lines), clean (dotted)")
    a.legend(fontsize=8)

    a = ax[0, 2]
    path = sorted(dp.path, key=lambda p: p[0])
    alphas = np.array([p[0] for p in path]) / problem.sigma
    a.loglog(alphas, [p[1] / delta for p in path], "o-", label=r"misfit $\|F(\theta_\alpha) - d\| / \delta$")
    a.loglog(alphas, [100 * relative_error(p[2], truth) for p in path], "s-",
             label=r"error $\|\theta_\alpha - \theta_{true}\| / \|\theta_{true}\|$ (%)")
    a.axhline(TAU, color="k", ls="--", lw=1, label=rf"$\tau = {TAU}$")
    a.axvline(dp.alpha / problem.sigma, color="tab:green", lw=1, label="chosen $\\alpha$")
    a.set(xlabel=r"$\alpha / \sigma$", title="(c) discrepancy principle: misfit and error vs $\\alpha$")
    a.legend(fontsize=8)

    for a, key in [(ax[1, 0], "misfit"), (ax[1, 1], "rel_grad_norm")]:
        for history in histories.values():
            style = "o-" if len(history["sweeps"]) < 20 else "-"
            a.loglog(history["sweeps"] + 1, history[key], style, label=history["label"])
        a.set_xlabel("1 + PDE sweeps (forward, tangent, adjoint)")
        a.legend(fontsize=8)
    ax[1, 0].axhline(TAU, color="k", ls="--", lw=1)
    ax[1, 0].set(ylabel=r"misfit $\|F(\theta_k) - d\| / \delta$", title="(d) misfit history at the chosen alpha")
    ax[1, 1].set(ylabel=r"$\|\nabla\Phi(\theta_k)\| / \|\nabla\Phi(\theta_0)\|$",
                 title="(e) gradient history at the chosen alpha")

    a = ax[1, 2]
    for scheme, n_steps, style, width in [("forward-euler", 425, "-", 4), ("forward-euler", 375, "-", 1.8),
                                          ("crank-nicolson", 100, "--", 1.8), ("backward-euler", 100, ":", 1.8)]:
        t, peaks = max_temperature(scheme, n_steps)
        r = setup.stepper.kappa * (1.0 / n_steps) / dx**2
        a.semilogy(t, peaks, style, lw=width, label=f"{scheme}, N = {n_steps}, r = {r:.2f}")
    a.set(xlabel="t", ylabel=r"$\max_x |u(x, t)|$", ylim=(1e-3, 1e12),
          title=rf"(f) stability: forward Euler needs $r = \kappa h/\Delta x^2 \leq {r_limit:.3f}$")
    a.legend(fontsize=8)
    fig.suptitle(r"Heat source recovery: $u_t = \kappa u_{xx} + q_1(t) g_1(x) + q_2(t) g_2(x)$, "
                 rf"$n = 63$, $N = {setup.network.n_steps}$ Crank-Nicolson steps, 4 sensors, "
                 rf"{100 * args.noise:g}% noise")
    args.out.mkdir(parents=True, exist_ok=True)
    path_png = args.out / "heat_inverse.png"
    fig.savefig(path_png, dpi=110)
    print(f"\nwrote {path_png} ({time.perf_counter() - start:.1f} s in all)")
    return path_png


if __name__ == "__main__":
    main()
