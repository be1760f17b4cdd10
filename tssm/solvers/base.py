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

from ..config import RunConfig
from ..errors import DivergenceError


class Mailbox(Protocol):
    """Point-to-point exchange between stages (by stage index, not rank)."""

    def send(self, src: int, dst: int, tensor: torch.Tensor) -> None: ...

    def recv(self, src: int, dst: int, shape: tuple[int, ...]) -> torch.Tensor: ...


@dataclass
class Stage:
    """Subnetwork ``index`` of ``count`` and what it owns.

    ``p`` is the auxiliary input of the subnetwork (all M rows; the data for stage 0),
    ``q``/``u`` the auxiliary output and dual variable of the cut after it (gsADMM only).
    ``in_shape``/``out_shape`` are per-sample shapes, so neighbours can size messages.
    """

    index: int
    count: int
    net: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    optimizer: torch.optim.Optimizer | None = None
    p: torch.Tensor | None = None
    q: torch.Tensor | None = None
    u: torch.Tensor | None = None
    init_params: list[torch.Tensor] = field(default_factory=list)
    last_output: torch.Tensor | None = None  # output of the last W-step's forward (``q_forward: reuse``)
    # What one phase leaves for a later one: gsADMM's deferred q/u update (rows, f), gsAM's
    # W-step target and data gradient for the p sweep (target, grad or None).
    pending: tuple[torch.Tensor, torch.Tensor | None] | None = None

    @property
    def first(self) -> bool:
        return self.index == 0

    @property
    def last(self) -> bool:
        return self.index == self.count - 1

    def aux(self) -> dict[str, torch.Tensor]:
        """The auxiliary variables this stage owns (for checkpoints and divergence checks)."""
        return {k: v for k, v in (("p", self.p), ("q", self.q), ("u", self.u)) if v is not None and not (k == "p" and self.first)}


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
    """One method. Subclasses set ``phases`` (one training step) and may override hooks.

    ``stage_loss`` is the local objective a stage's W-step minimises: the cross-entropy
    for the last stage and, for the others, ``alpha/2`` times the mean squared distance of
    the output to ``target`` (Omega of the paper estimated on a minibatch). Its gradient
    with respect to the stage input gives the data term of the p-step.
    """

    name = "base"
    trains_aux = False
    check_finite = False  # raise DivergenceError at the first non-finite W-step loss

    def __init__(self, cfg: RunConfig, x_train: torch.Tensor, y_train: torch.Tensor):
        self.cfg = cfg
        self.x, self.y = x_train, y_train
        self.M = num_train = len(x_train)
        # 'paper': Omega and R averaged over all M samples, so the data term of a p row is
        # scaled 1/M; 'sample': summed over samples, so it is not shrunk.
        self.c = 1.0 / num_train if cfg.scaling == "paper" else 1.0

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

    def epoch_phases(self) -> list[Phase]:
        """Phases run over all rows (in chunks) at the end of each epoch."""
        return []

    def end_phases(self) -> list[Phase]:
        """Phases run once at the very end of each epoch: work deferred by the steps."""
        return []

    # -- shared pieces ------------------------------------------------------------------
    def inputs(self, stage: Stage, rows: torch.Tensor) -> torch.Tensor:
        """The stage's input rows: the data for the first stage, its p rows otherwise."""
        return self.x[rows] if stage.first else stage.p[rows]

    def stage_loss(self, stage: Stage, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Minibatch mean of the stage's data term (CE for the last stage, Omega otherwise)."""
        if stage.last:
            return F.cross_entropy(out, target)
        return 0.5 * self.cfg.alpha * (out - target).pow(2).flatten(1).sum(1).mean()

    def w_step(self, stage: Stage, inputs: torch.Tensor, target: torch.Tensor, *, input_grad: bool = False):
        """One optimizer step on ``stage_loss``; returns (loss, gradient of the p rows).

        The returned gradient is the p-step's data term, scaled as ``scaling`` says, taken
        from the same backward pass (it costs one extra matrix product, not a pass).
        """
        x = inputs.detach().requires_grad_(input_grad)
        out = stage.net(x)
        stage.last_output = out.detach()
        loss = self.stage_loss(stage, out, target)
        stage.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stage.optimizer.step()
        if self.check_finite and not math.isfinite(loss.item()):
            raise DivergenceError(f"the W-step loss of subnetwork {stage.index + 1} is {loss.item()}")
        grad = x.grad * (len(x) * self.c) if input_grad else None
        return loss.detach(), grad

    @torch.no_grad()
    def output_after_step(self, stage: Stage, rows: torch.Tensor) -> torch.Tensor:
        """``f_l(W_l, p_l)`` on ``rows`` for the q-step (gsADMM) or the sweep (gsAM).

        ``q_forward: fresh`` runs the forward pass at the new weights and inputs, as the paper
        says; ``reuse`` (batch schedule) takes the W-step's own forward output, made at the old
        ones: one forward pass fewer per step, a Jacobi-style approximation like ``p_grad: fused``.
        """
        out = stage.last_output
        stage.last_output = None
        if not self.cfg.recomputes_output and out is not None:
            return out
        return stage.net(self.inputs(stage, rows))

    def data_grad(self, stage: Stage, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The p-step's data term at the current weights (``p_grad: exact``)."""
        x = inputs.detach().requires_grad_(True)
        loss = self.stage_loss(stage, stage.net(x), target)
        (g,) = torch.autograd.grad(loss, x)
        return g * (len(x) * self.c)
