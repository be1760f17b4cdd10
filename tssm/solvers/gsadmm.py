"""gsADMM (Algorithm 1 of the paper, Eqs. 2-6).

Stage ``l`` owns its weights, its input ``p_l`` (l > 1), and the output ``q_l`` and dual
``u_l`` of the cut after it. One step ``k`` on minibatch rows ``s_k``, as one phase:

1. send ``q_l[s_k], u_l[s_k]`` to stage l+1 (one message);
2. W-step (Eq. 2/3);
3. p-step of ``p_l[s_k]`` (Eq. 4), with ``q_{l-1}[s_k], u_{l-1}[s_k]`` from stage l-1; send the
   new ``p_l[s_k]`` back to it;
4. ``f_l(W_l, p_l)[s_k]`` for the q-step (local: new weights and new ``p_l``);
5. the q-step (Eq. 5, closed form) and dual step (Eq. 6) *of step k-1*, with
   ``p_{l+1}[s_{k-1}]`` that stage l+1 sent one step earlier.

Deferring 5 by one step changes nothing: the minibatches of an epoch are disjoint, so step
k reads no row that the q/u update of step k-1 writes, and the last update of an epoch runs
at its end (``end_phases``). What it buys is parallelism: no rank ever waits for a message
sent in the same step, so neighbouring subnetworks compute at the same time instead of
taking turns.

With ``schedule: epoch`` the minibatch steps do the W-step only and the p, q, u steps run
once per epoch over all rows (the authors' demo).
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
        return [self.w_only] if self.cfg.schedule == "epoch" else [self.step]

    def epoch_phases(self):
        return [self.p_step_exact, self.q_u_step] if self.cfg.schedule == "epoch" else []

    def end_phases(self):
        return [self.finish_q_u]

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
        """``q_l[rows]`` and ``u_l[rows]`` to stage l+1, as one message (one latency, not two)."""
        if not stage.last:
            box.send(stage.index, stage.index + 1, torch.stack((stage.q[rows], stage.u[rows])))

    def _target(self, stage: Stage, rows: torch.Tensor) -> torch.Tensor:
        return self.y[rows] if stage.last else stage.q[rows]

    def _p_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox, data_grad: torch.Tensor) -> None:
        """Eq. 4: ``p_l <- p_l - (grad data term + u_{l-1} + rho (p_l - q_{l-1})) / tau2``."""
        q_prev, u_prev = box.recv(stage.index - 1, stage.index, (2, len(rows), *stage.in_shape))
        p = stage.p[rows]
        p_new = p - (data_grad + u_prev + self.cfg.rho * (p - q_prev)) / self.cfg.tau2
        stage.p[rows] = p_new
        box.send(stage.index, stage.index - 1, p_new)

    def step(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """One minibatch step of Algorithm 1 (batch schedule); see the module docstring."""
        self._send_q_u(stage, rows, box)
        fused = self.cfg.p_grad == "fused" and not stage.first
        target = self._target(stage, rows)
        _, grad = self.w_step(stage, self.inputs(stage, rows), target, input_grad=fused)
        if not stage.first:
            if grad is None:
                grad = self.data_grad(stage, stage.p[rows], target)
            self._p_step(stage, rows, box, grad)
        if not stage.last:
            f = self.output_after_step(stage, rows)
            self._q_u_pending(stage, box)
            stage.pending = (rows, f)

    def w_only(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self.w_step(stage, self.inputs(stage, rows), self._target(stage, rows))

    def p_step_exact(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self._send_q_u(stage, rows, box)
        if not stage.first:
            self._p_step(stage, rows, box, self.data_grad(stage, stage.p[rows], self._target(stage, rows)))

    # -- q-step and dual step -------------------------------------------------------------
    def q_u_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """Eq. 5 then Eq. 6 on ``rows`` now (epoch schedule)."""
        if not stage.last:
            self._q_u(stage, rows, self.output_after_step(stage, rows), box)

    def finish_q_u(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """End of an epoch: the q/u update the last step left pending."""
        self._q_u_pending(stage, box)

    def _q_u_pending(self, stage: Stage, box: Mailbox) -> None:
        """The q/u update left pending by the previous step, if any (batch schedule)."""
        if stage.pending is not None:
            (rows, f), stage.pending = stage.pending, None
            self._q_u(stage, rows, f, box)

    def _q_u(self, stage: Stage, rows: torch.Tensor, f: torch.Tensor, box: Mailbox) -> None:
        """Eq. 5 then Eq. 6 on ``rows``, with the new ``p_{l+1}[rows]`` from stage l+1."""
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
