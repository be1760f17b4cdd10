"""Per-epoch metrics of a run, computed stage by stage and outside the training clock.

Each stage computes sums over rows of what it can see (the composed forward pass of the
train and test sets flows through the stages like a training step does); the executor adds
the per-stage sums up, and :func:`finalize` turns them into the recorded metrics. Nothing
here changes training state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .solvers import Mailbox, Solver, Stage, forward_rows

DIAG_ROWS = 2048  # rows on which the p-step's two parts are measured (diagnostics)


def _composed(solver: Solver, stage: Stage, box: Mailbox, x: torch.Tensor, y: torch.Tensor, key: str, sums: dict) -> None:
    chunk = solver.cfg.chunk_rows
    h = x if stage.first else box.recv(stage.index - 1, stage.index, (len(x), *stage.in_shape))
    out = forward_rows(stage.net, h, chunk)
    if stage.last:
        sums[f"{key}_loss_sum"] = F.cross_entropy(out, y, reduction="sum").item()
        sums[f"{key}_correct"] = (out.argmax(1) == y).sum().item()
    else:
        box.send(stage.index, stage.index + 1, out)


@torch.no_grad()
def _weight_movement(stage: Stage) -> float:
    now = torch.cat([p.detach().flatten() for p in stage.net.parameters()])
    init = torch.cat([p.flatten() for p in stage.init_params])
    return ((now - init).norm() / init.norm().clamp_min(1e-30)).item()


class Evaluation:
    """The evaluation of one epoch as phases (run by an executor like training phases).

    After the executor has run :meth:`phases` for every stage it holds, ``sums`` holds the
    per-stage contributions of those stages.
    """

    def __init__(self, solver: Solver, x_test: torch.Tensor, y_test: torch.Tensor,
                 x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None):
        self.solver, self.x_test, self.y_test = solver, x_test, y_test
        self.x_val, self.y_val = x_val, y_val
        self.sums: dict[str, float] = {}
        self._targets: dict[int, torch.Tensor] = {}  # each stage's W-step target on the diagnostic rows

    def phases(self):
        ph = [self.composed]
        if self.solver.trains_aux:
            ph += [self.send_p_back, self.aux_terms, self.p_step_parts]
        return ph

    def composed(self, stage: Stage, rows, box: Mailbox) -> None:
        s = self.solver
        _composed(s, stage, box, s.x, s.y, "train", self.sums)
        if self.x_val is not None:
            _composed(s, stage, box, self.x_val, self.y_val, "val", self.sums)
        _composed(s, stage, box, self.x_test, self.y_test, "test", self.sums)
        self.sums[f"move_{stage.index + 1}"] = _weight_movement(stage)
        self.sums.update(s.epoch_metrics(stage))

    def send_p_back(self, stage: Stage, rows, box: Mailbox) -> None:
        if not stage.first:
            box.send(stage.index, stage.index - 1, stage.state["p"])

    def aux_terms(self, stage: Stage, rows, box: Mailbox) -> None:
        """Fit and constraint residuals of the cut after this stage (the method's
        ``cut_terms``); R on p_n for the last."""
        s, l, sums = self.solver, stage.index + 1, self.sums
        f = forward_rows(stage.net, s.inputs(stage, slice(None)), s.cfg.chunk_rows)
        if stage.last:
            sums["aux_loss_sum"] = F.cross_entropy(f, s.y, reduction="sum").item()
            return
        p_next = box.recv(stage.index + 1, stage.index, (s.M, *stage.out_shape))
        terms, message, target = s.cut_terms(stage, f, p_next, min(DIAG_ROWS, s.M))
        sums.update({f"{k}_{l}": v for k, v in terms.items()})
        sums[f"omega_{l}"] = 0.5 * s.settings.alpha * sums[f"fit_{l}"] ** 2
        box.send(stage.index, stage.index + 1, message)
        self._targets[stage.index] = target

    def p_step_parts(self, stage: Stage, rows, box: Mailbox) -> None:
        """Norms (RMS per row, first DIAG_ROWS rows) of the p-step's data and coupling parts."""
        if stage.first:
            return
        s, l = self.solver, stage.index + 1
        n = min(DIAG_ROWS, s.M)
        target = s.y[:n] if stage.last else self._targets[stage.index]
        p = stage.state["p"][:n]
        with torch.enable_grad():
            g = s.data_grad(stage, p, target)
        coupling = s.p_coupling(stage, p, box)
        self.sums[f"pgrad_data_{l}"] = g.norm().item() / math.sqrt(n)
        self.sums[f"pgrad_coupling_{l}"] = coupling.norm().item() / math.sqrt(n)


def finalize(sums: dict[str, float], solver: Solver, n_test: int, n_val: int = 0) -> dict[str, float]:
    """Turn the added-up stage sums into the epoch's metrics (val_* only with a validation split)."""
    M = solver.M
    m = {
        "train_loss": sums.pop("train_loss_sum") / M,
        "train_acc": sums.pop("train_correct") / M,
    }
    if n_val:
        m["val_loss"] = sums.pop("val_loss_sum") / n_val
        m["val_acc"] = sums.pop("val_correct") / n_val
    m["test_loss"] = sums.pop("test_loss_sum") / n_test
    m["test_acc"] = sums.pop("test_correct") / n_test
    if "aux_loss_sum" in sums:
        omega = sum(v for k, v in sums.items() if k.startswith("omega_"))
        # The TSSM objective (Problem 2/3), with the solver's scaling: paper = averaged over M.
        m["objective"] = solver.data_scale * (sums.pop("aux_loss_sum") + omega)
        m["residual"] = sum(v for k, v in sums.items() if k.startswith("resid_"))
        coupling = [sums.pop(k) for k in [k for k in sums if k.startswith("coupling_")]]
        if coupling:
            m["lagrangian"] = m["objective"] + sum(coupling)
        for k in [k for k in sums if k.startswith("omega_")]:
            sums.pop(k)
    else:
        m["objective"] = m["train_loss"]
        m["residual"] = 0.0
    m.update(sums)
    return m
