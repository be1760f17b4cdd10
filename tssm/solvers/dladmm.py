"""dlADMM, the paper's layerwise-ADMM baseline (Wang, Yu, Chen, Zhao, KDD 2019, arXiv 1905.13611).

dlADMM trains a fully connected ReLU network ``z_l = W_l a_{l-1} + b_l``, ``a_l = relu(z_l)``
by keeping every pre-activation ``z_l`` and activation ``a_l`` of the whole training set as a
variable (full batch) and solving

    min  R(z_L; y) + nu/2 sum_{l<L} ( ||z_l - W_l a_{l-1} - b_l||^2 + ||a_l - relu(z_l)||^2 )
    s.t. z_L = W_L a_{L-1} + b_L

with the augmented Lagrangian of the one remaining constraint (dual ``u``, penalty ``rho``):

    L_rho = R(z_L; y) + nu/2 sum_{l<L} (...) + <u, r> + rho/2 ||r||^2,   r = z_L - W_L a_{L-1} - b_L.

``R`` is the cross-entropy *summed* over the M samples (paper and authors' code), so ``rho``
and ``nu`` weigh one sample's coupling against one sample's loss.

One iteration (:func:`iterate`) updates the blocks backward (``l = L .. 1``: z_l, b_l, W_l,
a_{l-1}), then forward (``l = 1 .. L``: W_l, b_l, z_l, a_l; at L: W_L, b_L, z_L), then takes
the dual step ``u <- u + rho r``. Every block update minimises (or, for W, a, z_L, decreases)
``L_rho`` in that block with the others fixed:

- W_l, a_l: one gradient step ``x - grad/t`` on the block's (quadratic) objective ``phi``; ``t``
  doubles until ``phi(x_new) <= phi(x) + <grad, x_new - x> + t/2 ||x_new - x||^2`` (the
  quadratic approximation). No matrix inverse, so the cost is quadratic in the width.
- b_l: the exact minimiser (a per-unit mean over the samples), see the table.
- z_l (l < L): closed form, elementwise the better of the best ``z <= 0`` and best ``z >= 0``.
- z_L: FISTA on the cross-entropy plus the quadratic coupling.

Layout: samples are rows, as in PyTorch (``z_l`` is ``[M, n_l]``, ``W_l`` is ``[n_l, n_{l-1}]``
like ``nn.Linear.weight``); the authors' code stores samples as columns.

Where the paper and the authors' code (repository xianggebenben/dlADMM, ``dlADMM/common.py``,
``main.py``, ``MLP/pytorch_version/``) differ, the paper's choice is the default and the code's
an option; where the paper is silent the code's value is the default, unless it is unsafe
(FISTA step) or we add a guarantee (z_L result). The code column was read from the repository;
the paper column follows the paper as summarised in docs/dladmm.md of the shared docs:

============================  ==============================  ===============================  ==========
topic                         paper                           authors' code                    default
============================  ==============================  ===============================  ==========
rho                           1e-6                            1e-6                             1e-6
nu (inner penalty)            a separate constant nu          nu = rho everywhere              nu = rho
safeguard on rising loss      none                            rho x10 (cap 0.1), t0 x10 after  off
                                                              3 rises of the training loss     (option)
z_L initialisation            forward pass (spec)             +1 / -1 from the one-hot label   forward
                                                                                               (option
                                                                                               "labels")
b step                        linearised step, step 1/rho     ``b - mean_grad/rho``, which is  exact
                              (exact if the gradient is per   the exact minimiser
                              sample; on the summed gradient
                              the step overshoots M-fold)
backtracking start t0         "pick up t" (unspecified)       t0 = 1 at every call             reset to t0
                                                                                               (option
                                                                                               "adaptive")
z_L FISTA step                unspecified                     4 (twice 1/Lipschitz of the      2 (= 1/Lip.)
                                                              summed softmax CE, 1/2)
z_L FISTA stop                unspecified                     |f_k - f_{k-1}| < 1e-3 or 500    same
                                                              iterations
z_L result                    FISTA iterate                   last FISTA iterate               best of
                                                                                               start/last
weights init                  N(0, 0.1) weights and biases    N(0, 0.1) (same seed for all)    the model's
                                                                                               own
============================  ==============================  ===============================  ==========

The backtracking test is evaluated exactly: ``phi`` is quadratic in W (and in a), so
``phi(x + d) - phi(x) - <grad, d>`` equals the curvature term ``c/2 ||d a^T||^2`` (for W), which
is computed directly instead of by subtracting two large, nearly equal sums. The subtraction is
what made the authors' loop run forever in float32 (their code carries a comment saying so);
the test itself is unchanged.

Observed behaviour (tests/test_dladmm.py): every block update is a descent step, so the primal
sweep never raises L_rho, and the dual step raises it by exactly rho ||r||^2. With the paper's
rho = 1e-6, L_rho rises from the second iteration on: the W and a steps start at t = 1 and move
by about rho x gradient while the dual keeps adding rho ||r||^2 (the paper's descent lemma needs
rho large against the loss's Lipschitz constant); with rho = 1 it is non-increasing after the
first iteration. Because t starts at 1 whatever rho, the size of the W step depends on
rho x (largest eigenvalue of a^T a), which grows with M and the width. Measured at
initialisation (width 512): 0.015 to 0.25 on the 1,437 digits (W steps 4 to 65x shorter than
1/Lipschitz), 1.6 to 31 on the 60,000 Fashion-MNIST images (backtracking engages, steps within
2x of 1/Lipschitz). ``backtrack_start="adaptive"`` removes this dependence.

Memory: z and a for every layer and sample, u, and the step's temporaries
(:func:`estimate_memory_bytes`); :func:`init_state` refuses, before allocating, a run that would
not fit. Only plain MLPs (Flatten? + [Linear, ReLU]* + Linear) are accepted
(:func:`linear_layers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import MethodSettings, check_fields, option
from ..errors import ConfigError, DivergenceError
from .base import Solver, Stage

__all__ = [
    "DLADMMSettings",
    "DLADMMState",
    "linear_layers",
    "init_state",
    "iterate",
    "primal_sweep",
    "dual_step",
    "update_W",
    "update_a",
    "update_b",
    "update_z_hidden",
    "update_z_last",
    "augmented_lagrangian",
    "residual",
    "network_loss",
    "write_back",
    "estimate_memory_bytes",
    "state_bytes",
    "temporary_bytes",
    "state_nbytes",
    "available_memory_bytes",
    "check_memory",
]

BACKTRACK_STARTS = ("reset", "adaptive")
ZL_INITS = ("forward", "labels")


@dataclass
class DLADMMSettings(MethodSettings):
    """Every knob of dlADMM; defaults are the paper's choices (see the module's table)."""

    rho: float = option(1e-6, positive=True, help="penalty of the last layer's constraint and dual step size (paper: 1e-6)")
    nu: float | None = option(None, positive=True, help="penalty of the relaxed inner constraints; null = rho (authors' code)")
    zl_iters: int = option(500, minimum=1, help="maximum FISTA iterations for the z_L subproblem (code: 500)")
    zl_tol: float = option(1e-3, help="FISTA stops when the summed z_L objective changes by less (code: 1e-3); 0 = run all iterations")
    zl_step: float = option(2.0, positive=True, help="FISTA step; 2 = 1/Lipschitz of the summed softmax cross-entropy (code: 4)")
    zl_init: str = option("forward", choices=ZL_INITS, help="z_L at start: forward pass (spec) or labels (+1/-1 one-hot, authors' code)")
    theta0: float = option(1.0, positive=True, help="first backtracking constant t of every W step (code: 1)")
    tau0: float = option(1.0, positive=True, help="first backtracking constant t of every a step (code: 1)")
    backtrack_factor: float = option(2.0, positive=True, help="t grows by this factor until the quadratic approximation holds (code: 2)")
    max_backtracks: int = option(200, minimum=1, help="give up (diverged) after this many growths of t")
    backtrack_start: str = option("reset", choices=BACKTRACK_STARTS,
                                  help="reset: t starts at theta0/tau0 each call (code); adaptive: at the last accepted t / factor")
    loss_safeguard: bool = option(False, help="authors' code: after `safeguard_rises` rises of the training loss, rho x growth (cap), t0 x growth")
    safeguard_rises: int = option(3, minimum=1, help="consecutive rises of the training loss that trigger the safeguard (code: 3)")
    safeguard_growth: float = option(10.0, positive=True, help="factor applied to rho (and nu if tied) and to theta0, tau0 (code: 10)")
    safeguard_rho_max: float = option(0.1, positive=True, help="cap on rho under the safeguard (code: 0.1)")
    safeguard_min_width: int = option(100, minimum=0, help="t0 grows only if the widest hidden layer has at least this many units (code: 100)")
    check_finite: bool = option(True, help="stop as diverged when an updated variable holds NaN/Inf")
    check_memory: bool = option(True, help="refuse, before allocating, a run whose auxiliaries exceed the available memory")
    memory_fraction: float = option(0.9, positive=True, help="share of the available memory the run may plan to use")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self)
        if not self.backtrack_factor > 1:
            raise ConfigError(f"backtrack_factor must be > 1, got {self.backtrack_factor}")
        if self.zl_tol < 0:
            raise ConfigError(f"zl_tol must be >= 0, got {self.zl_tol}")

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{knob: one-line help}``."""
        return {f.name: f.metadata["help"] for f in fields(cls)}


