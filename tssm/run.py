"""The training loop every method shares: problem, split, solver, executor, recorder.

``train(cfg)`` builds the Problem (dataset tensors and seeded model, identical for every
method), cuts it into stages, lets the executor run the solver's phases on each minibatch
and records per-epoch metrics. The training clock covers only the steps (and the solver's
per-epoch work); evaluation is timed separately and never changes training state.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import TrainState, load_checkpoint, save_checkpoint
from .config import RunConfig
from .data import Dataset, load_dataset
from .errors import ConfigError, DistributedError, DivergenceError, Interrupted, exit_before_start
from .evaluate import Evaluation, finalize
from .models import build_model
from .parallel import (DistributedExecutor, Executor, SerialExecutor, agree_on_config, close_distributed, comm_record,
                       cuda_record, cuda_unavailable_reason, gather_objects, init_distributed, local_threads,
                       slurm_to_torchrun_env, stage_owner)
from .solvers import Solver, Stage, make_solver
from .rundir import RunFolder, RunFolderError
from .split import balanced_cuts, block_flops, block_sizes, check_splits, compute_cuts, split_model
from .environment import environment
from .tracking.recorder import Recorder


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is visible: {cuda_unavailable_reason()}")
    return torch.device(name)


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA float32 matrix products and cuDNN convolutions, both as asked (torch's
    defaults differ: matmul off, convolutions on, so a "float32" CNN would not be float32)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


@dataclass
class Problem:
    """Dataset tensors on the device plus the seeded model: the same for every method."""

    data: Dataset
    model: torch.nn.Sequential


def build_problem(cfg: RunConfig, device: torch.device) -> Problem:
    data = load_dataset(cfg.dataset, cfg.data_root, download=cfg.download).subset(cfg.n_train, cfg.n_test).with_validation(cfg.val_fraction).to(device, cfg.torch_dtype)
    model = build_model(
        cfg.model, data.input_shape, data.num_classes, width=cfg.width, depth=cfg.depth, channels=cfg.channels,
        residual_blocks=cfg.residual_blocks, init=cfg.init, seed=cfg.seed,
    ).to(device, cfg.torch_dtype)  # initialised in float32 from the seed, then cast: float64 starts from the same weights
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
        h = torch.zeros(1, *shape, device=problem.data.x_train.device, dtype=problem.data.x_train.dtype)
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


_RSS_BASE_KB: float = 0.0  # the process's RSS when the training's own memory starts counting
_CUDA_BASE: float = 0.0  # bytes allocated on the GPU then (data and model)


def _proc_status_kb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in KiB (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kb() -> float:
    """The process's peak resident size (since the last reset_peak_memory, where Linux allows it)."""
    hwm = _proc_status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB


