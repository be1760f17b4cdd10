"""Solvers: what one training step does. A new method is one small class."""

from __future__ import annotations

import torch

from ..config import RunConfig
from .backprop import Backprop, Frozen
from .base import Mailbox, Phase, Solver, Stage, forward_rows
from .gsadmm import GsADMM
from .gsam import GsAM

SOLVERS: dict[str, type[Solver]] = {"gsadmm": GsADMM, "gsam": GsAM, "sgd": Backprop, "adam": Backprop, "frozen": Frozen}


def make_solver(cfg: RunConfig, x_train: torch.Tensor, y_train: torch.Tensor) -> Solver:
    return SOLVERS[cfg.method](cfg, x_train, y_train)


__all__ = ["SOLVERS", "Mailbox", "Phase", "Solver", "Stage", "make_solver", "forward_rows", "GsADMM", "GsAM", "Backprop", "Frozen"]