@dataclass
class DLADMMState:
    """dlADMM's variables as plain tensors, layers indexed ``0 .. L-1`` (paper's ``1 .. L``).

    ``z[l]`` is ``[M, n_l]`` for every layer; ``a[l]`` is ``[M, n_l]`` for the hidden layers
    (``len(a) == L - 1``; the input is ``a_0 = x`` and is not stored); ``u`` is ``[M, C]``.
    ``theta[l]`` / ``tau[l]`` are the last accepted backtracking constants of W_l / a_l.
    """

    W: list[torch.Tensor]
    b: list[torch.Tensor]
    z: list[torch.Tensor]
    a: list[torch.Tensor]
    u: torch.Tensor
    rho: float
    nu: float
    theta: list[float]
    tau: list[float]
    theta0: float
    tau0: float
    settings: DLADMMSettings
    iteration: int = 0
    loss_history: list[float] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.W)

    @property
    def layer_sizes(self) -> list[int]:
        return [self.W[0].shape[1]] + [w.shape[0] for w in self.W]

    def tensors(self) -> list[torch.Tensor]:
        return [*self.W, *self.b, *self.z, *self.a, self.u]


# ----------------------------------------------------------------------------- the model


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of a plain ReLU MLP, in order; ConfigError for anything else.

    dlADMM's closed-form z step needs ``a_l = relu(W_l a_{l-1} + b_l)`` exactly, so only
    ``[Flatten] Linear ReLU ... Linear`` (in any nesting of ``nn.Sequential``) is accepted.
    """
    leaves = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    kinds = []
    for m in leaves:
        if isinstance(m, nn.Linear):
            kinds.append("L")
        elif isinstance(m, nn.ReLU):
            kinds.append("R")
        elif isinstance(m, nn.Flatten):
            kinds.append("F")
        elif isinstance(m, nn.Identity):
            continue
        else:
            raise ConfigError(
                f"dlADMM trains only plain MLPs (Linear + ReLU layers); this model has a "
                f"{type(m).__name__} (conv/residual/pooling blocks have no dlADMM splitting); use model 'mlp'"
            )
    pattern = "".join(kinds).lstrip("F")
    n_lin = pattern.count("L")
    if n_lin == 0 or pattern != "LR" * (n_lin - 1) + "L":
        raise ConfigError(
            "dlADMM needs the layer pattern [Flatten] (Linear ReLU)* Linear with no ReLU after the "
            f"last Linear; got {' '.join(type(m).__name__ for m in leaves)}"
        )
    lins = [m for m in leaves if isinstance(m, nn.Linear)]
    if any(m.bias is None for m in lins):
        raise ConfigError("dlADMM needs every Linear layer to have a bias (it updates b_l)")
    for i, (p, q) in enumerate(zip(lins, lins[1:])):
        if p.out_features != q.in_features:
            raise ConfigError(f"Linear layers {i} and {i + 1} do not chain: {p.out_features} -> {q.in_features}")
    return lins


def _flat(x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------- memory


def state_bytes(layer_sizes: list[int], M: int, dtype: torch.dtype) -> int:
    """Bytes of the state's tensors: W, b, z (every layer), a (hidden layers), u."""
    n = layer_sizes
    L = len(n) - 1
    weights = sum(n[l + 1] * n[l] + n[l + 1] for l in range(L))
    z = M * sum(n[1:])
    a = M * sum(n[1:-1])
    u = M * n[-1]
    return (weights + z + a + u) * _itemsize(dtype)


