"""Decoupled Greedy Learning (Belilovsky, Eickenberg, Oyallon, ICML 2020): local losses.

Every subnetwork but the last gets a small auxiliary classifier head and trains, with its
head, on the cross-entropy of that head's prediction; the last subnetwork trains on the
network's own cross-entropy. The output of subnetwork l, computed before its update and
detached, is the input of subnetwork l+1. Only activations travel, forward: no gradient,
target or auxiliary variable comes back, so no subnetwork ever waits for a later one.

The head (``aux_head``), as the DGL code's ``auxillary_classifier2`` without its optional
convolutions and MLP layers: a linear classifier on a flat output (the MLP's blocks); on an
image-shaped output (C, H, W) (CNN, ResNet) an average pool to 2 x 2, flattened, then a linear
classifier on the 4C features. BatchNorm is left out, as in the models here. Heads are
initialised by PyTorch's default from a generator seeded by (seed, subnetwork), so every rank
builds the same head; they are trained by the stage's optimizer together with its weights and
checkpointed with the stage. They are extra cost: their parameters and training FLOPs per
sample are recorded with every evaluation (``head_params_<l>``, ``head_flops_<l>``).

Schedules (``pipelining``):

- ``same_batch``: in step k every subnetwork trains on minibatch k, subnetwork l+1 on the
  output subnetwork l made of it in the same step (DGL's Algorithm 1; the serial reference).
- ``lagged``: subnetwork l trains on minibatch k-l in step k, on the message subnetwork l-1
  sent in step k-1; the last n-1 minibatches of an epoch are finished by a flush phase. Under
  the distributed executor no receive then waits for work of the same step: neighbouring
  ranks compute at the same time by construction. What it changes: only *when* a subnetwork
  trains on a minibatch, never on what. DGL's updates of subnetwork l depend only on the
  stream of inputs it receives, so each subnetwork sees the same inputs in the same order and
  the epoch ends with the same weights, bit for bit (a test checks it). (Under ``same_batch``
  a rank still runs ahead of the next one, its sends queueing in the mailbox; ``lagged`` makes
  the overlap a property of the schedule instead of the transport's buffering.)

Message order: every message goes from subnetwork l to l+1, sent and received in the same
order on both sides, with no message ever going back: no wait cycle can form, whatever the
transport buffers (NCCL's rules included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..settings import option
from .base import Mailbox, Solver, Stage, WStepSettings, make_optimizer


@dataclass
class DGLSettings(WStepSettings):
    pipelining: str = option("same_batch", choices=("same_batch", "lagged"),
                             help="same_batch: subnetwork l+1 trains on what l made of the same minibatch (DGL's "
                                  "Algorithm 1); lagged: on what l made one step earlier (same numbers, overlap by construction)")


def aux_head(out_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The auxiliary classifier of a subnetwork with per-sample output ``out_shape``."""
    if len(out_shape) == 3:  # (C, H, W): pool to 2 x 2, as the DGL code's auxiliary nets
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * out_shape[0], num_classes))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(out_shape), num_classes))


def training_flops(module: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Forward plus backward FLOPs of ``module`` for one sample (torch.utils.flop_counter),
    the input gradient included (it flows into the subnetwork)."""
    p = next(module.parameters())
    x = torch.zeros(1, *in_shape, device=p.device, dtype=p.dtype, requires_grad=True)
    with FlopCounterMode(display=False) as count:
        module(x).float().sum().backward()
    for q in module.parameters():
        q.grad = None
    return count.get_total_flops()


class DGL(Solver):
    """DGL: a head per subnetwork but the last, each trained on its local cross-entropy."""

    name = "dgl"
    Settings = DGLSettings
    #: ``paper``: the DGL code's step size for CIFAR (SGD, lr 0.1; its momentum 0.9, weight decay
    #: 5e-4 and step decay are not part of the suite's W-step); ``demo``: the split methods' demo
    #: W-step and init (Adam 1e-3, N(0, 0.1)), so DGL, gsADMM, gsAM and frozen share them there.
    presets = {"paper": {"optimizer": "sgd", "lr": 0.1, "init": "kaiming"},
               "demo": {"optimizer": "adam", "init": "demo"}}

    def __init__(self, cfg, x_train, y_train):
        super().__init__(cfg, x_train, y_train)
        self.num_classes = int(y_train.max().item()) + 1 if len(y_train) else 0
        self.heads: dict[int, nn.Module] = {}  # by stage index: the heads of the stages this process holds
        self.head_flops: dict[int, int] = {}  # by stage index: the head's training FLOPs per sample

    def setup(self, stage: Stage) -> None:
        params = list(stage.net.parameters())
        if not stage.last:
            p = params[0]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed * 1_000_003 + stage.index)
                head = aux_head(stage.out_shape, self.num_classes)
            self.heads[stage.index] = head.to(p.device, p.dtype)
            with torch.enable_grad():
                self.head_flops[stage.index] = training_flops(head, stage.out_shape)
            params += list(head.parameters())
        stage.optimizer = make_optimizer(self.cfg.w_optimizer, params, self.cfg.w_lr, self.cfg.optimizer_impl)
        stage.init_params = [p.detach().clone() for p in stage.net.parameters()]

    def stage_loss(self, stage: Stage, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The local cross-entropy: of the head's prediction, or of the network's for the last."""
        return F.cross_entropy(out if stage.last else self.heads[stage.index](out), target)

    # -- the schedules ----------------------------------------------------------------------
    def step_phases(self):
        return [self.lagged_step] if self.settings.pipelining == "lagged" else [self.train_on]

    def flush_phases(self):
        return [self.finish_lagged] if self.settings.pipelining == "lagged" else []

    def train_on(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """Train the stage on minibatch ``rows`` (its input from the previous stage) and send its
        output, made before the update, to the next."""
        h = self.x[rows] if stage.first else box.recv(stage.index - 1, stage.index, (len(rows), *stage.in_shape))
        self.w_step(stage, h, self.y[rows])
        out = stage.scratch.pop("w_output")
        if not stage.last:
            box.send(stage.index, stage.index + 1, out)

    def lagged_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """Stage l trains on the minibatch of l steps ago (its rows wait in ``scratch``)."""
        waiting = stage.scratch.setdefault("lagged_rows", [])
        waiting.append(rows)
        if len(waiting) > stage.index:
            self.train_on(stage, waiting.pop(0), box)

    def finish_lagged(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """End of the epoch: the minibatches still waiting, in order."""
        for r in stage.scratch.pop("lagged_rows", []):
            self.train_on(stage, r, box)

    # -- what the run records and checkpoints -----------------------------------------------
    def epoch_metrics(self, stage: Stage) -> dict[str, float]:
        """The head's extra cost: its parameters and its training FLOPs per sample."""
        head = self.heads.get(stage.index)
        if head is None:
            return {}
        l = stage.index + 1
        return {f"head_params_{l}": float(sum(p.numel() for p in head.parameters())),
                f"head_flops_{l}": float(self.head_flops[stage.index])}

    def state_dict(self, stage: Stage) -> dict[str, torch.Tensor]:
        head = self.heads.get(stage.index)
        return {f"head.{k}": v for k, v in head.state_dict().items()} if head is not None else {}

    def load_state_dict(self, stage: Stage, state: dict[str, torch.Tensor]) -> None:
        head = self.heads.get(stage.index)
        if head is not None:
            head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()})
