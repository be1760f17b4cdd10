"""gsADMM (Algorithm 1 of the paper, Eqs. 2-6).

Stage ``l`` owns its weights, its input ``p_l`` (l > 1), and the output ``q_l`` and dual
``u_l`` of the cut after it. One step on minibatch rows ``s``:

phase 1  send ``q_l[s], u_l[s]`` to stage l+1; W-step (Eq. 2/3); p-step of ``p_l[s]``
         (Eq. 4) with ``q_{l-1}[s], u_{l-1}[s]`` from stage l-1; send the new ``p_l[s]`` back.
phase 2  q-step (Eq. 5, closed form) and dual step (Eq. 6) with ``p_{l+1}[s]`` from stage l+1.

With ``schedule: epoch`` the minibatch steps do the W-step only and phases 1-2 run once
per epoch over all rows (the authors' demo).
"""

from __future__ import annotations

import torch

from .base import Mailbox, Solver, Stage, forward_rows


class GsADMM(Solver):
    name = "gsadmm"
    trains_aux = True

    def init_phases(self):
        return [self.init_aux]

    def step_phases(self):
        if self.cfg.schedule == "epoch":
            return [self.w_only]
        return [self.w_and_p_step, self.q_u_step]

    def epoch_phases(self):
        return [self.p_step_exact, self.q_u_step] if self.cfg.schedule == "epoch" else []

    # -- initialisation: p, q from one forward pass, u = 0 (as the demo does) -----------
    def init_aux(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        if not stage.first:
            stage.p = box.recv(stage.index - 1, stage.index, (self.M, *stage.in_shape))
        if not stage.last:
            out = forward_rows(stage.net, self.inputs(stage, rows), self.cfg.eval_batch)
            box.send(stage.index, stage.index + 1, out)
            stage.q = out.clone()
            stage.u = torch.zeros_like(out)

    # -- phase 1 ------------------------------------------------------------------------
    def _send_q_u(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        if not stage.last:
            box.send(stage.index, stage.index + 1, stage.q[rows])
            box.send(stage.index, stage.index + 1, stage.u[rows])

    def _target(self, stage: Stage, rows: torch.Tensor) -> torch.Tensor:
        return self.y[rows] if stage.last else stage.q[rows]

    def _p_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox, data_grad: torch.Tensor) -> None:
        """Eq. 4: ``p_l <- p_l - (grad data term + u_{l-1} + rho (p_l - q_{l-1})) / tau2``."""
        shape = (len(rows), *stage.in_shape)
        q_prev = box.recv(stage.index - 1, stage.index, shape)
        u_prev = box.recv(stage.index - 1, stage.index, shape)
        p = stage.p[rows]
        p_new = p - (data_grad + u_prev + self.cfg.rho * (p - q_prev)) / self.cfg.tau2
        stage.p[rows] = p_new
        box.send(stage.index, stage.index - 1, p_new)

    def w_and_p_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self._send_q_u(stage, rows, box)
        fused = self.cfg.p_grad == "fused" and not stage.first
        target = self._target(stage, rows)
        _, grad = self.w_step(stage, self.inputs(stage, rows), target, input_grad=fused)
        if not stage.first:
            if grad is None:
                grad = self.data_grad(stage, stage.p[rows], target)
            self._p_step(stage, rows, box, grad)

    def w_only(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self.w_step(stage, self.inputs(stage, rows), self._target(stage, rows))

    def p_step_exact(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self._send_q_u(stage, rows, box)
        if not stage.first:
            self._p_step(stage, rows, box, self.data_grad(stage, stage.p[rows], self._target(stage, rows)))

    # -- phase 2 ------------------------------------------------------------------------
    def q_u_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """Eq. 5 then Eq. 6, on rows ``s``, with the new ``p_{l+1}[s]`` from stage l+1."""
        if stage.last:
            return
        f = self.output_after_step(stage, rows)  # overlaps with the neighbour's message
        p_next = box.recv(stage.index + 1, stage.index, (len(rows), *stage.out_shape))
        q_new = self.q_closed_form(f, p_next, stage.u[rows])
        stage.u[rows] += self.cfg.rho * (p_next - q_new)
        stage.q[rows] = q_new

    def q_closed_form(self, f: torch.Tensor, p_next: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """argmin_q of ``c alpha/2 ||q - f||^2 - u^T q + rho/2 ||p_next - q||^2``.

        With c = 1/M this is Eq. 5: ``(alpha f + rho M p + M u) / (rho M + alpha)``.
        """
        ca, rho = self.c * self.cfg.alpha, self.cfg.rho
        return (ca * f + u + rho * p_next) / (ca + rho)
