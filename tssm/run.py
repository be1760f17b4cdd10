"""The training loop every method shares: problem, split, solver, executor, recorder.

``train(cfg)`` builds the Problem (dataset tensors and seeded model, identical for every
method), cuts it into stages, lets the executor run the solver's phases on each minibatch
and records per-epoch metrics. The training clock covers only the steps (and the solver's
per-epoch work); evaluation is timed separately and never changes training state.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig
from .data import Dataset, load_dataset
from .errors import ConfigError, DivergenceError, TSSMError
from .evaluate import Evaluation, finalize
from .models import build_model
from .parallel import DistributedExecutor, SerialExecutor, init_distributed, slurm_to_torchrun_env, stage_owner
from .solvers import Solver, Stage, make_solver
from .split import balanced_cuts, block_flops, block_sizes, check_splits, compute_cuts, split_model
from .tracking import Recorder, environment


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is visible here; use --device cpu (or auto)")
    return torch.device(name)


@dataclass
class Problem:
    """Dataset tensors on the device plus the seeded model: the same for every method."""

    data: Dataset
    model: torch.nn.Sequential


def build_problem(cfg: RunConfig, device: torch.device) -> Problem:
    data = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download).subset(cfg.n_train, cfg.n_test).to(device)
    model = build_model(
        cfg.model, data.input_shape, data.num_classes, width=cfg.width, depth=cfg.depth, channels=cfg.channels,
        residual_blocks=cfg.residual_blocks, init=cfg.init, seed=cfg.seed,
    ).to(device)
    return Problem(data, model)


def plan_cuts(cfg: RunConfig, problem: Problem) -> list[int] | None:
    """The configured cuts, else the balanced ones (``balance``, ``balance_workers``);
    ``None`` leaves ``split_model``'s plain parameter balance."""
    if cfg.cuts or cfg.splits == 1 or (cfg.balance == "params" and not cfg.balance_workers):
        return cfg.cuts
    check_splits(cfg.splits, len(problem.model))
    if cfg.balance == "params":
        return balanced_cuts(block_sizes(problem.model), cfg.splits, cfg.balance_workers)
    flops = block_flops(problem.model, problem.data.input_shape)
    return compute_cuts(flops, cfg.splits, cfg.recomputes_output, cfg.balance_workers)


def build_stages(cfg: RunConfig, problem: Problem) -> list[Stage]:
    subnets = split_model(problem.model, cfg.splits, plan_cuts(cfg, problem))
    stages, shape = [], tuple(problem.data.input_shape)
    with torch.no_grad():
        h = torch.zeros(1, *shape, device=problem.data.x_train.device)
        for i, net in enumerate(subnets):
            out = net(h)
            stages.append(Stage(i, len(subnets), net, tuple(h.shape[1:]), tuple(out.shape[1:])))
            h = out
    return stages