def _release_free_heap() -> None:
    """glibc's malloc_trim(0): return freed heap memory to the kernel; a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_memory(device: torch.device | None = None) -> None:
    """Start counting the training's own memory here: after the data and the model are loaded,
    before the solver allocates its state (auxiliary variables, optimizer state). The kernel's
    peak-RSS mark is reset (/proc/self/clear_refs "5"), so a transient peak of loading the data
    is not counted; where that is not possible, the lifetime peak is used. Free heap pages are
    first handed back to the kernel (glibc's malloc_trim): in a long-lived process (a test run, a
    notebook) the training would otherwise reuse memory that is already resident and count 0."""
    global _RSS_BASE_KB
    _release_free_heap()
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    _RSS_BASE_KB = _proc_status_kb("VmRSS") or 0.0
    if device is not None and device.type == "cuda":  # the same definition on the GPU
        global _CUDA_BASE
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        _CUDA_BASE = torch.cuda.memory_allocated(device)


def peak_memory_mb(device: torch.device) -> float:
    """The training's own peak memory: what the solver's state, the activations and the optimizer
    added on top of the data and model. CUDA: the allocator's peak since reset_peak_memory minus
    what was allocated then (torch's own count). CPU: the peak resident size since
    reset_peak_memory minus the resident size then (torch's CPU allocator keeps no statistics,
    and tracemalloc does not see torch's allocations)."""
    if device.type == "cuda":
        return max(0.0, torch.cuda.max_memory_allocated(device) - _CUDA_BASE) / 2**20
    return max(0.0, peak_rss_kb() - _RSS_BASE_KB) / 1024


def peak_rss_mb() -> float:
    """The whole process's peak resident size (what peak_mem_mb used to be on CPU)."""
    return peak_rss_kb() / 1024


def _finite_state(solver: Solver, stages: list[Stage], row: dict[str, float]) -> str | None:
    """Name of the first NaN/Inf among the epoch's losses and the stages' variables, or None."""
    for k in ("train_loss", "objective"):
        if k in row and not math.isfinite(row[k]):
            return f"{k} is {row[k]}"
    for st in stages:
        for name, t in solver.state_dict(st).items():
            if isinstance(t, torch.Tensor) and not torch.isfinite(t).all():
                return f"auxiliary variable {name}_{st.index + 1} has NaN/Inf"
        for name, prm in st.net.named_parameters():
            if not torch.isfinite(prm).all():
                return f"weight {name} of subnetwork {st.index + 1} has NaN/Inf"
    return None


@dataclass
class Session:
    """One run's parts once built: config, where it runs, what it trains, what records it."""

    cfg: RunConfig
    device: torch.device
    problem: Problem
    stages: list[Stage]
    solver: Solver
    executor: Executor
    recorder: Recorder | None
    ckpt_path: Path
    overwrite: bool = False  # --overwrite: a checkpoint of other code starts the run again


def train(cfg: RunConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Run ``cfg`` to the end; returns the run record (also written as ``run.json``).

    The run folder is claimed first (:mod:`tssm.rundir`): a finished run of the same config is
    not trained again (the record says ``nothing_to_do``), another config's is refused unless
    ``overwrite``."""
    cfg.validate()
    session = start(cfg)
    session.overwrite = overwrite
    folder = RunFolder(cfg.out, cfg.config_hash(), {**cfg.to_dict(), "data_identity": session.problem.data.identity})
    try:
        done = claim_folder(session, folder, overwrite)
        if done:
            session.executor.close()
            result = {**json.loads((Path(cfg.out) / "run.json").read_text()), "nothing_to_do": done}
        else:
            result = train_claimed(session, progress)
    finally:
        folder.release()
    # the process group goes with a run that ended normally (after a failure the process exits:
    # NCCL's teardown can block on a lost peer)
    close_distributed()
    return result


def train_claimed(session: Session, progress: bool) -> dict[str, Any]:
    if signal.getsignal(signal.SIGINT) is exit_before_start:  # from here Ctrl-C is recorded as interrupted
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = session.cfg
    ex, recorder = session.executor, session.recorder
    try:
        state = resume_or_initialise(session)
    except Exception as e:  # a refused checkpoint, a store that fails: a failed record, then the error
        if recorder:
            record_failure(recorder, f"{type(e).__name__}: {e}", record_extra(session))
        ex.close()
        raise
    status, reason, epoch = "finished", None, state.epoch
    with stop_on_sigterm() as stop, ProgressBar(cfg, progress and ex.is_main, state.epoch + 1) as bar:
        try:
            if state.epoch == 0:  # epoch 0: the initial state, the same for every method
                record_epoch(session, state, initial_row(session))
                publish(session)
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                row = train_epoch(session, state, epoch)
                bar.update(epoch, row)
                if not ex.all_true(stop.signum is None):
                    if epoch % cfg.checkpoint_every:
                        checkpoint(session, state)  # a stop keeps every finished epoch
                    raise Interrupted(f"stopped by signal {stop.signum} after epoch {epoch}; rerun to resume")
        except DivergenceError as e:
            status, reason = "diverged", e.at_epoch(epoch)
        except Interrupted as e:
            status, reason = "interrupted", str(e)
        except KeyboardInterrupt:
            status, reason = "interrupted", "interrupted by the user; rerun to resume from the last checkpoint"
        except Exception as e:  # record the failure (run.json, MLflow FAILED), then report it
            if recorder:
                record_failure(recorder, f"{type(e).__name__}: {e}", record_extra(session))
            raise
        finally:
            ex.close()
    return finish(session, status, reason)


def start(cfg: RunConfig) -> Session:
    """Join the process group (under torchrun or srun), then build the problem, the stages,
    the solver and the executor; the main rank gets the recorder."""
    slurm_to_torchrun_env()
    comm_device, comm = None, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        rank, world, device, comm_device = init_distributed(resolve_device(cfg.device).type, cfg.dist_timeout)
        agree_on_config({**cfg.hyperparameters(), "out": cfg.out, "checkpoint": cfg.checkpoint}, rank, world)
        comm = comm_record(comm_device)
    else:
        rank, world, device = 0, 1, resolve_device(cfg.device)
    threads = cfg.threads or local_threads(world)
    torch.set_num_threads(threads)
    set_tf32(cfg.tf32)
    # each rank's CUDA stack and devices, gathered on rank 0 (run.json's environment)
    ranks = gather_objects(cuda_record(device), rank, world)
    if device.type == "cuda" or world > 1:
        comm = {**(comm or {}), "tf32": cfg.tf32, "ranks": ranks}
    # set_flush_denormal answers False where the CPU cannot flush (then IEEE underflow, as before)
    flushing = torch.set_flush_denormal(cfg.flush_denormal) and cfg.flush_denormal
    torch.manual_seed(cfg.seed)
    # the main rank opens the MLflow store and experiment first: a problem there stops the run now
    recorder = Recorder(cfg, {**environment(device, threads, world, comm), "flush_denormal": flushing}) if rank == 0 else None
    if recorder:
        recorder.connect()

    problem = build_problem(cfg, device)
    if world > 1:  # the same data on every rank: its content is part of the run's identity
        agree_on_config({"data_identity": problem.data.identity}, rank, world)
    reset_peak_memory(device)
    stages = build_stages(cfg, problem)
    solver = make_solver(cfg, problem.data.x_train, problem.data.y_train)
    # Check every step's loss where that is free (one CPU process); otherwise once per epoch.
    solver.check_finite = world == 1 and device.type == "cpu"
    executor: Executor
    if world > 1:
        executor = DistributedExecutor(stages, stage_owner(len(stages), world), device, cfg.dist_timeout, comm_device,
                                       cfg.torch_dtype)
    else:
        executor = SerialExecutor(stages)
    for st in executor.stages:
        solver.setup(st)
    return Session(cfg, device, problem, stages, solver, executor, recorder, Path(cfg.out) / "checkpoint" / f"rank{rank}.pt")


def claim_folder(s: Session, folder: RunFolder, overwrite: bool) -> str | None:
    """Rank 0 claims the run folder; every rank learns the outcome (an error, nothing to do, or go)."""
    problem, done = None, None
    if s.executor.is_main:
        try:
            done = folder.claim(overwrite=overwrite)
        except RunFolderError as e:
            problem = e
    if not s.executor.all_true(problem is None):
        s.executor.close()
        raise problem or RunFolderError("rank 0 could not claim the run folder (see its error)")
    if not s.executor.all_true(done is None):
        return done or "rank 0 found this config's finished run; nothing to do"
    return None


def resume_or_initialise(s: Session) -> TrainState:
    """The state after the last checkpointed epoch, or a fresh one after the solver's
    initialisation phases; starts the MLflow run (a resumed run continues its own)."""
    state = (load_checkpoint(s.ckpt_path, s.cfg, s.executor.stages, s.solver,
                             other_code="restart" if s.overwrite else "refuse") if s.cfg.checkpoint else None)
    epochs = s.executor.all_sum({f"resume_epoch_r{s.executor.rank}": state.epoch if state else 0})
    if len(set(epochs.values())) > 1:
        found = ", ".join(f"rank {k.rsplit('_r', 1)[1]}: epoch {int(v)}" for k, v in sorted(epochs.items()))
        raise DistributedError(f"the ranks' checkpoints in {s.ckpt_path.parent} are from different epochs ({found}); "
                               f"delete that folder to start over")
    if state is None:
        state = TrainState()
        s.executor.run(s.solver.init_phases(), torch.arange(s.solver.M, device=s.device))
        s.executor.drain()
    if s.recorder:
        s.recorder.rows = state.rows
        s.recorder.start_mlflow(resume_run_id=state.mlflow_run_id, resume_uri=state.tracking_uri, dataset=s.problem.data)
        state.mlflow_run_id, state.tracking_uri = s.recorder.run_id, s.recorder.tracking_uri
    return state


def initial_row(s: Session) -> dict[str, float]:
    metrics, eval_time = evaluate(s.solver, s.executor, s.problem.data)
    return {"epoch": 0, **metrics, "train_time_s": 0.0, "epoch_time_s": 0.0, "eval_time_s": eval_time,
            "samples_per_s": float("nan"), "peak_mem_mb": peak_memory_mb(s.device), "peak_rss_mb": peak_rss_mb(), "restored": 0.0}


def run_epoch_steps(s: Session, epoch: int) -> float:
    """One epoch of training (steps, full-data phases, deferred work); its seconds."""
    ex, solver, M = s.executor, s.solver, s.solver.M
    _sync(s.device)
    ex.take_wait()  # drop the waits of evaluation: only the epoch's own count
    t0 = time.perf_counter()
    perm = epoch_permutation(s.cfg.seed, epoch, M, s.device)
    step_phases = solver.step_phases()
    for rows in [perm] if solver.full_batch else perm.split(s.cfg.batch_size):
        ex.run(step_phases, rows)
    full_pass = solver.full_pass_phases()
    for rows in torch.arange(M, device=s.device).split(s.cfg.chunk_rows):
        ex.run(full_pass, rows)
    ex.run(solver.flush_phases(), perm[:0])
    ex.drain()
    _sync(s.device)
    return time.perf_counter() - t0


def train_epoch(s: Session, state: TrainState, epoch: int) -> dict[str, float]:
    """Train one epoch, evaluate it (every ``eval_every``), apply the demo's safeguard,
    record it, check it is finite and checkpoint it; returns its row."""
    cfg, ex, data = s.cfg, s.executor, s.problem.data
    safeguard = s.solver.safeguard()
    snapshot = [{k: v.clone() for k, v in st.net.state_dict().items()} for st in ex.stages] if safeguard else None
    epoch_time = run_epoch_steps(s, epoch)
    waits = {**ex.take_wait(), **rank_figures(s, epoch_time)}
    # the safeguard reads every epoch's training loss (as the demo computes it): those runs
    # evaluate every epoch whatever eval_every says
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs or safeguard:
        metrics, eval_time = evaluate(s.solver, ex, data, waits)
    else:  # eval_every: this epoch records its timing (and waits) only
        metrics, eval_time = ex.all_sum(waits), 0.0
    restored = 0.0
    prev = state.last_train_loss
    if snapshot is not None and prev is not None and metrics["train_loss"] > prev + safeguard:
        # The demo's safeguard: the training loss rose too much, so take back the epoch's
        # weight updates (its cost is counted in the training clock) and re-evaluate.
        t2 = time.perf_counter()
        for st, snap in zip(ex.stages, snapshot):
            st.net.load_state_dict(snap)
        restored = 1.0
        epoch_time += time.perf_counter() - t2
        metrics, _ = evaluate(s.solver, ex, data, {**waits, **rank_figures(s, epoch_time)})
    epoch_time, peak = slowest_rank(metrics, epoch_time, peak_memory_mb(s.device))
    state.train_clock += epoch_time
    row = {
        "epoch": epoch, **metrics,
        "train_time_s": state.train_clock, "epoch_time_s": epoch_time, "eval_time_s": eval_time,
        "samples_per_s": s.solver.M / epoch_time if epoch_time > 0 else float("nan"),
        "peak_mem_mb": peak, "peak_rss_mb": peak_rss_mb(), "restored": restored,
    }
    bad = _finite_state(s.solver, ex.stages, row)
    if not ex.all_true(bad is None) and bad is None:
        bad = "another rank's subnetwork diverged"
    record_epoch(s, state, row)
    if bad:
        raise DivergenceError(f"run diverged at epoch {epoch}: {bad}", epoch=epoch)
    state.epoch = epoch
    if epoch % cfg.checkpoint_every == 0 or not cfg.checkpoint:
        checkpoint(s, state)
    return row


def checkpoint(s: Session, state: TrainState) -> None:
    """Save the state after ``state.epoch`` (if the run checkpoints), then hand MLflow the epochs
    the checkpoint now holds (see :func:`publish`)."""
    if s.cfg.checkpoint:
        save_checkpoint(s.ckpt_path, s.cfg, state, s.executor.stages, s.solver)
    publish(s)


def rank_figures(s: Session, epoch_time: float) -> dict[str, float]:
    """This rank's epoch seconds and peak memory, to be gathered with the epoch's metrics (one
    reduction per epoch); none in one process."""
    if s.executor.world_size == 1:
        return {}
    r = s.executor.rank
    return {f"epoch_time_s_r{r}": epoch_time, f"peak_mem_mb_r{r}": peak_memory_mb(s.device)}


def slowest_rank(metrics: dict[str, float], epoch_time: float, peak: float) -> tuple[float, float]:
    """The epoch's time as the slowest rank's (what a distributed epoch costs) and the peak
    memory as the largest rank's; ``peak_mem_mb_r<rank>`` stay in the row, the per-rank times go."""
    times = [metrics.pop(k) for k in [k for k in metrics if k.startswith("epoch_time_s_r")]]
    peaks = [v for k, v in metrics.items() if k.startswith("peak_mem_mb_r")]
    return max(times or [epoch_time]), max(peaks or [peak])


def record_epoch(s: Session, state: TrainState, row: dict[str, float]) -> None:
    if "train_loss" in row:
        state.last_train_loss = row["train_loss"]
    if s.recorder:
        s.recorder.log_epoch(row)  # appends to state.rows (the recorder's rows)
    else:
        state.rows.append(row)


def publish(s: Session) -> None:
    """MLflow gets the epochs after the checkpoint holds them: a run killed in between logs
    them on resume (the checkpoint's rows), never twice (a rerun epoch was not logged)."""
    if s.recorder:
        s.recorder.log_pending()


def record_extra(s: Session) -> dict[str, Any]:
    """What run.json records beside the config: the data the run trained on (rows per split,
    input shape, the files' identity and verification)."""
    return {"data": s.problem.data.describe()}


def record_failure(recorder: Recorder, reason: str, extra: dict[str, Any] | None = None) -> None:
    """Mark the run failed as far as the disk allows: the whole record, else run.json alone
    (a full disk may refuse the metrics but take the small run.json), else nothing."""
    try:
        recorder.finish("failed", reason, extra)
    except OSError:
        with contextlib.suppress(OSError):
            recorder.write_run_json("failed", reason, extra)
        recorder.close_failed(reason)  # never leave the MLflow run RUNNING


def finish(s: Session, status: str, reason: str | None) -> dict[str, Any]:
    """Write the record; a finished run drops its checkpoint; an interrupted one is an error."""
    info: dict[str, Any] = {"status": status, "reason": reason}
    if s.recorder:
        info = s.recorder.finish(status, reason, {**record_extra(s), "splits_blocks": [len(st.net) for st in s.stages],
                                                  "layerwise": s.solver.layerwise})
    if status == "finished" and s.cfg.checkpoint:
        s.ckpt_path.unlink(missing_ok=True)  # a finished run keeps its record, not its (large) checkpoint
    if status == "interrupted":
        raise Interrupted(reason)
    return info


def evaluate(solver: Solver, executor: Executor, data: Dataset, extra: dict[str, float] | None = None
             ) -> tuple[dict[str, float], float]:
    """The epoch's metrics (outside the training clock) and the seconds they took.

    ``extra`` are per-rank figures (e.g. ``wait_s_r1``) gathered with the metrics.
    """
    device = data.x_train.device
    _sync(device)
    t = time.perf_counter()
    ev = Evaluation(solver, data.x_test, data.y_test, data.x_val, data.y_val)
    executor.run(ev.phases(), torch.arange(0, device=device))
    executor.drain()
    metrics = finalize(executor.all_sum({**ev.sums, **(extra or {})}), solver, len(data.x_test),
                       0 if data.y_val is None else len(data.y_val))
    _sync(device)
    return metrics, time.perf_counter() - t


class StopFlag:
    signum: int | None = None


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM (Snakemake, SLURM, torchrun teardown) finishes the epoch, checkpoints and stops."""
    flag = StopFlag()

    def on_signal(signum, frame):
        flag.signum = signum

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield flag
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


class ProgressBar:
    """A rich progress bar over epochs; does nothing when disabled."""

    def __init__(self, cfg: RunConfig, enabled: bool, start_epoch: int):
        self.cfg, self.enabled, self.start_epoch = cfg, enabled, start_epoch
        self.info = ""  # the last evaluated epoch's figures (eval_every skips some)
        self.bar = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("{task.fields[info]}"), transient=False)
            self.bar.start()
            c = self.cfg
            desc = f"{c.dataset}/{c.model}/{c.method}/n{c.splits}/seed{c.seed}"
            self.task = self.bar.add_task(desc, total=c.epochs, completed=self.start_epoch - 1, info="")
        return self

    def update(self, epoch: int, row: dict[str, float]) -> None:
        if self.bar is None:
            return
        if "train_acc" in row:
            self.info = f"train {row['train_acc']:.3f} test {row['test_acc']:.3f} loss {row['train_loss']:.3g} (epoch {epoch})"
        self.bar.update(self.task, completed=epoch, info=self.info)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
