"""gsADMM (Algorithm 1 of the paper, Eqs. 2-6).

Stage ``l`` owns its weights, its input ``p_l`` (l > 1), and the output ``q_l`` and dual
``u_l`` of the cut after it. One step ``k`` on minibatch rows ``s_k``, as one phase:

0. post the receive of ``p_{l+1}[s_{k-1}]``, which stage l+1 sent in step k-1 (see below);
1. send ``q_l[s_k], u_l[s_k]`` to stage l+1 (one message);
2. W-step (Eq. 2/3);
3. p-step of ``p_l[s_k]`` (Eq. 4), with ``q_{l-1}[s_k], u_{l-1}[s_k]`` from stage l-1; send the
   new ``p_l[s_k]`` back to it;
4. ``f_l(W_l, p_l)[s_k]`` for the q-step (local: new weights and new ``p_l``);
5. the q-step (Eq. 5, closed form) and dual step (Eq. 6) *of step k-1*, with the
   ``p_{l+1}[s_{k-1}]`` received in 0.

Deferring 5 by one step changes nothing: the minibatches of an epoch are disjoint, so step
k reads no row that the q/u update of step k-1 writes, and the last update of an epoch runs
at its end (``flush_phases``). What it buys is parallelism: no rank ever waits for a message
sent in the same step, so neighbouring subnetworks compute at the same time instead of
taking turns.

Why 0 comes first: NCCL matches the messages between two ranks in order on one stream, and a
large send completes only once the peer has posted its receive. Stage l+1 sent ``p`` of step
k-1 before it receives ``q, u`` of step k; if stage l sent ``q, u`` of step k before posting
the receive of that ``p``, both ranks would be sending to each other and wait forever
(tests/test_nccl_order.py). Posting the receive first keeps the two streams in step; it waits
for the data only in 5, so the parallelism is unchanged, and so is the arithmetic.

With ``schedule: epoch`` the minibatch steps do the W-step only and the p, q, u steps run
once per epoch over all rows (the authors' demo).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import option
from .base import PAPER_VALUES, Mailbox, Stage, TSSMSettings, TSSMSolver


@dataclass
class GsADMMSettings(TSSMSettings):
    rho: float = option(1.0, positive=True, hint=PAPER_VALUES, help="penalty of the constraints p_{l+1} = q_l (and the dual step)")


def p_gradient(data_grad, p: torch.Tensor, q_prev: torch.Tensor, u_prev: torch.Tensor, rho: float) -> torch.Tensor:
    """Eq. 4's gradient in ``p_l``: the data term, then the coupling ``u_{l-1} + rho (p_l - q_{l-1})``
    (with ``data_grad = 0`` it is the coupling alone, which evaluation reports)."""
    return data_grad + u_prev + rho * (p - q_prev)


def q_closed_form(f: torch.Tensor, p_next: torch.Tensor, u: torch.Tensor, c_alpha: float, rho: float) -> torch.Tensor:
    """argmin_q of ``c alpha/2 ||q - f||^2 - u^T q + rho/2 ||p_next - q||^2``.

    With c = 1/M this is Eq. 5: ``(alpha f + rho M p + M u) / (rho M + alpha)``.
    """
    return (c_alpha * f + u + rho * p_next) / (c_alpha + rho)


class GsADMM(TSSMSolver):
    name = "gsadmm"
    label = "gsADMM"
    style = {"color": "#1f77b4", "linestyle": "-", "linewidth": 1.1, "marker": "o", "markersize": 4.5, "zorder": 5}
    Settings = GsADMMSettings

    def step_phases(self):
        return [self.w_step_only] if self.settings.schedule == "epoch" else [self.step]

    def full_pass_phases(self):
        return [self.p_step_now, self.q_dual_step_now] if self.settings.schedule == "epoch" else []

    def flush_phases(self):
        return [self.finish_deferred]

    def init_cut(self, stage: Stage, out: torch.Tensor) -> None:
        """q from the forward pass, u = 0 (as the demo does)."""
        stage.state["q"] = out.clone()
        stage.state["u"] = torch.zeros_like(out)

    # -- phase 1 ------------------------------------------------------------------------
    def _send_q_u(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """``q_l[rows]`` and ``u_l[rows]`` to stage l+1, as one message (one latency, not two)."""
        if not stage.last:
            box.send(stage.index, stage.index + 1, torch.stack((stage.state["q"][rows], stage.state["u"][rows])))

    def _target(self, stage: Stage, rows: torch.Tensor) -> torch.Tensor:
        return self.y[rows] if stage.last else stage.state["q"][rows]

    def _p_step(self, stage: Stage, rows: torch.Tensor, box: Mailbox, data_grad: torch.Tensor) -> None:
        """Eq. 4: ``p_l <- p_l - (grad data term + u_{l-1} + rho (p_l - q_{l-1})) / tau2``."""
        q_prev, u_prev = box.recv(stage.index - 1, stage.index, (2, len(rows), *stage.in_shape))
        p = stage.state["p"][rows]
        p_new = p - p_gradient(data_grad, p, q_prev, u_prev, self.settings.rho) / self.settings.tau2
        stage.state["p"][rows] = p_new
        box.send(stage.index, stage.index - 1, p_new)

    def step(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """One minibatch step of Algorithm 1 (batch schedule); see the module docstring."""
        p_next = self._post_p_next(stage, box)
        self._send_q_u(stage, rows, box)
        fused = self.settings.p_grad == "fused" and not stage.first
        target = self._target(stage, rows)
        _, grad = self.w_step(stage, self.inputs(stage, rows), target, input_grad=fused)
        if not stage.first:
            if grad is None:
                grad = self.data_grad(stage, stage.state["p"][rows], target)
            self._p_step(stage, rows, box, grad)
        if not stage.last:
            f = self.output_after_step(stage, rows)
            self._finish_deferred(stage, p_next)
            stage.scratch.update(deferred_rows=rows, deferred_f=f)

    def w_step_only(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        self.w_step(stage, self.inputs(stage, rows), self._target(stage, rows))

    def p_step_now(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """The p-step on ``rows`` with the data gradient at the current weights (epoch schedule)."""
        self._send_q_u(stage, rows, box)
        if not stage.first:
            self._p_step(stage, rows, box, self.data_grad(stage, stage.state["p"][rows], self._target(stage, rows)))

    # -- q-step and dual step -------------------------------------------------------------
    def _post_p_next(self, stage: Stage, box: Mailbox):
        """The receive of ``p_{l+1}`` on the rows of the deferred q/dual step, posted (None: none deferred)."""
        if stage.last or "deferred_rows" not in stage.scratch:
            return None
        return box.post_recv(stage.index + 1, stage.index, (len(stage.scratch["deferred_rows"]), *stage.out_shape))

    def _finish_deferred(self, stage: Stage, p_next) -> None:
        if p_next is not None:
            self.q_dual_step(stage, stage.scratch.pop("deferred_rows"), stage.scratch.pop("deferred_f"), p_next.wait())

    def q_dual_step_now(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """Eq. 5 then Eq. 6 on ``rows`` now (epoch schedule)."""
        if not stage.last:
            f = self.output_after_step(stage, rows)
            self.q_dual_step(stage, rows, f, box.recv(stage.index + 1, stage.index, (len(rows), *stage.out_shape)))

    def finish_deferred(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """The epoch's last deferred q/dual step (batch schedule; a flush phase)."""
        self._finish_deferred(stage, self._post_p_next(stage, box))

    def q_dual_step(self, stage: Stage, rows: torch.Tensor, f: torch.Tensor, p_next: torch.Tensor) -> None:
        """Eq. 5 then Eq. 6 on ``rows``, with the new ``p_{l+1}[rows]`` from stage l+1."""
        q, u = stage.state["q"], stage.state["u"]
        q_new = self.q_closed_form(f, p_next, u[rows])
        u[rows] += self.settings.rho * (p_next - q_new)
        q[rows] = q_new

    def q_closed_form(self, f: torch.Tensor, p_next: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return q_closed_form(f, p_next, u, self.data_scale * self.settings.alpha, self.settings.rho)

    # -- evaluation diagnostics -----------------------------------------------------------
    def cut_terms(self, stage, f, p_next, n):
        q, u, rho = stage.state["q"], stage.state["u"], self.settings.rho
        r = p_next - q
        sums = {"fit": (f - q).norm().item(), "resid": r.norm().item(),
                "coupling": (u * r).sum().item() + 0.5 * rho * r.pow(2).sum().item()}
        return sums, torch.stack((q[:n], u[:n])), q[:n]

    def p_coupling(self, stage, p, box):
        q_prev, u_prev = box.recv(stage.index - 1, stage.index, (2, len(p), *stage.in_shape))
        return p_gradient(0.0, p, q_prev, u_prev, self.settings.rho)
