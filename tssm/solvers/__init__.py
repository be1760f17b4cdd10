"""Solvers: what one training step does.

A new method is one file in this folder with a :class:`Solver` subclass (its traits, its
``Settings`` and its phases) and one line in ``REGISTRY``; the config, the CLI, the
pipeline's schema and the summaries read the method list and each method's settings from
here (``tests/test_registry.py`` adds a toy method that way).
"""

from __future__ import annotations

import importlib

import torch

from ..settings import RunView
from .backprop import SGD, Adam, Backprop, Frozen
from .base import Mailbox, Phase, Solver, Stage, forward_rows
from .gsadmm import GsADMM
from .gsam import GsAM

#: The methods, by the name configs use: "module:Class" in this package.
REGISTRY: dict[str, str] = {
    "gsadmm": "gsadmm:GsADMM",
    "gsam": "gsam:GsAM",
    "sgd": "backprop:SGD",
    "adam": "backprop:Adam",
    "frozen": "backprop:Frozen",
    "dladmm": "dladmm:DLADMM",
    "dgl": "dgl:DGL",
    "gpipe": "gpipe:GPipe",
}


def _load(path: str) -> type[Solver]:
    module, cls = path.split(":")
    return getattr(importlib.import_module(f".{module}", __name__), cls)


SOLVERS: dict[str, type[Solver]] = {name: _load(path) for name, path in REGISTRY.items()}


def make_solver(cfg: RunView, x_train: torch.Tensor, y_train: torch.Tensor) -> Solver:
    return SOLVERS[cfg.method](cfg, x_train, y_train)


__all__ = ["REGISTRY", "SOLVERS", "Mailbox", "Phase", "Solver", "Stage", "make_solver", "forward_rows", "GsADMM",
           "GsAM", "Backprop", "SGD", "Adam", "Frozen"]
