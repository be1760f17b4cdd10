"""Solvers: what one training step does. A new method is one file with a :class:`Solver`
subclass and one line in ``SOLVERS``; the config, the CLI, the pipeline's schema and the
summaries read the method list and each method's settings from here."""

from __future__ import annotations

import torch

from ..config import RunConfig
from .backprop import SGD, Adam, Backprop, Frozen
from .base import Mailbox, Phase, Solver, Stage, forward_rows
from .gsadmm import GsADMM
from .gsam import GsAM

#: The methods, by the name configs use.
SOLVERS: dict[str, type[Solver]] = {
    "gsadmm": GsADMM,
    "gsam": GsAM,
    "sgd": SGD,
    "adam": Adam,
    "frozen": Frozen,
}


def make_solver(cfg: RunConfig, x_train: torch.Tensor, y_train: torch.Tensor) -> Solver:
    return SOLVERS[cfg.method](cfg, x_train, y_train)


__all__ = ["SOLVERS", "Mailbox", "Phase", "Solver", "Stage", "make_solver", "forward_rows", "GsADMM", "GsAM",
           "Backprop", "SGD", "Adam", "Frozen"]
