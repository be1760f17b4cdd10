"""GPipe: pipeline-parallel backprop, exact gradients, the minibatch cut into micro-batches.

Each subnetwork is a pipeline stage. One step on minibatch rows s: the rows are padded to
``batch_size`` (zero inputs, ignored targets: they add exactly zero loss and gradient, as no
model here has batch statistics) and cut into ``microbatches`` equal micro-batches; each stage
runs the forward of every micro-batch, sending activations on, then the backward of every
micro-batch, sending input gradients back; then every stage takes ONE optimizer step. The loss of
micro-batch i is ``sum_j CE_j / |s|`` (the real row count), so the micro-batch gradients add up
to the gradient of the minibatch mean cross-entropy: the same update as backprop (``adam``,
``sgd``) up to floating-point summation order (float64: ~1e-12; a test checks it).

Two ways to run it, chosen by what the executor's mailbox offers, never by the solver:

- with a rank per stage, the mailbox's hook ``pipeline_group()`` hands out the process group and
  the step runs as ``torch.distributed.pipelining``'s schedule (``ScheduleGPipe``, or
  ``Schedule1F1B`` with ``pipeline_schedule: 1f1b``), which carries its own messages on that
  group (``batch_isend_irecv``: safe under NCCL's ordering rules);
- otherwise (every stage in one process, or several stages per rank) the same fill-drain order as
  phases over the mailbox: a forward phase, then one backward phase per stage from the last to
  the first. Forward messages only go l -> l+1 and gradients l+1 -> l after them: no wait cycle.

What a stage holds: the activations of every micro-batch of one minibatch until its backward
(GPipe's memory; 1F1B keeps at most ``n - l`` micro-batches of stage l alive instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import DEFAULT_LR, MethodSettings, RunView, option
from ..errors import ConfigError, DivergenceError
from .base import Mailbox, Solver, Stage

IGNORE = -100  # cross_entropy's ignore_index: the padding rows' target


@dataclass
class GPipeSettings(MethodSettings):
    optimizer: str = option("adam", choices=("sgd", "adam"), help="optimizer of the pipeline's backprop step")
    microbatches: int = option(4, minimum=1, help="micro-batches per minibatch (must divide batch_size)")
    pipeline_schedule: str = option("gpipe", choices=("gpipe", "1f1b"),
                                    help="order of the micro-batches' forward and backward passes on a rank per stage: "
                                         "GPipe's fill-drain or 1F1B (same numbers, less activation memory)")

    def lr(self, common_lr: float | None, default_optimizer: str) -> tuple[str, float]:
        return self.optimizer, common_lr if common_lr is not None else DEFAULT_LR[self.optimizer]


class HostStaged(nn.Module):
    """Runs ``net`` on ``device`` but takes and returns host tensors, so that a gloo process
    group (host memory only) carries the activations and their gradients of CUDA stages."""

    def __init__(self, net: nn.Module, device: torch.device):
        super().__init__()
        self.net, self.device = net, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.device, non_blocking=True)).to("cpu")


class GPipe(Solver):
    """Backprop through the stages, micro-batch by micro-batch, one optimizer step per minibatch."""

    name = "gpipe"
    Settings = GPipeSettings
    presets = {"paper": {"init": "kaiming"}, "demo": {"init": "demo"}}  # as the backprop baselines

    def __init__(self, cfg: RunView, x_train: torch.Tensor, y_train: torch.Tensor):
        super().__init__(cfg, x_train, y_train)
        self.schedules: dict[int, object] = {}  # by stage index, on a rank per stage
        self.real_rows = 1.0  # the minibatch's real row count, read by the micro-batch loss

    @classmethod
    def check(cls, cfg: RunView) -> None:
        m = cfg.settings.microbatches
        if cfg.batch_size % m:
            raise ConfigError(f"microbatches={m} must divide batch_size={cfg.batch_size}; choose a divisor")
        if cfg.settings.pipeline_schedule == "1f1b" and m < (cfg.splits or 1):
            raise ConfigError(f"pipeline_schedule 1f1b needs microbatches >= splits (got {m} < {cfg.splits}); "
                              f"raise microbatches or use gpipe")

    def step_phases(self):
        return [self.forward_all] + [self.backward_phase(j) for j in reversed(range(self.cfg.splits))]

    # -- the minibatch ----------------------------------------------------------------------
    def padded(self, t: torch.Tensor, rows: torch.Tensor, fill: float | int) -> torch.Tensor:
        b = t[rows]
        pad = self.cfg.batch_size - len(rows)
        return torch.cat([b, b.new_full((pad, *b.shape[1:]), fill)]) if pad else b

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """A micro-batch's share of the minibatch mean: its CE sum over the real row count."""
        return F.cross_entropy(out, target.to(out.device), reduction="sum", ignore_index=IGNORE) / self.real_rows

    # -- with a rank per stage: torch.distributed.pipelining ----------------------------------
    def library_schedule(self, stage: Stage, box: Mailbox):
        """(this stage's torch.distributed.pipelining schedule, the device its messages go
        through) when the mailbox offers a process group with a rank per stage (built once); else None."""
        if stage.index in self.schedules:
            return self.schedules[stage.index]
        hook = getattr(box, "pipeline_group", None)
        offer = hook() if hook is not None else None
        if offer is None:
            self.schedules[stage.index] = None
            return None
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        group, comm = offer
        p = next(stage.net.parameters())
        module = stage.net if comm == p.device else HostStaged(stage.net, p.device)
        mb = self.cfg.batch_size // self.settings.microbatches
        # static shapes; the examples' requires_grad flags say which gradients flow (see torch's docs)
        pipe_stage = PipelineStage(
            module, stage.index, stage.count, comm, group=group,
            input_args=torch.empty((mb, *stage.in_shape), device=comm, dtype=p.dtype, requires_grad=not stage.first),
            output_args=torch.empty((mb, *stage.out_shape), device=comm, dtype=p.dtype, requires_grad=True))
        kind = Schedule1F1B if self.settings.pipeline_schedule == "1f1b" else ScheduleGPipe
        schedule = kind(pipe_stage, self.settings.microbatches, loss_fn=self.loss, scale_grads=False)
        self.schedules[stage.index] = (schedule, comm)
        return self.schedules[stage.index]

    # -- the phases ---------------------------------------------------------------------------
    def forward_all(self, stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
        """The forward of every micro-batch (or, on a rank per stage, the library's whole step)."""
        self.real_rows = float(len(rows))
        stage.optimizer.zero_grad(set_to_none=True)
        schedule = self.library_schedule(stage, box)
        if schedule is not None:
            schedule, comm = schedule
            args = (self.padded(self.x, rows, 0).to(comm),) if stage.first else ()
            target = self.padded(self.y, rows, IGNORE).to(comm) if stage.last else None
            schedule.step(*args, target=target, return_outputs=False)
            stage.optimizer.step()
            return
        chunks = self.settings.microbatches
        xs = self.padded(self.x, rows, 0).chunk(chunks) if stage.first else None
        ys = self.padded(self.y, rows, IGNORE).chunk(chunks) if stage.last else None
        kept = []
        for i in range(chunks):
            if stage.first:
                h = xs[i]
            else:
                h = box.recv(stage.index - 1, stage.index, (self.cfg.batch_size // chunks, *stage.in_shape))
                h.requires_grad_(True)
            out = stage.net(h)
            if stage.last:
                out = self.loss(out, ys[i])
            else:
                box.send(stage.index, stage.index + 1, out.detach())
            kept.append((h, out))
        stage.scratch["kept"] = kept

    def backward_phase(self, j: int):
        def backward(stage: Stage, rows: torch.Tensor, box: Mailbox) -> None:
            """Stage j's backward of every micro-batch, then its optimizer step."""
            if stage.index != j or "kept" not in stage.scratch:
                return
            total = 0.0
            for h, out in stage.scratch.pop("kept"):
                if stage.last:
                    out.backward()
                    total += out.item() if self.check_finite else 0.0
                else:
                    out.backward(box.recv(stage.index + 1, stage.index, tuple(out.shape)))
                if not stage.first:
                    box.send(stage.index, stage.index - 1, h.grad)
            stage.optimizer.step()
            if self.check_finite and not math.isfinite(total):
                raise DivergenceError(f"the loss of the pipeline's step is {total}")
        backward.__name__ = f"backward_{j + 1}"
        return backward