def temporary_bytes(layer_sizes: list[int], M: int, dtype: torch.dtype) -> int:
    """An upper bound on the temporaries one block update holds at its peak.

    Counted from the code: the hidden z step holds 6 ``[M, n_l]`` tensors (+ 2 bool masks);
    the a step 4 ``[M, n_l]`` and 2 ``[M, n_{l+1}]``; the W step 2 ``[M, n_l]`` and 2 weight
    matrices; the z_L step (FISTA) 9 ``[M, C]``; the safeguard's forward pass 2 ``[M, max n]``.
    """
    n = layer_sizes
    L = len(n) - 1
    item = _itemsize(dtype)
    per_elem = [
        6 * n[l] * item + 2 * n[l] for l in range(1, L)  # hidden z step (+ where's and isfinite's bool masks)
    ] + [
        (4 * n[l] + 2 * n[l + 1]) * item for l in range(1, L)  # a step
    ] + [
        2 * n[l] * item for l in range(1, L + 1)  # W step residual + (d a^T)
    ] + [9 * n[L] * item, 2 * max(n) * item]
    weights = 2 * max(n[l + 1] * n[l] for l in range(L)) * item
    return M * max(per_elem) + weights


def estimate_memory_bytes(layer_sizes: list[int], M: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes dlADMM allocates for ``M`` samples: the state plus the peak temporaries.

    ``layer_sizes`` is ``[n_in, n_1, ..., n_L]`` (``n_L`` = classes). The input ``x`` (held by
    the caller) is not counted. The paper MLP (196, 9 x 512, 10) on 60,000 float32 images:
    2.25 GB of state + 0.74 GB of temporaries.
    """
    if len(layer_sizes) < 2 or M < 0:
        raise ConfigError(f"layer_sizes needs at least [n_in, n_out] and M >= 0; got {layer_sizes}, M={M}")
    return state_bytes(layer_sizes, M, dtype) + temporary_bytes(layer_sizes, M, dtype)


def state_nbytes(state: DLADMMState) -> int:
    """Bytes actually held by the state's tensors (to check :func:`state_bytes`)."""
    return sum(t.nelement() * t.element_size() for t in state.tensors())


def available_memory_bytes(device: torch.device | str) -> int:
    """Free memory on ``device``: ``torch.cuda.mem_get_info`` on CUDA, /proc/meminfo MemAvailable else."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**63 - 1  # unknown: do not refuse


def _memory_source(device: torch.device) -> str:
    return "torch.cuda.mem_get_info" if device.type == "cuda" else "MemAvailable in /proc/meminfo"


def check_memory(layer_sizes: list[int], M: int, dtype: torch.dtype, device: torch.device | str, fraction: float = 0.9) -> int:
    """Raise ConfigError, naming the estimate, what is free and the fix, if the run would not fit.

    Returns the estimate in bytes.
    """
    device = torch.device(device)
    need = estimate_memory_bytes(layer_sizes, M, dtype)
    avail = available_memory_bytes(device)
    budget = int(avail * fraction)
    if need > budget:
        per_sample = estimate_memory_bytes(layer_sizes, 1, dtype) - estimate_memory_bytes(layer_sizes, 0, dtype)
        fixed = estimate_memory_bytes(layer_sizes, 0, dtype)
        m_fit = max(0, (budget - fixed) // max(per_sample, 1))
        raise ConfigError(
            f"dlADMM would need about {_gib(need)} for its full-batch auxiliaries (z and a of "
            f"{len(layer_sizes) - 1} layers x {M} samples, dual u, temporaries; {_itemsize(dtype)}-byte "
            f"{str(dtype).replace('torch.', '')}) but only {_gib(avail)} is available on {device} "
            f"({_memory_source(device)}; the run may use {fraction:.0%} of it). Reduce n_train "
            f"(about {m_fit} samples fit at this width) or the width (layer sizes {layer_sizes})."
        )
    return need


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# ---------------------------------------------------------------------- initialisation


@torch.no_grad()
def init_state(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: DLADMMSettings | None = None) -> DLADMMState:
    """The state for ``model`` on the full batch ``(x, y)``: one forward pass gives z and a, u = 0.

    W and b are copies of the model's parameters (dtype and device of the model's first
    layer); ``x`` is flattened and moved there. The memory check runs before anything large
    is allocated.
    """
    settings = settings or DLADMMSettings()
    lins = linear_layers(model)
    dtype, device = lins[0].weight.dtype, lins[0].weight.device
    if not dtype.is_floating_point:
        raise ConfigError(f"dlADMM needs floating-point weights, got {dtype}")
    M = x.shape[0]
    sizes = [lins[0].in_features] + [m.out_features for m in lins]
    if math.prod(x.shape[1:]) != sizes[0]:
        raise ConfigError(f"input has {math.prod(x.shape[1:])} features per sample but the first Linear expects {sizes[0]}")
    if y.shape != (M,):
        raise ConfigError(f"labels must be a vector of {M} class indices, got shape {tuple(y.shape)}")
    if settings.check_memory:
        check_memory(sizes, M, dtype, device, settings.memory_fraction)
    a_prev = _flat(x, dtype, device)
    W = [m.weight.detach().clone() for m in lins]
    b = [m.bias.detach().clone() for m in lins]
    z, a = [], []
    for l in range(len(lins)):
        z.append(torch.addmm(b[l], a_prev, W[l].T))
        if l < len(lins) - 1:
            a.append(torch.relu(z[l]))
            a_prev = a[l]
    if settings.zl_init == "labels":
        z[-1] = -torch.ones_like(z[-1])
        z[-1][torch.arange(M, device=device), y.to(device)] = 1.0
    u = torch.zeros_like(z[-1])
    L = len(lins)
    nu = settings.rho if settings.nu is None else settings.nu
    return DLADMMState(
        W=W, b=b, z=z, a=a, u=u, rho=settings.rho, nu=nu,
        theta=[settings.theta0] * L, tau=[settings.tau0] * (L - 1),
        theta0=settings.theta0, tau0=settings.tau0, settings=settings,
    )


# ------------------------------------------------------------------------- subproblems
#
# Each block update is a pure function of tensors. The coupling of layer l is
#     phi_l = c/2 || a_{l-1} W_l^T + b_l - T_l ||^2
# with (c, T_l) = (nu, z_l) for l < L and (rho, z_L + u/rho) for l = L (the dual term
# <u, r> + rho/2 ||r||^2 equals rho/2 ||r + u/rho||^2 up to a constant in the primal variables).


def coupling(W: torch.Tensor, b: torch.Tensor, a_prev: torch.Tensor, target: torch.Tensor, c: float) -> torch.Tensor:
    """``c/2 ||a_prev W^T + b - target||^2`` (a 0-dim tensor)."""
    return 0.5 * c * torch.addmm(b, a_prev, W.T).sub_(target).square_().sum()


def update_b(W: torch.Tensor, a_prev: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Exact minimiser of ``phi_l`` in b: the per-unit mean of ``target - a_prev W^T``.

    Equals the authors' ``b - mean_grad/rho`` and the paper's step 1/c on the per-sample
    gradient; independent of c.
    """
    return (target - a_prev @ W.T).mean(dim=0)


