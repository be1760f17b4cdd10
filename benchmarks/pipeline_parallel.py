"""Pipeline-parallel backprop baseline: GPipe over ``torch.distributed.pipelining``.

The mainstream model-parallel alternative to TSSM. The same model as ``tssm train``
(``tssm.models.build_model``, same seed) is cut into the same ``n`` stages
(``tssm.split.split_model``); rank ``r`` holds stage ``r`` and trains it with exact
end-to-end backprop, the minibatch being split into ``--microbatches`` micro-batches that
flow through the stages in GPipe's fill-drain order. Run one rank per stage::

    torchrun --nproc-per-node 2 benchmarks/pipeline_parallel.py \\
        --dataset fashion_mnist --splits 2 --epochs 1 --threads 1 --out results/pp/n2

Writes ``OUT/metrics.csv`` (epoch, epoch_time_s, train_time_s, train_loss, train_acc,
test_loss, test_acc, batch_loss_mean, ...) and ``OUT/run.json`` (config, environment).

Numerics. Each minibatch (rows of ``tssm.run.epoch_permutation``, batches of
``--batch-size``, the same order as the tssm runs) takes ONE optimizer step, and its
gradient equals the full-batch gradient of the mean cross-entropy (up to float summation
order): the loss of micro-batch ``k`` is ``sum_i CE_i / B`` with ``B`` the minibatch's real
row count, and the schedule is built with ``scale_grads=False``, so the micro-batch
gradients add up to ``grad(mean CE)``. (GPipe's default, ``scale_grads=True``, divides the
accumulated gradient by the number of micro-batches, which is only right for a
*mean*-reduced loss over *equal* micro-batches.) A ragged last minibatch (M not a
multiple of the batch size) is padded to the full batch size with zero inputs and target
``-100`` (CrossEntropy's ``ignore_index``): padded rows add exactly zero loss and zero
gradient (the MLP has no batch statistics), and the micro-batch shapes stay static.

Timing. ``epoch_time_s`` is the training clock of the epoch (permutation, all steps,
optimizer updates), the maximum over ranks, measured between barriers; evaluation
(``--eval``) runs after the clock stops, through a plain no-grad forward chain.

Devices. CPU: gloo. CUDA: rank r uses ``cuda:(LOCAL_RANK % device_count)``; NCCL when
every rank has its own GPU; otherwise (several ranks sharing one GPU, which NCCL refuses:
"Duplicate GPU detected") gloo with the stage's activations staged through host memory
(``--comm auto`` picks this; ``--comm nccl``/``gloo`` force one).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tssm.data import load_dataset
from tssm.models import build_model
from tssm.run import epoch_permutation
from tssm.solvers.base import make_optimizer
from tssm.split import block_flops, compute_cuts, split_model
from tssm.environment import environment, git_commit
from tssm.files import atomic_write_text

DEFAULT_LR = {"sgd": 0.01, "adam": 0.001}
IGNORE = -100


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="GPipe pipeline-parallel backprop baseline (run under torchrun)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-root", default="data")
    p.add_argument("--n-train", type=int, default=None, help="first K training rows only (quick runs)")
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--model", default="mlp")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--init", default="kaiming")
    p.add_argument("--splits", type=int, default=None, help="pipeline stages (default and required: WORLD_SIZE)")
    p.add_argument("--cuts", type=int, nargs="*", default=None, help="block indices where stages 2..n start")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=120)
    p.add_argument("--microbatches", type=int, default=4, help="micro-batches per minibatch (must divide it)")
    p.add_argument("--balance", choices=("params", "compute"), default="params",
                   help="cuts without --cuts: balance parameters (tssm's default) or per-step FLOPs "
                        "(forward + backward; GPipe recomputes nothing)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--optimizer-impl", choices=("fused", "foreach", "forloop"), default="fused",
                   help="torch.optim implementation (as tssm's optimizer_impl)")
    p.add_argument("--lr", type=float, default=None, help="default: adam 1e-3, sgd 1e-2 (as tssm)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per rank (default: cores / ranks)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--comm", choices=("auto", "gloo", "nccl"), default="auto")
    p.add_argument("--eval", choices=("all", "test", "none"), default="all",
                   help="after each epoch, outside the clock: train+test metrics, test only, or none")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float64 makes the comparison with single-process backprop exact to ~1e-12 (tests)")
    p.add_argument("--eval-batch", type=int, default=8192)
    p.add_argument("--log-steps", action="store_true", help="also write steps.csv: the loss of every minibatch")
    p.add_argument("--dist-timeout", type=float, default=300.0)
    p.add_argument("--out", default="results/pipeline/default")
    return p


class HostStaged(nn.Module):
    """Runs ``net`` on ``device`` but takes and returns host tensors, so that a gloo
    process group (host memory only) can carry the activations and their gradients."""

    def __init__(self, net: nn.Module, device: torch.device):
        super().__init__()
        self.net, self.device = net, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.device, non_blocking=True)).to("cpu")


def setup_distributed(args) -> tuple[int, int, torch.device, torch.device, str]:
    """(rank, world, compute device, communication device, backend)."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if "RANK" not in os.environ:
        raise SystemExit("error: run under torchrun, e.g. torchrun --nproc-per-node 2 benchmarks/pipeline_parallel.py ...")
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda asked for, but no CUDA GPU is visible here")
        ngpu = torch.cuda.device_count()
        dev = torch.device("cuda", local % ngpu)
        torch.cuda.set_device(dev)
        backend = args.comm if args.comm != "auto" else ("nccl" if world <= ngpu else "gloo")
        if backend == "nccl" and world > ngpu:
            raise SystemExit(f"error: {world} ranks on {ngpu} GPU(s): NCCL refuses two ranks on one GPU; use --comm gloo")
        comm_dev = dev if backend == "nccl" else torch.device("cpu")
    else:
        if args.comm == "nccl":
            raise SystemExit("error: --comm nccl needs --device cuda")
        dev = comm_dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        kw = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.dist_timeout), **kw)
    return rank, world, dev, comm_dev, backend


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def padded_batch(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, size: int):
    """Rows ``rows`` of (x, y) padded to ``size`` rows (zero inputs, ignored targets)."""
    xb, yb = x[rows], y[rows]
    pad = size - len(rows)
    if pad:
        xb = torch.cat([xb, xb.new_zeros((pad, *xb.shape[1:]))])
        yb = torch.cat([yb, yb.new_full((pad,), IGNORE)])
    return xb, yb


