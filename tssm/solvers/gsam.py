"""gsAM (Algorithm 2 of the paper, Eqs. 7-8): no q and no u.

Omega couples consecutive inputs directly: ``Omega(W_l, p_l, p_{l+1})``. One step on rows s:

phase 1  stage l > 1 sends ``p_l[s]`` to stage l-1, the target of its W-step.
phase 2  W-step of every stage (in parallel), keeping the gradient of its own data term
         in ``p_l`` (second term of Eq. 7, or R for l = n, Eq. 8).
phase 3  the p sweep l = 2..n: ``p_l`` moves down the gradient of
         ``Omega(W_{l-1}, p_{l-1}, p_l)`` (with the already-updated ``p_{l-1}``, whose
         image ``f_{l-1}(p_{l-1})`` stage l-1 sends) plus its own data term, step 1/tau2.
"""

from __future__ import annotations

import torch

from .base import Mailbox, Stage, TSSMSolver


class GsAM(TSSMSolver):
    """Reads the settings gsADMM and gsAM share (no rho: there is no dual)."""

    name = "gsam"
    label = "gsAM"
    style = {"color": "#ff7f0e", "linestyle": "--", "linewidth": 1.9, "marker": "s", "markersize": 7,
             "markerfacecolor": "white", "zorder": 4}

    def step_phases(self):
        if self.settings.schedule == "epoch":
            return [self.send_target, self.w_step_only]
        return [self.send_target, self.w_step_keep_grad, self.p_sweep]

    def full_pass_phases(self):
        return [self.send_target, self.keep_target, self.p_sweep] if self.settings.schedule == "epoch" else []

    # -- phase 1 and 2 ------------------------------------------------------------------
    def send_target(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        if not stage.first:
            box.send(stage.index, stage.index - 1, stage.state["p"][rows])

    def _target(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> torch.Tensor:
        if stage.last:
            return self.y[rows]
        return box.recv(stage.index + 1, stage.index, (len(rows), *stage.out_shape))

    def w_step_only(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self.w_step(stage, self.inputs(stage, rows), self._target(stage, rows, box))

    def w_step_keep_grad(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """W-step; keeps its target and (``p_grad: fused``) the data gradient of p for the sweep."""
        target = self._target(stage, rows, box)
        fused = self.settings.p_grad == "fused" and not stage.first
        _, grad = self.w_step(stage, self.inputs(stage, rows), target, input_grad=fused)
        stage.scratch["target"] = target
        if grad is not None:
            stage.scratch["data_grad"] = grad

    def keep_target(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        stage.scratch["target"] = self._target(stage, rows, box)

    # -- phase 3 ------------------------------------------------------------------------
    def p_sweep(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        target, grad = stage.scratch.pop("target"), stage.scratch.pop("data_grad", None)
        if not stage.first:
            if grad is None:
                grad = self.data_grad(stage, stage.state["p"][rows], target)
            p = stage.state["p"][rows]
            stage.state["p"][rows] = p - (self.p_coupling(stage, p, box) + grad) / self.settings.tau2
        if not stage.last:
            box.send(stage.index, stage.index + 1, self.output_after_step(stage, rows))

    # -- the coupling, for the sweep and for evaluation -----------------------------------
    def p_coupling(self, stage, p, box):
        """Gradient of ``Omega(W_{l-1}, p_{l-1}, p_l)`` in ``p_l``, with ``f_{l-1}(p_{l-1})`` from stage l-1."""
        f_prev = box.recv(stage.index - 1, stage.index, (len(p), *stage.in_shape))
        return self.data_scale * self.settings.alpha * (p - f_prev)

    def cut_terms(self, stage, f, p_next, n):
        """The constraint is the fit itself: ``||p_{l+1} - f_l(p_l)||``."""
        fit = (p_next - f).norm().item()
        return {"fit": fit, "resid": fit}, f[:n], p_next[:n]