@dataclass
class Backtrack:
    """Outcome of one quadratic-approximation step: ``t`` accepted, growths taken, and the
    three numbers of the test ``phi_new <= approx`` it ended on."""

    t: float
    growths: int
    phi_old: float
    phi_new: float
    approx: float


def _backtrack(g_sq: float, curv_g: float, phi_old: float, t0: float, factor: float, max_growths: int, what: str) -> Backtrack:
    """Grow t from t0 until ``phi(x - g/t) <= phi(x) - ||g||^2/t + t/2 ||g/t||^2`` (= the
    quadratic approximation at ``x - g/t``).

    ``phi`` is quadratic, so with ``d = -g/t``: ``phi(x + d) = phi(x) - ||g||^2/t + curv_g/t^2``
    exactly, where ``curv_g = phi(x + g) - phi(x) - ||g||^2`` is the curvature along g; the
    test is evaluated in this form, free of cancellation.
    """
    t = t0
    for k in range(max_growths + 1):
        # phi_new <= approx, both sides less phi(x) - |g|^2/t, then times t: no cancellation
        if curv_g / t <= 0.5 * g_sq:
            return Backtrack(t, k, phi_old, phi_old - g_sq / t + curv_g / (t * t), phi_old - 0.5 * g_sq / t)
        t *= factor
    raise DivergenceError(
        f"dlADMM: backtracking for {what} did not find a step after {max_growths} growths of t "
        f"(t = {t:.3g}, curvature {curv_g:.3g}, |grad|^2 {g_sq:.3g}); the variables are probably huge or NaN"
    )


