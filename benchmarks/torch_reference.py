"""The benchmark workloads in PyTorch (autograd, on the CPU or a CUDA device), for a side-by-side comparison.

PyTorch is never a dependency of ocdl: :func:`available` says whether it
imports, and the benchmarks skip it with a message when it does not.

The networks are written the way a PyTorch user would write them: one leaf
tensor ``K_j`` and one bias ``b_j`` per step (a ``ParameterList``, not slices
of one big tensor, whose backward would zero-fill the whole tensor at every
step), on exactly the numbers of :func:`workloads.Workload.data`:

* ResNet: ``Y = Y + h * tanh(lin(Y, K_j) + b_j)``;
* Verlet: ``Z = Z - h * tanh(lin(Y, K_j) + b_j)``, ``Y = Y + h * tanh(linT(Z, K_j) + b_j)``;

with ``lin(Y, K) = Y @ K`` and ``linT(Z, K) = Z @ K.T`` (dense), or
``conv2d(Y, K, padding=1)`` and ``conv_transpose2d(Z, K, padding=1)``
(the exact adjoint, as in ``ocdl.Conv2d``).

Timed quantities:

* ``forward``: the propagation under ``torch.inference_mode()`` (no graph);
* ``gradient``: the propagation with the graph, then
  ``torch.autograd.grad(Y_N, params, grad_outputs=Y_N)``, the gradient of
  :math:`\\tfrac12\\|Y_N\\|^2`;
* ``gn_matvec``: :math:`J^T J v` with the forward graph built beforehand (the
  counterpart of ocdl's stored trajectory), by two methods, of which the
  benchmark reports the faster:

  - ``"double-backward"``: beforehand ``g(U) = J^T U`` is built once with
    ``create_graph=True`` for a dummy ``U``; each product is then
    ``Jv = grad(g, U, v)`` (the backward of a backward, i.e. a JVP) and
    ``grad(Y_N, params, Jv)`` (a VJP through the stored forward graph);
  - ``"func"``: ``torch.func.linearize`` (a traced JVP that keeps the
    forward's values) and ``torch.func.vjp`` (a stored VJP), both built
    beforehand; each product is ``vjp_fn(jvp_fn(v))``.
"""

from __future__ import annotations

import numpy as np


def available(device: str = "cpu") -> bool:
    """Whether PyTorch imports and has ``device`` (``"cpu"``, or ``"cuda"``: a CUDA device)."""
    try:
        import torch
    except ImportError:
        return False
    return not device.startswith("cuda") or torch.cuda.is_available()


