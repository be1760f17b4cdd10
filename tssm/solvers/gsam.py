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

from .base import Mailbox, Solver, Stage, forward_rows


class GsAM(Solver):
    name = "gsam"
    trains_aux = True

    def init_phases(self):
        return [self.init_aux]

    def step_phases(self):
        if self.cfg.schedule == "epoch":
            return [self.send_target, self.w_only]
        return [self.send_target, self.w_step_keep_grad, self.p_sweep]

    def epoch_phases(self):
        return [self.send_target, self.keep_target, self.p_sweep] if self.cfg.schedule == "epoch" else []

    def init_aux(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        if not stage.first:
            stage.p = box.recv(stage.index - 1, stage.index, (self.M, *stage.in_shape))
        if not stage.last:
            box.send(stage.index, stage.index + 1, forward_rows(stage.net, self.inputs(stage, rows), self.cfg.eval_batch))

    # -- phase 1 and 2 ------------------------------------------------------------------
    def send_target(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        if not stage.first:
            box.send(stage.index, stage.index - 1, stage.p[rows])

    def _target(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> torch.Tensor:
        if stage.last:
            return self.y[rows]
        return box.recv(stage.index + 1, stage.index, (len(rows), *stage.out_shape))

    def w_only(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self.w_step(stage, self.inputs(stage, rows), self._target(stage, rows, box))

    def w_step_keep_grad(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        target = self._target(stage, rows, box)
        fused = self.cfg.p_grad == "fused" and not stage.first
        _, grad = self.w_step(stage, self.inputs(stage, rows), target, input_grad=fused)
        stage.pending = (target, grad)

    def keep_target(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        stage.pending = (self._target(stage, rows, box), None)

    # -- phase 3 ------------------------------------------------------------------------
    def p_sweep(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        (target, grad), stage.pending = stage.pending, None
        if not stage.first:
            if grad is None:
                grad = self.data_grad(stage, stage.p[rows], target)
            f_prev = box.recv(stage.index - 1, stage.index, (len(rows), *stage.in_shape))
            p = stage.p[rows]
            coupling = self.c * self.cfg.alpha * (p - f_prev)  # gradient of Omega(W_{l-1}, p_{l-1}, p_l) in p_l
            stage.p[rows] = p - (coupling + grad) / self.cfg.tau2
        if not stage.last:
            box.send(stage.index, stage.index + 1, self.output_after_step(stage, rows))