@torch.no_grad()
def evaluate(net: nn.Module, rank: int, world: int, x: torch.Tensor, y: torch.Tensor, in_shape, chunk: int,
             dev: torch.device, comm_dev: torch.device) -> tuple[float, float]:
    """(loss sum, correct count) of the composed network on (x, y), on every rank.

    A plain forward chain: rank r receives its stage's input in chunks from rank r-1 and
    sends the output on; the last rank scores it."""
    net.eval()
    loss_sum, correct = 0.0, 0.0
    for lo in range(0, len(x), chunk):
        n = min(chunk, len(x) - lo)
        if rank == 0:
            h = x[lo:lo + n]
        else:
            h = torch.empty((n, *in_shape), device=comm_dev, dtype=x.dtype)
            dist.recv(h, rank - 1)
        out = net(h.to(dev))
        if rank < world - 1:
            dist.send(out.to(comm_dev).contiguous(), rank + 1)
        else:
            yy = y[lo:lo + n]
            loss_sum += F.cross_entropy(out, yy, reduction="sum").item()
            correct += (out.argmax(1) == yy).sum().item()
    net.train()
    box = [(loss_sum, correct)]
    dist.broadcast_object_list(box, src=world - 1)
    return box[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    rank, world, dev, comm_dev, backend = setup_distributed(args)
    n = args.splits or world
    if n != world:
        raise SystemExit(f"error: --splits {n} but {world} ranks: launch with --nproc-per-node {n} (one rank per stage)")
    if args.batch_size % args.microbatches:
        raise SystemExit(f"error: --microbatches {args.microbatches} must divide --batch-size {args.batch_size}")
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]

    dtype = getattr(torch, args.dtype)
    data = load_dataset(args.dataset, args.data_root).subset(args.n_train, args.n_test).to(dev)
    data.x_train, data.x_test = data.x_train.to(dtype), data.x_test.to(dtype)
    model = build_model(args.model, data.input_shape, data.num_classes, width=args.width, depth=args.depth,
                        init=args.init, seed=args.seed).to(dtype)
    cuts = args.cuts
    if not cuts and args.balance == "compute" and n > 1:
        cuts = compute_cuts(block_flops(model, data.input_shape), n, extra_forward=False)
    subnets = split_model(model, n, cuts)
    # Per-sample shapes of every stage boundary (CPU, before moving anything).
    shapes, h = [tuple(data.input_shape)], torch.zeros(1, *data.input_shape, dtype=dtype)
    with torch.no_grad():
        for s in subnets:
            h = s(h)
            shapes.append(tuple(h.shape[1:]))
    splits_blocks = [len(s) for s in subnets]
    net = subnets[rank].to(dev)
    del model, subnets
    stage_mod = net if comm_dev == dev else HostStaged(net, dev)
    B, mb = args.batch_size, args.batch_size // args.microbatches
    # Static stage metadata (no shape-inference round trip). NB: the example tensors'
    # requires_grad flags are part of the metadata: an output example without
    # requires_grad makes the stage expect no gradient from downstream (its backward then
    # fails with "grad can be implicitly created only for scalar outputs"), an input
    # example without it makes the stage send no gradient upstream.
    stage = PipelineStage(
        stage_mod, rank, n, comm_dev,
        input_args=torch.empty((mb, *shapes[rank]), device=comm_dev, dtype=dtype, requires_grad=rank > 0),
        output_args=torch.empty((mb, *shapes[rank + 1]), device=comm_dev, dtype=dtype, requires_grad=True),
    )
    denom = {"B": float(B)}

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Sum over the micro-batch's rows / real minibatch size: the micro-batch losses
        # (and gradients) add up to the minibatch mean; padded rows (IGNORE) add nothing.
        return F.cross_entropy(out, target.to(out.device), reduction="sum", ignore_index=IGNORE) / denom["B"]

    schedule = ScheduleGPipe(stage, args.microbatches, loss_fn=loss_fn, scale_grads=False)
    opt = make_optimizer(args.optimizer, net.parameters(), lr, args.optimizer_impl)

    first, last = rank == 0, rank == world - 1
    x_train, y_train = data.x_train, data.y_train
    if comm_dev != dev:  # gloo with CUDA compute: the schedule's inputs live on the host
        x_train, y_train = x_train.cpu(), y_train.cpu()
    M = len(x_train)
    n_batches = -(-M // B)
    padded_rows = n_batches * B - M
    out_dir = Path(args.out)
    env = environment(dev, threads, world)
    env.update({"backend": backend, "comm_device": str(comm_dev), "torch_pipelining": "ScheduleGPipe+PipelineStage"})
    rows_out: list[dict] = []
    step_log: list[dict] = []
    started = time.time()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)

    def write(status: str, reason: str | None = None) -> None:
        if rank != 0:
            return
        buf = io.StringIO()
        if rows_out:
            w = csv.DictWriter(buf, fieldnames=list(rows_out[0]))
            w.writeheader()
            w.writerows(rows_out)
            atomic_write_text(out_dir / "metrics.csv", buf.getvalue())
        if args.log_steps and step_log:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(step_log[0]))
            w.writeheader()
            w.writerows(step_log)
            atomic_write_text(out_dir / "steps.csv", buf.getvalue())
        info = {
            "status": status, "reason": reason, "method": f"pipeline-{args.optimizer}",
            "config": {**vars(args), "lr": lr, "splits": n, "threads": threads},
            "schedule": {"name": "GPipe", "microbatches": args.microbatches, "microbatch_size": mb,
                         "loss": "sum CE / minibatch rows, scale_grads=False (gradient = full-batch mean)",
                         "ragged_last_batch": f"padded with {padded_rows} ignored rows" if padded_rows else "none"},
            "splits_blocks": splits_blocks, "stage_shapes": [list(s) for s in shapes],
            "environment": env, "git_commit": git_commit(), "epochs_done": len(rows_out),
            "final": rows_out[-1] if rows_out else {}, "wall_time_s": time.time() - started,
        }
        atomic_write_text(out_dir / "run.json", json.dumps(info, indent=2, default=str))

    train_clock = 0.0
    for epoch in range(1, args.epochs + 1):
        losses_epoch: list[float] = []
        dist.barrier()
        _sync(dev)
        t0 = time.perf_counter()
        perm = epoch_permutation(args.seed, epoch, M, x_train.device)
        for rows in perm.split(B):
            denom["B"] = float(len(rows))
            opt.zero_grad(set_to_none=True)
            if first:
                xb, yb = padded_batch(x_train, y_train, rows, B)
            elif last:
                yb = y_train[rows]
                if len(rows) < B:
                    yb = torch.cat([yb, yb.new_full((B - len(rows),), IGNORE)])
            if last:
                mb_losses: list[torch.Tensor] = []
                schedule.step(*((xb,) if first else ()), target=yb, losses=mb_losses, return_outputs=False)
                losses_epoch.append(torch.stack(mb_losses).sum().item() if args.log_steps else torch.stack(mb_losses).sum().detach())
            elif first:
                schedule.step(xb, return_outputs=False)
            else:
                schedule.step(return_outputs=False)
            opt.step()
        _sync(dev)
        local_time = time.perf_counter() - t0
        # ---- outside the clock
        t_max = torch.tensor([local_time], dtype=torch.float64)
        if backend == "nccl":
            t_max = t_max.to(dev)
        dist.all_reduce(t_max, op=dist.ReduceOp.MAX)
        epoch_time = float(t_max.item())
        train_clock += epoch_time
        batch_losses = [float(v) for v in losses_epoch] if last else []
        box = [batch_losses]
        dist.broadcast_object_list(box, src=world - 1)
        batch_losses = box[0]
        t1 = time.perf_counter()
        metrics = {"train_loss": float("nan"), "train_acc": float("nan"), "test_loss": float("nan"), "test_acc": float("nan")}
        if args.eval != "none":
            if args.eval == "all":
                ls, c = evaluate(net, rank, world, data.x_train, data.y_train, shapes[rank], args.eval_batch, dev, comm_dev)
                metrics["train_loss"], metrics["train_acc"] = ls / M, c / M
            ls, c = evaluate(net, rank, world, data.x_test, data.y_test, shapes[rank], args.eval_batch, dev, comm_dev)
            metrics["test_loss"], metrics["test_acc"] = ls / len(data.x_test), c / len(data.x_test)
        _sync(dev)
        eval_time = time.perf_counter() - t1
        row = {
            "epoch": epoch, **metrics,
            "batch_loss_mean": sum(batch_losses) / len(batch_losses),
            "train_time_s": train_clock, "epoch_time_s": epoch_time, "eval_time_s": eval_time,
            "samples_per_s": M / epoch_time if epoch_time > 0 else float("nan"),
            "steps": len(batch_losses), "padded_rows": padded_rows,
        }
        rows_out.append(row)
        if args.log_steps:
            step_log += [{"epoch": epoch, "step": i, "loss": v} for i, v in enumerate(batch_losses)]
        if rank == 0:
            print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        write("running")
    write("finished")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