def update_W(
    W: torch.Tensor, b: torch.Tensor, a_prev: torch.Tensor, target: torch.Tensor, c: float,
    t0: float, factor: float = 2.0, max_growths: int = 200, what: str = "W",
) -> tuple[torch.Tensor, Backtrack]:
    """One step ``W - G/t`` on ``phi_l`` with backtracking; ``G = c R^T a_prev``, R the residual.

    Curvature along G: ``c ||a_prev G^T||^2`` (so ``phi(W - G/t) = phi - |G|^2/t + c/2 |a G^T|^2/t^2``).
    """
    R = torch.addmm(b, a_prev, W.T).sub_(target)
    phi_old = 0.5 * c * float(R.square().sum())
    G = (R.T @ a_prev).mul_(c)
    del R
    g_sq = float(G.square().sum())
    if g_sq == 0.0:
        return W.clone(), Backtrack(t0, 0, phi_old, phi_old, phi_old)
    curv = 0.5 * c * float((a_prev @ G.T).square_().sum())
    bt = _backtrack(g_sq, curv, phi_old, t0, factor, max_growths, what)
    return G.div_(-bt.t).add_(W), bt


def a_objective(a: torch.Tensor, z: torch.Tensor, W_next: torch.Tensor, b_next: torch.Tensor, target_next: torch.Tensor, nu: float, c_next: float) -> torch.Tensor:
    """The a_l block of L_rho: ``nu/2 ||a - relu(z_l)||^2 + phi_{l+1}(a)``."""
    return 0.5 * nu * (a - torch.relu(z)).square().sum() + coupling(W_next, b_next, a, target_next, c_next)


def update_a(
    a: torch.Tensor, z: torch.Tensor, W_next: torch.Tensor, b_next: torch.Tensor, target_next: torch.Tensor,
    nu: float, c_next: float, t0: float, factor: float = 2.0, max_growths: int = 200, what: str = "a",
) -> tuple[torch.Tensor, Backtrack]:
    """One step ``a - g/t`` on :func:`a_objective` with backtracking.

    ``g = nu (a - relu(z)) + c R W_next``; curvature along g: ``nu |g|^2 + c |g W_next^T|^2``.
    """
    d_act = a - torch.relu(z)
    R = torch.addmm(b_next, a, W_next.T).sub_(target_next)
    phi_old = 0.5 * nu * float(d_act.square().sum()) + 0.5 * c_next * float(R.square().sum())
    g = torch.addmm(d_act.mul_(nu), R, W_next, alpha=c_next)
    del R, d_act
    g_sq = float(g.square().sum())
    if g_sq == 0.0:
        return a.clone(), Backtrack(t0, 0, phi_old, phi_old, phi_old)
    curv = 0.5 * (nu * g_sq + c_next * float((g @ W_next.T).square_().sum()))
    bt = _backtrack(g_sq, curv, phi_old, t0, factor, max_growths, what)
    return g.div_(-bt.t).add_(a), bt


