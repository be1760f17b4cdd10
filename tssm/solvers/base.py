"""Shared machinery of every solver: stages, messages, the W-step.

A *stage* is one subnetwork with the optimizer and the auxiliary variables it owns. A
solver describes one training step as a list of *phases*; each phase is a function
``phase(stage, rows, box)`` that does the work of one stage and talks to its neighbours
only through the mailbox ``box``. An executor (``tssm.parallel``) runs every phase for
every stage it holds: all stages in one process (serial reference), or one
``torch.distributed`` rank per stage. The solver never knows which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import DEFAULT_LR, MethodSettings, RunView, option
from ..errors import DivergenceError
from ..roles import derived_role

PAPER_VALUES = "the paper uses alpha=rho=1, tau1=tau2=100"

#: Presets of the split methods and their frozen control (each method takes the keys it
#: reads: gsAM and frozen drop rho, frozen keeps only the W-step and the init).
#: ``paper``: the paper's text read literally: alpha = rho = 1, tau1 = tau2 = 100, Omega and R
#: averaged over M, Algorithm 1 on every minibatch, Eq. 4 with the data gradient at W^{k+1},
#: q at the new weights; the W-step "W - grad/tau1" is plain SGD with lr 1/tau1 (Adam with
#: lr 1/tau1 is ``--optimizer adam``). ``demo``: the authors' released code: full-data p, q, u
#: once per epoch, rho 10, tau2 1e4, per-sample scaling, Adam 1e-3, safeguard 0.1, N(0, 0.1).
TSSM_PRESETS: dict[str, dict] = {
    "paper": {"alpha": 1.0, "rho": 1.0, "tau1": 100.0, "tau2": 100.0, "optimizer": "sgd", "scaling": "paper",
              "schedule": "batch", "p_grad": "exact", "q_forward": "fresh", "safeguard": None, "init": "kaiming"},
    "demo": {"alpha": 1.0, "rho": 10.0, "tau1": None, "tau2": 1e4, "optimizer": "adam", "scaling": "sample",
             "schedule": "epoch", "p_grad": "fused", "q_forward": "fresh", "safeguard": 0.1, "init": "demo"},
}


@dataclass
class WStepSettings(MethodSettings):
    """Settings of a method that trains subnetworks on local targets with an optimizer."""

    optimizer: str = option("adam", choices=("sgd", "adam"), help="W-step optimizer")
    tau1: float | None = option(None, positive=True, hint=PAPER_VALUES,
                                help="the paper's W-step step size 1/tau1 (paper: 100); null: the optimizer's default lr")

    def lr(self, common_lr: float | None, default_optimizer: str) -> tuple[str, float]:
        if common_lr is not None:
            return self.optimizer, common_lr
        if self.tau1 is not None:
            return self.optimizer, 1.0 / self.tau1
        return self.optimizer, DEFAULT_LR[self.optimizer]


@dataclass
class TSSMSettings(WStepSettings):
    """What gsADMM and gsAM both read: the objective's weights and scaling, the schedule, and
    the two approximations a step may take."""

    alpha: float = option(1.0, positive=True, hint=PAPER_VALUES, help="weight of the fit terms Omega")
    tau2: float = option(100.0, positive=True, hint=PAPER_VALUES, help="the p-step's step size is 1/tau2")
    schedule: str = option("batch", choices=("batch", "epoch"),
                           help="batch: p, q, u on the minibatch rows every step (Algorithm 1); "
                                "epoch: W-steps for a pass, then full-data p, q, u once (the demo)")
    p_grad: str = option("fused", choices=("fused", "exact"),
                         help="p-step data gradient from the W-step's backward at W^k (fused) or at W^{k+1} (exact, Eq. 4)")
    q_forward: str = option("fresh", choices=("fresh", "reuse"),
                            help="f_l for the q-step/sweep at the new weights (fresh, the paper) or the W-step's output (reuse)")
    scaling: str = option("paper", choices=("paper", "sample"),
                          help="objective averaged over the M samples (paper) or summed (sample, the demo's alpha = rho M)")
    safeguard: float | None = option(None, positive=True,
                                     help="epoch schedule: restore the epoch's weights if the training loss rose by more than this")


class PendingRecv(Protocol):
    def wait(self) -> torch.Tensor: ...


class Mailbox(Protocol):
    """Point-to-point exchange between stages (by stage index, not rank).

    Messages between two stages arrive in the order they were sent. Under NCCL a send
    completes only once the peer has posted the matching receive, and a pair of ranks shares
    one ordered stream: a phase that must send to a neighbour before it reads a message from
    that neighbour which was sent earlier posts that receive first (``post_recv``), else the
    two ranks can wait on each other (tests/test_nccl_order.py checks every method).
    """

    def send(self, src: int, dst: int, tensor: torch.Tensor) -> None: ...

    def recv(self, src: int, dst: int, shape: tuple[int, ...]) -> torch.Tensor: ...

    def post_recv(self, src: int, dst: int, shape: tuple[int, ...]) -> PendingRecv:
        """Post a receive now, read it later with ``.wait()``."""


@dataclass
class Stage:
    """Subnetwork ``index`` of ``count`` and what it owns.

    ``state`` holds the method's persistent variables of this stage (gsADMM: ``p``, ``q``,
    ``u``), as plain tensors over all M rows, the way torch.optim keeps ``self.state[p]``: the
    solver's ``state_dict``/``load_state_dict`` checkpoint them. ``scratch`` holds what one
    phase leaves for a later one within an epoch (never checkpointed: empty at epoch ends).
    ``in_shape``/``out_shape`` are per-sample shapes, so neighbours can size messages.
    """

    index: int
    count: int
    net: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    optimizer: torch.optim.Optimizer | None = None
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    scratch: dict[str, torch.Tensor] = field(default_factory=dict)
    init_params: list[torch.Tensor] = field(default_factory=list)

    @property
    def first(self) -> bool:
        return self.index == 0

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


Phase = Callable[[Stage, torch.Tensor, Mailbox], None]


def make_optimizer(name: str, params, lr: float, impl: str = "fused") -> torch.optim.Optimizer:
    """The W-step optimizer: plain SGD or Adam with PyTorch's defaults otherwise.

    ``impl`` picks torch.optim's implementation of the same update. ``fused`` (one kernel for
    all parameters, on CPU and CUDA) makes Adam's step about 3x cheaper on CPU than the
    for-loop PyTorch uses by default there; every method gets the same one, so the
    comparison stays fair. The three differ only in floating-point rounding.
    """
    params = list(params)
    kind = {"fused": {"fused": True}, "foreach": {"foreach": True}, "forloop": {"foreach": False}}[impl]
    return torch.optim.SGD(params, lr=lr, **kind) if name == "sgd" else torch.optim.Adam(params, lr=lr, **kind)


@torch.no_grad()
def forward_rows(net: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``net(x)`` in chunks of rows, without autograd (evaluation and initialisation)."""
    return torch.cat([net(c) for c in x.split(chunk)]) if len(x) else net(x)