def epoch_permutation(seed: int, epoch: int, m: int, device: torch.device) -> torch.Tensor:
    """The data order of an epoch: a function of (seed, epoch) only, the same for every
    method and every rank."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(m, generator=g).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _finite_state(stages: list[Stage], row: dict[str, float]) -> str | None:
    """Name of the first NaN/Inf among the epoch's losses and the stages' variables, or None."""
    for k in ("train_loss", "objective"):
        if k in row and not math.isfinite(row[k]):
            return f"{k} is {row[k]}"
    for st in stages:
        for name, t in st.aux().items():
            if not torch.isfinite(t).all():
                return f"auxiliary variable {name}_{st.index + 1} has NaN/Inf"
        for name, prm in st.net.named_parameters():
            if not torch.isfinite(prm).all():
                return f"weight {name} of subnetwork {st.index + 1} has NaN/Inf"
    return None


class _StopRequested(Exception):
    pass


def train(cfg: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run ``cfg`` to the end; returns the run record (also written as ``run.json``)."""
    cfg.validate()
    slurm_to_torchrun_env()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    comm_device = None
    if distributed:
        device_kind = resolve_device(cfg.device).type
        rank, world, device, comm_device = init_distributed(device_kind, cfg.dist_timeout)
    else:
        rank, world, device = 0, 1, resolve_device(cfg.device)
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)

    problem = build_problem(cfg, device)
    stages = build_stages(cfg, problem)
    solver: Solver = make_solver(cfg, problem.data.x_train, problem.data.y_train)
    # Check every step's loss where that is free (one CPU process); otherwise once per epoch.
    solver.check_finite = not distributed and device.type == "cpu"
    if distributed:
        executor = DistributedExecutor(stages, stage_owner(len(stages), world), device, cfg.dist_timeout, comm_device)
    else:
        executor = SerialExecutor(stages)
    for st in executor.stages:
        solver.setup(st)
    data = problem.data
    M = len(data.x_train)

    recorder = Recorder(cfg, environment(device, threads, world)) if executor.is_main else None
    ckpt_path = Path(cfg.out) / "checkpoint" / f"rank{rank}.pt"
    start_epoch, train_clock = 1, 0.0
    resumed = load_checkpoint(ckpt_path, cfg, executor.stages) if cfg.checkpoint else None
    if resumed is None:
        executor.run(solver.init_phases(), torch.arange(M, device=device))
        executor.drain()
    else:
        start_epoch, train_clock = resumed["epoch"] + 1, resumed["train_clock"]
        if recorder:
            recorder.rows = resumed["rows"]
    if recorder:
        recorder.start_mlflow(resume_run_id=resumed.get("mlflow_run_id") if resumed else None)

    stop = {"sig": None}

    def on_signal(signum, frame):
        stop["sig"] = signum
    # SIGTERM (Snakemake, SLURM, torchrun teardown) finishes the epoch, checkpoints and stops.
    old_handler = signal.signal(signal.SIGTERM, on_signal)

    status, reason, epoch = "finished", None, start_epoch - 1
    bar = _progress(cfg, progress and executor.is_main, start_epoch)
    try:
        if start_epoch == 1:  # epoch 0: the initial state, the same for every method
            metrics, eval_time = evaluate(solver, executor, data)
            if recorder:
                recorder.log_epoch({"epoch": 0, **metrics, "train_time_s": 0.0, "epoch_time_s": 0.0,
                                    "eval_time_s": eval_time, "samples_per_s": float("nan"),
                                    "peak_mem_mb": peak_memory_mb(device), "restored": 0.0})
        for epoch in range(start_epoch, cfg.epochs + 1):
            snapshot = None
            if cfg.safeguard is not None and cfg.schedule == "epoch":
                snapshot = [{k: v.clone() for k, v in st.net.state_dict().items()} for st in executor.stages]
            _sync(device)
            executor.take_wait()  # drop the waits of evaluation: only the epoch's own count
            t0 = time.perf_counter()
            perm = epoch_permutation(cfg.seed, epoch, M, device)
            step_phases = solver.step_phases()
            for rows in perm.split(cfg.batch_size):
                executor.run(step_phases, rows)
            for rows in torch.arange(M, device=device).split(cfg.eval_batch):
                executor.run(solver.epoch_phases(), rows)
            executor.run(solver.end_phases(), perm[:0])
            executor.drain()
            _sync(device)
            epoch_time = time.perf_counter() - t0

            waits = executor.take_wait()
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                metrics, eval_time = evaluate(solver, executor, data, waits)
            else:  # eval_every: this epoch records its timing (and waits) only
                metrics, eval_time = executor.all_sum(waits), 0.0

            restored = 0.0
            prev = recorder_prev_loss(recorder, executor) if snapshot is not None else None
            if prev is not None and metrics["train_loss"] > prev + cfg.safeguard:
                # The demo's safeguard: the training loss rose too much, so take back the epoch's
                # weight updates (its cost is counted in the training clock) and re-evaluate.
                t2 = time.perf_counter()
                for st, snap in zip(executor.stages, snapshot):
                    st.net.load_state_dict(snap)
                restored = 1.0
                epoch_time += time.perf_counter() - t2
                metrics, _ = evaluate(solver, executor, data, waits)
            train_clock += epoch_time
            row = {
                "epoch": epoch, **metrics,
                "train_time_s": train_clock, "epoch_time_s": epoch_time, "eval_time_s": eval_time,
                "samples_per_s": M / epoch_time if epoch_time > 0 else float("nan"),
                "peak_mem_mb": peak_memory_mb(device), "restored": restored,
            }
            bad = _finite_state(executor.stages, row)
            if not executor.all_true(bad is None) and bad is None:
                bad = "another rank's subnetwork diverged"
            if recorder:
                recorder.log_epoch(row)
            if bar:
                bar.update(epoch, row)
            if bad:
                raise DivergenceError(f"run diverged at epoch {epoch}: {bad}")
            if cfg.checkpoint:
                save_checkpoint(ckpt_path, cfg, executor.stages, epoch, train_clock, recorder.rows if recorder else [],
                                recorder.run_id if recorder else None)
            if not executor.all_true(stop["sig"] is None):
                raise _StopRequested(f"stopped by signal {stop['sig']} after epoch {epoch}; rerun to resume")
    except DivergenceError as e:
        status, reason = "diverged", str(e) if "epoch" in str(e) else f"run diverged in epoch {epoch}: {e}"
    except _StopRequested as e:
        status, reason = "interrupted", str(e)
    except KeyboardInterrupt:
        status, reason = "interrupted", "interrupted by the user; rerun to resume from the last checkpoint"
    except Exception as e:  # record the failure (run.json, MLflow FAILED), then report it
        status, reason = "failed", f"{type(e).__name__}: {e}"
        if recorder:
            recorder.finish(status, reason)
        raise
    finally:
        if bar:
            bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        executor.close()
    info = {"status": status, "reason": reason}
    if recorder:
        info = recorder.finish(status, reason, {"splits_blocks": [len(st.net) for st in stages]})
    if status == "finished" and cfg.checkpoint:
        # A finished run keeps its record, not its (large) checkpoint.
        ckpt_path.unlink(missing_ok=True)
    if status == "interrupted":
        raise TSSMError(reason)
    return info