def z_hidden_objective(z: torch.Tensor, m: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Elementwise ``(z - m)^2 + (a - relu(z))^2`` (the z_l block of L_rho over nu/2)."""
    return (z - m).square() + (a - torch.relu(z)).square()


def update_z_hidden(a_prev: torch.Tensor, W: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Exact minimiser, elementwise, of ``(z - m)^2 + (a - relu(z))^2``, ``m = a_prev W^T + b``.

    ReLU is linear on each side of 0: on ``z <= 0`` the minimiser is ``min(m, 0)``, on
    ``z >= 0`` it is ``max((m + a)/2, 0)``; keep the better one.
    """
    m = torch.addmm(b, a_prev, W.T)
    z_neg = m.clamp(max=0.0)
    z_pos = (m + a).mul_(0.5).clamp_(min=0.0)
    f_neg = (z_neg - m).square_().add_(a.square())
    f_pos = (z_pos - m).square_().add_((a - z_pos).square_())
    del m
    return torch.where(f_pos < f_neg, z_pos, z_neg)


def z_last_objective(z: torch.Tensor, y: torch.Tensor, target: torch.Tensor, rho: float) -> torch.Tensor:
    """The z_L block of L_rho: ``CE_sum(z; y) + rho/2 ||z - target||^2``, target = m - u/rho."""
    return F.cross_entropy(z, y, reduction="sum") + 0.5 * rho * (z - target).square().sum()


def update_z_last(
    z0: torch.Tensor, y: torch.Tensor, target: torch.Tensor, rho: float,
    step: float = 2.0, iters: int = 500, tol: float = 1e-3,
) -> tuple[torch.Tensor, int]:
    """FISTA (Beck and Teboulle) on :func:`z_last_objective` from ``z0``.

    Gradient step on the summed cross-entropy, exact prox of the quadratic:
    ``prox(v) = (v + step rho target) / (1 + step rho)``. Stops after ``iters`` or when the
    objective changes by less than ``tol``; returns the better of ``z0`` and the last iterate
    (FISTA is not monotone) and the number of iterations run.
    """
    rows = torch.arange(z0.shape[0], device=z0.device)
    f0 = float(z_last_objective(z0, y, target, rho))
    f_x = f0
    x_prev, yk, tk = z0, z0, 1.0
    shift = target * (step * rho)
    denom = 1.0 + step * rho
    k = 0
    for k in range(1, iters + 1):
        g = torch.softmax(yk, dim=1)
        g[rows, y] -= 1.0
        x = yk.sub(g, alpha=step).add_(shift).div_(denom)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        yk = (x - x_prev).mul_((tk - 1.0) / t_next).add_(x)
        x_prev, tk = x, t_next
        if tol > 0:
            f = float(z_last_objective(x, y, target, rho))
            done = abs(f_x - f) < tol
            f_x = f
            if done:
                break
    if tol <= 0:
        f_x = float(z_last_objective(x_prev, y, target, rho))
    return (x_prev if f_x <= f0 else z0.clone()), k


# --------------------------------------------------------------------------- iteration


def _check(t: torch.Tensor, name: str, layer: int, state: DLADMMState, where: str) -> None:
    if state.settings.check_finite and not bool(torch.isfinite(t).all()):
        raise DivergenceError(
            f"dlADMM diverged: {name}_{layer + 1} (layer {layer + 1} of {state.num_layers}) holds NaN/Inf "
            f"after its {where} update at iteration {state.iteration + 1} (rho={state.rho:g}, nu={state.nu:g}); "
            f"try another rho or init"
        )


class _Sweep:
    """Block updates of one iteration, sharing the state and the flattened input."""

    def __init__(self, state: DLADMMState, x: torch.Tensor, y: torch.Tensor):
        self.s = state
        self.x = x
        self.y = y
        self.L = state.num_layers
        self.info = {"W_growths": 0, "a_growths": 0, "zl_iters": 0}

    def a_prev(self, l: int) -> torch.Tensor:
        return self.x if l == 0 else self.s.a[l - 1]

    def coupling_of(self, l: int) -> tuple[float, torch.Tensor]:
        """(c, target) of layer l's coupling."""
        s = self.s
        if l == self.L - 1:
            return s.rho, s.z[l] + s.u / s.rho
        return s.nu, s.z[l]

    def _t0(self, last: float, first: float) -> float:
        if self.s.settings.backtrack_start == "adaptive":
            return last / self.s.settings.backtrack_factor
        return first

    def z(self, l: int, where: str) -> None:
        s = self.s
        if l == self.L - 1:
            m = torch.addmm(s.b[l], self.a_prev(l), s.W[l].T)
            target = m.sub_(s.u / s.rho)
            st = s.settings
            s.z[l], k = update_z_last(s.z[l], self.y, target, s.rho, st.zl_step, st.zl_iters, st.zl_tol)
            self.info["zl_iters"] += k
        else:
            s.z[l] = update_z_hidden(self.a_prev(l), s.W[l], s.b[l], s.a[l])
        _check(s.z[l], "z", l, s, where)

    def b(self, l: int, where: str) -> None:
        s = self.s
        _, target = self.coupling_of(l)
        s.b[l] = update_b(s.W[l], self.a_prev(l), target)
        _check(s.b[l], "b", l, s, where)

    def W(self, l: int, where: str) -> None:
        s, st = self.s, self.s.settings
        c, target = self.coupling_of(l)
        s.W[l], bt = update_W(s.W[l], s.b[l], self.a_prev(l), target, c, self._t0(s.theta[l], s.theta0),
                              st.backtrack_factor, st.max_backtracks, f"W_{l + 1}")
        s.theta[l] = bt.t
        self.info["W_growths"] += bt.growths
        _check(s.W[l], "W", l, s, where)

    def a(self, l: int, where: str) -> None:
        """Update a_l (hidden layer l, 0-based), coupled to layer l + 1."""
        s, st = self.s, self.s.settings
        c, target = self.coupling_of(l + 1)
        s.a[l], bt = update_a(s.a[l], s.z[l], s.W[l + 1], s.b[l + 1], target, s.nu, c,
                              self._t0(s.tau[l], s.tau0), st.backtrack_factor, st.max_backtracks, f"a_{l + 1}")
        s.tau[l] = bt.t
        self.info["a_growths"] += bt.growths
        _check(s.a[l], "a", l, s, where)

    def backward(self) -> None:
        for l in reversed(range(self.L)):
            self.z(l, "backward")
            self.b(l, "backward")
            self.W(l, "backward")
            if l > 0:
                self.a(l - 1, "backward")

    def forward(self) -> None:
        for l in range(self.L):
            self.W(l, "forward")
            self.b(l, "forward")
            self.z(l, "forward")
            if l < self.L - 1:
                self.a(l, "forward")

    def dual(self) -> None:
        s = self.s
        r = _residual(s, self.x)
        s.u.add_(r, alpha=s.rho)
        _check(s.u, "u", self.L - 1, s, "dual")


@torch.no_grad()
def primal_sweep(state: DLADMMState, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The backward and forward block updates of one iteration, without the dual step."""
    sweep = _Sweep(state, _flat(x, state.W[0].dtype, state.W[0].device), y.to(state.W[0].device))
    sweep.backward()
    sweep.forward()
    return sweep.info


@torch.no_grad()
def dual_step(state: DLADMMState, x: torch.Tensor) -> None:
    """``u <- u + rho (z_L - W_L a_{L-1} - b_L)``."""
    _Sweep(state, _flat(x, state.W[0].dtype, state.W[0].device), torch.empty(0)).dual()


@torch.no_grad()
def iterate(state: DLADMMState, x: torch.Tensor, y: torch.Tensor) -> dict:
    """One dlADMM iteration (backward sweep, forward sweep, dual step), in place.

    Returns diagnostics: backtracking growths taken, FISTA iterations, rho, and (with the
    safeguard on) the training loss it watched. Raises DivergenceError on NaN/Inf.
    """
    info = primal_sweep(state, x, y)
    dual_step(state, x)
    if state.settings.loss_safeguard:
        info["train_loss"] = _safeguard(state, x, y)
    state.iteration += 1
    info["rho"] = state.rho
    info["nu"] = state.nu
    return info


def _safeguard(state: DLADMMState, x: torch.Tensor, y: torch.Tensor) -> float:
    """Authors' code: after ``safeguard_rises`` consecutive rises of the training loss of the
    composed network, multiply rho (and nu when tied to it) by the growth factor, capped, and
    the backtracking start constants too (only for wide enough networks)."""
    st = state.settings
    loss, _ = network_loss(state, x, y)
    h = state.loss_history
    h.append(loss)
    n = st.safeguard_rises
    if len(h) > n and all(h[-i] > h[-i - 1] for i in range(1, n + 1)):
        state.rho = min(st.safeguard_growth * state.rho, st.safeguard_rho_max)
        if st.nu is None:
            state.nu = state.rho
        if max(state.layer_sizes[1:-1], default=0) >= st.safeguard_min_width:
            state.theta0 *= st.safeguard_growth
            state.tau0 *= st.safeguard_growth
    return loss


# ------------------------------------------------------------------------- diagnostics


def _residual(state: DLADMMState, x: torch.Tensor) -> torch.Tensor:
    L = state.num_layers
    a_prev = x if L == 1 else state.a[L - 2]
    return state.z[-1] - torch.addmm(state.b[-1], a_prev, state.W[-1].T)


@torch.no_grad()
def residual(state: DLADMMState, x: torch.Tensor | None = None) -> float:
    """``||z_L - W_L a_{L-1} - b_L||`` (Frobenius), the one constraint's violation.

    ``x`` is needed only for a single-layer network (then ``a_0 = x``).
    """
    if state.num_layers == 1:
        if x is None:
            raise ConfigError("residual of a one-layer network needs the input x")
        x = _flat(x, state.W[0].dtype, state.W[0].device)
    return float(torch.linalg.vector_norm(_residual(state, x)))


@torch.no_grad()
def augmented_lagrangian(state: DLADMMState, x: torch.Tensor, y: torch.Tensor) -> float:
    """``L_rho``: summed cross-entropy of z_L, the nu-penalties of the inner layers, and
    ``<u, r> + rho/2 ||r||^2`` of the last layer's constraint."""
    x = _flat(x, state.W[0].dtype, state.W[0].device)
    y = y.to(state.W[0].device)
    s = state
    total = float(F.cross_entropy(s.z[-1], y, reduction="sum"))
    for l in range(s.num_layers - 1):
        a_prev = x if l == 0 else s.a[l - 1]
        total += float(coupling(s.W[l], s.b[l], a_prev, s.z[l], s.nu))
        total += 0.5 * s.nu * float((s.a[l] - torch.relu(s.z[l])).square().sum())
    r = _residual(s, x)
    total += float((s.u * r).sum()) + 0.5 * s.rho * float(r.square().sum())
    return total


@torch.no_grad()
def network_loss(state: DLADMMState, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the composed network ``W, b`` on ``(x, y)``."""
    h = _flat(x, state.W[0].dtype, state.W[0].device)
    y = y.to(h.device)
    for l in range(state.num_layers):
        h = torch.addmm(state.b[l], h, state.W[l].T)
        if l < state.num_layers - 1:
            h.relu_()
    return float(F.cross_entropy(h, y)), float((h.argmax(1) == y).float().mean())


@torch.no_grad()
def write_back(state: DLADMMState, model: nn.Module) -> None:
    """Copy W, b into the model's ``nn.Linear`` layers (so the suite's evaluation sees them)."""
    lins = linear_layers(model)
    if len(lins) != state.num_layers:
        raise ConfigError(f"model has {len(lins)} Linear layers, the dlADMM state {state.num_layers}")
    for lin, W, b in zip(lins, state.W, state.b):
        lin.weight.copy_(W)
        lin.bias.copy_(b)


# ------------------------------------------------------------------------- the method

#: What a checkpoint keeps of the state: tensors (lists of them) and plain numbers.
_SAVED = ("W", "b", "z", "a", "u", "rho", "nu", "theta", "tau", "theta0", "tau0", "iteration", "loss_history")


class DLADMM(Solver):
    """dlADMM as a method of the suite: one stage holding the whole MLP (its splitting is
    layerwise by construction, so the split level n does not apply and runs record n = 1);
    one epoch is one full-batch iteration (:func:`iterate`); the weights are written back
    into the network after each, so evaluation, records and figures are the suite's own."""

    name = "dladmm"
    label = "dlADMM"
    style = {"color": "#9467bd", "linestyle": (0, (6, 1.5, 1, 1.5)), "linewidth": 1.5, "marker": "D", "zorder": 3}
    Settings = DLADMMSettings
    end_to_end = True
    layerwise = True
    #: the defaults are the paper's; ``demo`` is the authors' code where it differs (see the table above)
    presets = {"paper": {}, "demo": {"zl_step": 4.0, "zl_init": "labels", "loss_safeguard": True, "init": "demo"}}
    ignores = ("lr", "batch_size", "optimizer_impl")  # no gradient steps, no minibatches
    full_batch = True

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.model != "mlp":
            raise ConfigError(f"method 'dladmm' trains fully connected networks only: use model 'mlp' "
                              f"(got {cfg.model!r}; dlADMM has no update for conv or residual blocks)")

    def setup(self, stage: Stage) -> None:
        """The full-batch state (memory checked before anything large is allocated); no optimizer."""
        stage.init_params = [p.detach().clone() for p in stage.net.parameters()]
        stage.scratch["dladmm"] = init_state(stage.net, self.x, self.y, self.settings)
        sizes = stage.scratch["dladmm"].layer_sizes
        self.estimate_mb = estimate_memory_bytes(sizes, self.M, stage.scratch["dladmm"].W[0].dtype) / 2**20

    def step_phases(self):
        return [self.iteration]

    def iteration(self, stage: Stage, rows: torch.Tensor, box) -> None:
        state = stage.scratch["dladmm"]
        iterate(state, self.x, self.y)
        write_back(state, stage.net)

    def epoch_metrics(self, stage: Stage) -> dict[str, float]:
        state = stage.scratch["dladmm"]
        return {"lagrangian": augmented_lagrangian(state, self.x, self.y), "residual": residual(state, self.x),
                "dladmm_rho": state.rho, "aux_mb": state_nbytes(state) / 2**20, "aux_estimate_mb": self.estimate_mb}

    def state_dict(self, stage: Stage) -> dict:
        state = stage.scratch["dladmm"]
        return {k: getattr(state, k) for k in _SAVED}

    def load_state_dict(self, stage: Stage, saved: dict) -> None:
        state = stage.scratch["dladmm"]
        device = state.W[0].device
        for k in _SAVED:
            v = saved[k]
            if isinstance(v, torch.Tensor):
                v = v.to(device)
            elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
                v = [t.to(device) for t in v]
            setattr(state, k, v)
        write_back(state, stage.net)