def torch_dtype(dtype):
    import torch

    return {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[np.dtype(dtype)]


def gemm_rates(workload, dtype, repeats: int = 5) -> dict | None:
    """FLOP/s of PyTorch's ``torch.mm`` on a dense workload's products, keyed as in ``roofline.measure_rates``.

    ``apply`` is :math:`Y K`, ``transpose`` :math:`G K^T`, ``grad``
    :math:`Y^T G` (``s x n`` states, ``n x n`` weights), each the best of
    ``repeats`` calls into a preallocated output: the BLAS PyTorch links
    against the one NumPy links against, on the same shapes. ``None`` for a
    convolution (PyTorch convolves without these products).
    """
    import torch
    from common import best_time

    if workload.is_conv:
        return None
    s, n = workload.n_examples, workload.width
    gen = torch.Generator().manual_seed(0)
    td = torch_dtype(dtype)
    Y, G = (torch.randn(s, n, generator=gen, dtype=td) for _ in range(2))
    K = torch.randn(n, n, generator=gen, dtype=td)
    out_sn, out_nn = torch.empty(s, n, dtype=td), torch.empty(n, n, dtype=td)
    products = {
        "apply": lambda: torch.mm(Y, K, out=out_sn),
        "transpose": lambda: torch.mm(G, K.T, out=out_sn),
        "grad": lambda: torch.mm(Y.T, G, out=out_nn),
    }
    flops = 2.0 * s * n * n
    return {kind: flops / best_time(fn, repeats) for kind, fn in products.items()}


class TorchNetwork:
    """A workload's ResNet or Verlet network in PyTorch, parameters from a flat ocdl ``theta``."""

    def __init__(self, workload, stepper: str, theta: np.ndarray, device: str = "cpu") -> None:
        import torch

        self.workload, self.stepper = workload, stepper
        transform = workload.transform()
        rows = theta.reshape(workload.n_steps, -1)
        self.Ks = [torch.tensor(row[:-1].reshape(transform.param_shape), device=device) for row in rows]
        self.bs = [torch.tensor(row[-1:], device=device) for row in rows]
        self.h = workload.h

    @property
    def params(self) -> list:
        return [p for pair in zip(self.Ks, self.bs) for p in pair]

    def requires_grad_(self) -> TorchNetwork:
        for p in self.params:
            p.requires_grad_(True)
        return self

    def _lin(self, Y, K, transpose: bool = False):
        import torch.nn.functional as F

        w = self.workload
        if not w.is_conv:
            return Y @ K.T if transpose else Y @ K
        images = Y.reshape(Y.shape[0], w.channels, w.height, w.image_width)
        pad = w.kernel_size // 2
        out = F.conv_transpose2d(images, K, padding=pad) if transpose else F.conv2d(images, K, padding=pad)
        return out.reshape(Y.shape[0], -1)

    def forward(self, Y):
        import torch

        h = self.h
        if self.stepper == "resnet":
            for K, b in zip(self.Ks, self.bs):
                Y = Y + h * torch.tanh(self._lin(Y, K) + b)
            return Y
        Z = torch.zeros_like(Y)
        for K, b in zip(self.Ks, self.bs):
            Z = Z - h * torch.tanh(self._lin(Y, K) + b)
            Y = Y + h * torch.tanh(self._lin(Z, K, transpose=True) + b)
        return Y

    __call__ = forward

    def flat(self, grads) -> np.ndarray:
        """ocdl's flat layout of per-step ``(K_j, b_j)`` gradients, on the host."""
        import torch

        return torch.cat([g.reshape(-1) for g in grads]).cpu().numpy()


def torch_callables(
    workload, stepper: str, dtype, seed: int = 0, threads: int | None = None, gn_methods: str = "best",
    device: str = "cpu",
) -> dict:
    """Closures for forward, gradient and Gauss-Newton product in PyTorch (see the module docstring).

    ``gn_methods``: ``"best"`` offers both Gauss-Newton methods (each set up on demand), or name one.
    ``device``: PyTorch's (``"cpu"``, ``"cuda"``); the values come back to the host.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    theta, Y0, v = workload.data(stepper, dtype, seed)
    net = TorchNetwork(workload, stepper, theta, device).requires_grad_()
    params = net.params
    Y0_t = torch.from_numpy(Y0).to(device)
    n_steps = workload.n_steps
    v_rows = torch.from_numpy(v).to(device).reshape(n_steps, -1)
    v_list = [t for row in v_rows for t in (row[:-1].reshape(params[0].shape), row[-1:])]

    def forward():
        with torch.inference_mode():
            return net(Y0_t)

    def gradient():
        YN = net(Y0_t)
        return torch.autograd.grad(YN, params, grad_outputs=YN.detach())

    def gradient_value() -> np.ndarray:
        return net.flat(gradient())

    # -- Gauss-Newton products: each method is set up on demand (its graphs
    # hold several copies of the forward states; build one at a time)
    def setup_double_backward():
        YN = net(Y0_t)
        U = torch.zeros_like(YN, requires_grad=True)
        g_of_U = torch.autograd.grad(YN, params, grad_outputs=U, create_graph=True)

        def gn_double_backward():
            (Jv,) = torch.autograd.grad(g_of_U, U, grad_outputs=v_list, retain_graph=True)
            return torch.autograd.grad(YN, params, grad_outputs=Jv, retain_graph=True)

        return gn_double_backward

    def setup_func():
        from torch.func import linearize, vjp

        detached = [p.detach() for p in params]

        def f(*ps):
            m = TorchNetwork.__new__(TorchNetwork)
            m.workload, m.stepper, m.h = workload, stepper, workload.h
            m.Ks, m.bs = list(ps[0::2]), list(ps[1::2])
            return m(Y0_t)

        _, jvp_fn = linearize(f, *detached)
        _, vjp_fn = vjp(f, *detached)

        def gn_func():
            return vjp_fn(jvp_fn(*v_list))

        return gn_func

    setups = {"double-backward": setup_double_backward, "func": setup_func}
    chosen = setups if gn_methods == "best" else {gn_methods: setups[gn_methods]}
    return {
        "forward": forward,
        "gradient": gradient,
        "gradient_value": gradient_value,
        "gn_setups": chosen,
        "gn_value": lambda: net.flat(setup_double_backward()()),
    }