def evaluate(solver: Solver, executor, data: Dataset, extra: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
    """The epoch's metrics (outside the training clock) and the seconds they took.

    ``extra`` are per-rank figures (e.g. ``wait_s_r1``) gathered with the metrics.
    """
    device = data.x_train.device
    _sync(device)
    t = time.perf_counter()
    ev = Evaluation(solver, data.x_test, data.y_test)
    executor.run(ev.phases(), torch.arange(0, device=device))
    executor.drain()
    metrics = finalize(executor.all_sum({**ev.sums, **(extra or {})}), solver, len(data.x_test))
    _sync(device)
    return metrics, time.perf_counter() - t


def recorder_prev_loss(recorder: Recorder | None, executor) -> float | None:
    """The previous epoch's composed training loss (for the demo's safeguard), on every rank."""
    prev = recorder.rows[-1]["train_loss"] if recorder and recorder.rows else None
    if executor.world_size > 1:
        import torch.distributed as dist

        box = [prev]
        dist.broadcast_object_list(box, src=0)
        prev = box[0]
    return prev


class _progress:
    """A rich progress bar over epochs (or nothing when disabled)."""

    def __new__(cls, cfg: RunConfig, enabled: bool, start_epoch: int):
        if not enabled:
            return None
        return super().__new__(cls)

    def __init__(self, cfg: RunConfig, enabled: bool, start_epoch: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("{task.fields[info]}"), transient=False)
        self.p.start()
        desc = f"{cfg.dataset}/{cfg.model}/{cfg.method}/n{cfg.splits}/seed{cfg.seed}"
        self.task = self.p.add_task(desc, total=cfg.epochs, completed=start_epoch - 1, info="")
        self.info = ""  # the last evaluated epoch's figures (eval_every skips some)

    def update(self, epoch: int, row: dict[str, float]) -> None:
        if "train_acc" in row:
            self.info = f"train {row['train_acc']:.3f} test {row['test_acc']:.3f} loss {row['train_loss']:.3g} (epoch {epoch})"
        self.p.update(self.task, completed=epoch, info=self.info)

    def close(self) -> None:
        self.p.stop()
