"""End-to-end backprop baselines (``sgd``, ``adam``) and the ``frozen`` control.

Both are the same phase: push the minibatch through the stages (no gradient before the
trained part) and take one optimizer step on the cross-entropy. ``frozen`` trains only
the last subnetwork; the others keep their initial weights, which shows how much of a
split method's accuracy the upstream subnetworks actually contribute. With one stage,
both are ordinary backprop.
"""

from __future__ import annotations

import torch

from .base import TSSM_PRESETS, Mailbox, Solver, Stage, WStepSettings


class Backprop(Solver):
    """End-to-end backprop on the whole network, one stage (``splits = 1``)."""

    name = "backprop"
    end_to_end = True
    #: the paper names no baseline settings: its lr defaults (SGD 0.01, Adam 0.001) under both;
    #: ``demo`` starts from the demo's N(0, 0.1) weights, like the split methods it is compared with
    presets = {"paper": {"init": "kaiming"}, "demo": {"init": "demo"}}

    def step_phases(self):
        return [self.composed_step]

    def composed_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        h = self.x[rows] if stage.first else box.recv(stage.index - 1, stage.index, (len(rows), *stage.in_shape))
        if stage.last:
            self.w_step(stage, h, self.y[rows])
        else:
            with torch.no_grad():
                box.send(stage.index, stage.index + 1, stage.net(h))


class SGD(Backprop):
    """Plain SGD, lr 0.01 unless ``lr`` says otherwise."""

    name = "sgd"
    label = "SGD"
    style = {"color": "#2ca02c", "linestyle": "-.", "linewidth": 1.5, "marker": "^", "zorder": 3}
    default_optimizer = "sgd"


class Adam(Backprop):
    """Adam, lr 0.001 unless ``lr`` says otherwise."""

    name = "adam"
    label = "Adam"
    style = {"color": "#d62728", "linestyle": (0, (1, 1.2)), "linewidth": 1.9, "marker": "v", "zorder": 3}
    default_optimizer = "adam"


class Frozen(Backprop):
    """Control: only the last subnetwork learns (same data order and W-step optimizer)."""

    name = "frozen"
    role = "control"
    label = "frozen (control)"
    #: drawn first, widest and translucent: a split method that coincides with it runs through its middle
    style = {"color": "#7f7f7f", "linestyle": "-", "linewidth": 5.0, "alpha": 0.4, "marker": None, "zorder": 2}
    Settings = WStepSettings
    end_to_end = False
    presets = TSSM_PRESETS  # the split methods' W-step and init, so it stays their control

    def trains(self, stage: Stage) -> bool:
        return stage.last