class Solver:
    """One method: what it is (traits), what it reads (``Settings``), what one step does
    (phases) and the per-stage state it keeps.

    A method is one file with a subclass and one line in ``tssm.solvers.SOLVERS``; the
    config, the CLI, the pipeline's schema and the summaries read these declarations.

    ``stage_loss`` is the local objective a stage's W-step minimises: the cross-entropy
    for the last stage and, for the others, ``alpha/2`` times the mean squared distance of
    the output to ``target`` (Omega of the paper estimated on a minibatch). Its gradient
    with respect to the stage input gives the data term of the p-step.
    """

    name = "base"
    Settings: type[MethodSettings] = MethodSettings
    #: trains the whole network by backprop (only n = 1)
    end_to_end = False
    #: keeps auxiliary variables per stage (p, q, u); evaluation then measures the fit terms
    trains_aux = False
    #: optimizer when the settings name none (end-to-end methods: the method itself)
    default_optimizer = "adam"
    #: splits the network at every layer by construction (the split level n does not apply)
    layerwise = False
    #: one step per epoch over all training rows (full batch), instead of minibatches
    full_batch = False
    check_finite = False  # raise DivergenceError at the first non-finite W-step loss
    #: named sets of settings (``--preset``): {preset: {key: value}}, keys of RunConfig or of
    #: ``Settings``; keys the method does not read are dropped (see tssm.presets). Empty: the
    #: method's defaults are that preset.
    presets: dict[str, dict] = {"paper": {}, "demo": {}}
    #: common settings that mean nothing to this method (refused if given; never tuned)
    ignores: tuple[str, ...] = ()
    #: what tables and figures make of it (tssm.roles): a role of ``ROLES`` (None: the one its
    #: traits imply), a display label (None: the name) and a matplotlib style (color, marker,
    #: linestyle, linewidth, zorder ...; None: one handed out by registry order)
    role: str | None = None
    label: str | None = None
    style: dict | None = None

    @classmethod
    def reporting_role(cls) -> str:
        """The declared role, else the one the traits imply (end-to-end: baseline ...)."""
        return cls.role or derived_role(cls.end_to_end, cls.layerwise)

    @classmethod
    def record_fields(cls) -> dict[str, str]:
        """What ``run.json`` records of the method for reporting: its role and label."""
        return {"role": cls.reporting_role(), "label": cls.label or cls.name}

    def __init__(self, cfg: RunView, x_train: torch.Tensor, y_train: torch.Tensor):
        self.cfg = cfg
        self.settings = cfg.settings
        self.x, self.y = x_train, y_train
        self.M = len(x_train)
        # The factor of the per-sample data terms in the objective: 1/M (averaged, the paper)
        # or 1 (summed); it scales the data gradient that reaches p.
        self.data_scale = 1.0 / self.M if getattr(self.settings, "scaling", "paper") == "paper" else 1.0

    @classmethod
    def check(cls, cfg: RunView) -> None:
        """Refuse (ConfigError) a config this method cannot run, before anything is loaded."""

    def epoch_metrics(self, stage: Stage) -> dict[str, float]:
        """Method-specific figures of ``stage`` recorded with each evaluation (none by default)."""
        return {}

    @classmethod
    def recomputes_output(cls, settings: MethodSettings) -> bool:
        """Whether a step runs each subnetwork's forward a second time after its W-step
        (every subnetwork but the last pays for it; ``balance: compute`` counts it)."""
        return False

    def safeguard(self) -> float | None:
        """The rise of the training loss over an epoch past which the epoch's weight updates
        are taken back (the authors' demo), or None."""
        return None

    # -- per-stage state (checkpoints) --------------------------------------------------
    def state_dict(self, stage: Stage) -> dict[str, torch.Tensor]:
        """The stage's persistent variables (what a checkpoint must restore)."""
        return dict(stage.state)

    def load_state_dict(self, stage: Stage, state: dict[str, torch.Tensor]) -> None:
        device = next(iter(stage.net.parameters())).device
        stage.state = {k: v.to(device) for k, v in state.items()}

    # -- what an executor calls ---------------------------------------------------------
    def setup(self, stage: Stage) -> None:
        """Create the optimizer (and nothing else by default)."""
        if self.trains(stage):
            stage.optimizer = make_optimizer(self.cfg.w_optimizer, stage.net.parameters(), self.cfg.w_lr, self.cfg.optimizer_impl)
        stage.init_params = [p.detach().clone() for p in stage.net.parameters()]

    def trains(self, stage: Stage) -> bool:
        return True

    def init_phases(self) -> list[Phase]:
        """Phases run once over all rows before training (auxiliary variables)."""
        return []

    def step_phases(self) -> list[Phase]:
        """Phases of one minibatch step."""
        raise NotImplementedError

    def full_pass_phases(self) -> list[Phase]:
        """Phases run over all rows (in chunks of ``chunk_rows``) after an epoch's steps."""
        return []

    def flush_phases(self) -> list[Phase]:
        """Phases run once at the very end of each epoch: work the steps deferred."""
        return []

    # -- evaluation diagnostics (methods with auxiliary variables) ------------------------
    def cut_terms(self, stage: Stage, f: torch.Tensor, p_next: torch.Tensor, n: int
                  ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        """Fit and constraint terms of the cut after ``stage``, given ``f = f_l(W_l, p_l)`` and the
        next stage's ``p_{l+1}`` over all rows: (``fit``, ``resid`` and optionally ``coupling``
        sums; the message on the first ``n`` rows that the next stage's :meth:`p_coupling`
        receives; the W-step target of ``stage`` on those rows)."""
        raise NotImplementedError

    def p_coupling(self, stage: Stage, p: torch.Tensor, box: Mailbox) -> torch.Tensor:
        """The coupling part of the p-step's gradient on the rows ``p``, from the message the
        previous stage's :meth:`cut_terms` sent."""
        raise NotImplementedError

    # -- shared pieces ------------------------------------------------------------------
    def inputs(self, stage: Stage, rows: torch.Tensor) -> torch.Tensor:
        """The stage's input rows: the data for the first stage, its p rows otherwise."""
        return self.x[rows] if stage.first else stage.state["p"][rows]

    def stage_loss(self, stage: Stage, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Minibatch mean of the stage's data term (CE for the last stage, Omega otherwise)."""
        if stage.last:
            return F.cross_entropy(out, target)
        return 0.5 * self.settings.alpha * (out - target).pow(2).flatten(1).sum(1).mean()

    def w_step(self, stage: Stage, inputs: torch.Tensor, target: torch.Tensor, *, input_grad: bool = False):
        """One optimizer step on ``stage_loss``; returns (loss, gradient of the p rows).

        The returned gradient is the p-step's data term, scaled as ``scaling`` says, taken
        from the same backward pass (it costs one extra matrix product, not a pass).
        """
        x = inputs.detach().requires_grad_(input_grad)
        out = stage.net(x)
        stage.scratch["w_output"] = out.detach()
        loss = self.stage_loss(stage, out, target)
        stage.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stage.optimizer.step()
        if self.check_finite and not math.isfinite(loss.item()):
            raise DivergenceError(f"the W-step loss of subnetwork {stage.index + 1} is {loss.item()}")
        grad = x.grad * (len(x) * self.data_scale) if input_grad else None
        return loss.detach(), grad

    @torch.no_grad()
    def output_after_step(self, stage: Stage, rows: torch.Tensor) -> torch.Tensor:
        """``f_l(W_l, p_l)`` on ``rows`` for the q-step (gsADMM) or the sweep (gsAM).

        ``q_forward: fresh`` runs the forward pass at the new weights and inputs, as the paper
        says; ``reuse`` (batch schedule) takes the W-step's own forward output, made at the old
        ones: one forward pass fewer per step, a Jacobi-style approximation like ``p_grad: fused``.
        """
        out = stage.scratch.pop("w_output", None)
        if not self.recomputes_output(self.settings) and out is not None:
            return out
        return stage.net(self.inputs(stage, rows))

    def data_grad(self, stage: Stage, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The p-step's data term at the current weights (``p_grad: exact``)."""
        x = inputs.detach().requires_grad_(True)
        loss = self.stage_loss(stage, stage.net(x), target)
        (g,) = torch.autograd.grad(loss, x)
        return g * (len(x) * self.data_scale)


class TSSMSolver(Solver):
    """What gsADMM and gsAM share: their settings, their traits, and the initial auxiliary
    inputs ``p_l`` from one forward pass."""

    Settings = TSSMSettings
    trains_aux = True
    presets = TSSM_PRESETS

    @classmethod
    def recomputes_output(cls, settings: TSSMSettings) -> bool:
        return not (settings.q_forward == "reuse" and settings.schedule == "batch")

    def safeguard(self) -> float | None:
        return self.settings.safeguard if self.settings.schedule == "epoch" else None

    def init_phases(self):
        return [self.init_aux]

    def init_aux(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """p_l from the previous stage's forward pass over all rows; sends f_l on."""
        if not stage.first:
            stage.state["p"] = box.recv(stage.index - 1, stage.index, (self.M, *stage.in_shape))
        if not stage.last:
            out = forward_rows(stage.net, self.inputs(stage, rows), self.cfg.chunk_rows)
            box.send(stage.index, stage.index + 1, out)
            self.init_cut(stage, out)

    def init_cut(self, stage: Stage, out: torch.Tensor) -> None:
        """Variables of the cut after ``stage`` from its initial output (none by default)."""
