"""Executors: where the stages of a solver run.

``SerialExecutor`` holds every stage in one process and is the reference.
``DistributedExecutor`` holds the stages of one ``torch.distributed`` rank (one stage per
rank, or a contiguous group when there are more stages than ranks) and carries messages
between ranks with point-to-point ``isend``/``irecv``. Both run a solver's phases the same
way: for each phase, for each stage held, in stage order; sends never block, receives do,
and a solver's phases are ordered so that every receive is matched by an earlier send, and
(NCCL: one ordered stream per pair of ranks, a large send completes only once its receive is
posted) so that two neighbours never both send to each other first (tests/test_nccl_order.py).
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from .errors import DistributedError
from .solvers import Phase, Stage
from .split import group_sizes


def _sync(device: torch.device) -> None:
    """Wait for the kernels queued on ``device`` (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Executor(Protocol):
    """Where a solver's phases run: the stages this process holds and how it talks to the others."""

    rank: int
    world_size: int
    is_main: bool
    stages: list[Stage]

    def run(self, phases: Sequence[Phase], rows: torch.Tensor) -> None:
        """Every phase, for every stage held, in stage order."""

    def drain(self) -> None:
        """End of a pass: deliver every message in flight (an unread one is a phase-order bug)."""

    def all_sum(self, values: dict[str, float]) -> dict[str, float]:
        """Per-rank figures added up over the ranks, on every rank."""

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""

    def take_wait(self) -> dict[str, float]:
        """Seconds blocked on other ranks since the last call (``wait_s_r<rank>``)."""

    def close(self) -> None: ...


class Pending:
    """A posted receive: ``wait()`` gives its tensor (once fetched, kept)."""

    def __init__(self, fetch):
        self._fetch, self._value = fetch, None

    def wait(self) -> torch.Tensor:
        if self._fetch is not None:
            self._value, self._fetch = self._fetch(), None
        return self._value


class LocalMailbox:
    """Messages between stages of one process: a FIFO queue per (src, dst) pair."""

    def __init__(self):
        self._queues: dict[tuple[int, int], collections.deque] = collections.defaultdict(collections.deque)
        self._posted: dict[tuple[int, int], collections.deque[Pending]] = collections.defaultdict(collections.deque)

    def send(self, src: int, dst: int, tensor: torch.Tensor) -> None:
        self._queues[(src, dst)].append(tensor)

    def recv(self, src: int, dst: int, shape: tuple[int, ...]) -> torch.Tensor:
        self._settle(src, dst, None)
        return self._pop(src, dst, shape)

    def post_recv(self, src: int, dst: int, shape: tuple[int, ...]) -> Pending:
        """Within a process a receive needs no posting: the message is taken at ``wait()``,
        after any receive on the pair posted before it (the order of the sends)."""
        pending = Pending(lambda: self._pop(src, dst, shape))
        self._posted[(src, dst)].append(pending)
        return Pending(lambda: self._settle(src, dst, pending))

    def _settle(self, src: int, dst: int, upto: Pending | None) -> torch.Tensor | None:
        """Fetch the receives posted on the pair, oldest first, up to ``upto`` (None: all)."""
        posted = self._posted[(src, dst)]
        while posted:
            p = posted.popleft()
            value = p.wait()
            if p is upto:
                return value
        return upto.wait() if upto is not None else None

    def _pop(self, src: int, dst: int, shape: tuple[int, ...]) -> torch.Tensor:
        q = self._queues[(src, dst)]
        if not q:
            raise RuntimeError(f"stage {dst} expects a message from stage {src} that was never sent (phase order bug)")
        t = q.popleft()
        if tuple(t.shape) != tuple(shape):
            raise RuntimeError(f"message {src}->{dst} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        return t

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values()) + sum(len(p) for p in self._posted.values())


class SerialExecutor:
    """All stages in this process, run phase by phase in stage order."""

    rank, world_size, is_main = 0, 1, True

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)
        self.box = LocalMailbox()

    def run(self, phases: Sequence[Phase], rows: torch.Tensor) -> None:
        for phase in phases:
            for stage in self.stages:
                phase(stage, rows, self.box)

    def drain(self) -> None:
        """End of a pass (init, epoch, evaluation): every message must have been delivered and
        read (else: a phase order bug)."""
        if self.box.pending():
            raise RuntimeError(f"{self.box.pending()} messages left unread at the end of a pass (phase order bug)")

    def all_sum(self, values: dict[str, float]) -> dict[str, float]:
        return dict(values)

    def take_wait(self) -> dict[str, float]:
        """Seconds each rank spent blocked on the others since the last call (none here)."""
        return {}

    def all_true(self, flag: bool) -> bool:
        return flag

    def close(self) -> None:
        pass


def stage_owner(num_stages: int, world_size: int) -> list[int]:
    """Rank of each stage: contiguous groups, as balanced as possible."""
    if world_size > num_stages:
        raise DistributedError(
            f"{world_size} ranks for {num_stages} subnetworks: every rank needs at least one; "
            f"launch with --nproc-per-node {num_stages} or fewer"
        )
    return [r for r, size in enumerate(group_sizes(num_stages, world_size)) for _ in range(size)]


class DistMailbox(LocalMailbox):
    """Local queue between stages of this rank; ``isend``/``irecv`` to stages elsewhere.

    Messages between a pair of ranks arrive in the order they were sent (both ranks run
    the same phases in the same order), so no tags are needed; the receiver knows shapes.
    """

    def __init__(self, owner: list[int], rank: int, device: torch.device, timeout_s: float,
                 comm_device: torch.device | None = None, dtype=torch.float32):
        super().__init__()
        self.owner, self.rank, self.device, self.dtype = owner, rank, device, dtype
        self.comm_device = comm_device or device
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self._inflight: collections.deque[tuple[dist.Work, torch.Tensor, int]] = collections.deque()
        self.wait_s = 0.0  # seconds blocked on other ranks (receives, and sends at flush)

    #: Sends left in flight before the oldest is waited for. A send of a large tensor completes
    #: only once the peer has posted the matching receive, which (by design) may be a step
    #: later: waiting for every send at the end of each step would make the ranks take turns.
    MAX_INFLIGHT = 16

    def send(self, src: int, dst: int, tensor: torch.Tensor) -> None:
        if self.owner[dst] == self.rank:
            return super().send(src, dst, tensor)
        t = tensor.detach().to(self.comm_device).contiguous()
        peer = self.owner[dst]
        try:
            self._inflight.append((self._isend(t, peer), t, peer))
        except Exception as e:
            raise self._lost(peer, e) from None
        while self._inflight and self._inflight[0][0].is_completed():
            self._inflight.popleft()
        if len(self._inflight) > self.MAX_INFLIGHT:
            self._wait(*self._inflight.popleft())

    def _wait(self, work: dist.Work, tensor: torch.Tensor, peer: int) -> None:
        """Block on one exchange with ``peer`` (timed as waiting; a timeout means a lost rank).

        On CUDA the rank's own queued kernels finish before the clock starts, and the clock
        stops when the message is in memory (NCCL's ``wait`` only orders streams): what is
        timed is the wait for the peer, not this rank's compute."""
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            work.wait(self.timeout)
            _sync(self.comm_device)
        except Exception as e:
            raise self._lost(peer, e) from None
        self.wait_s += time.perf_counter() - t0

    def recv(self, src: int, dst: int, shape: tuple[int, ...]) -> torch.Tensor:
        return self.post_recv(src, dst, shape).wait()

    def post_recv(self, src: int, dst: int, shape: tuple[int, ...]) -> Pending:
        """``irecv`` now: later sends to the same rank queue behind it on NCCL's stream."""
        if self.owner[src] == self.rank:
            return super().post_recv(src, dst, shape)
        t = torch.empty(shape, device=self.comm_device, dtype=self.dtype)
        peer = self.owner[src]
        try:
            work = self._irecv(t, peer)
        except Exception as e:
            raise self._lost(peer, e) from None

        def fetch() -> torch.Tensor:
            self._wait(work, t, peer)
            return t.to(self.device)
        return Pending(fetch)

    # -- the transport (torch.distributed; tests/test_nccl_order.py puts a model of NCCL here)
    def _isend(self, tensor: torch.Tensor, peer: int) -> dist.Work:
        return dist.isend(tensor, peer)

    def _irecv(self, tensor: torch.Tensor, peer: int) -> dist.Work:
        return dist.irecv(tensor, peer)

    def pipeline_group(self) -> tuple[dist.ProcessGroup, torch.device] | None:
        """The hook for a solver whose step is a library pipeline schedule that carries its own
        messages (gpipe: torch.distributed.pipelining): (the process group, the device messages go
        through) when every stage has a rank of its own, else None (the solver then exchanges
        through this mailbox, as the serial executor's ``LocalMailbox``, which has no such hook)."""
        if self.owner != list(range(dist.get_world_size())):
            return None
        return dist.group.WORLD, self.comm_device

    def flush(self) -> None:
        """Wait until every send has been received (end of an epoch, evaluation)."""
        while self._inflight:
            self._wait(*self._inflight.popleft())

    def _lost(self, peer: int | None, e: Exception) -> DistributedError:
        """The error for a failed exchange; ``peer=None`` for a collective, which names every
        other rank (in a two-rank run that is exactly one)."""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        others = sorted(set(self.owner) - {self.rank}) if peer is None else [peer]
        who = f"rank {others[0]}" if len(others) == 1 else "one of ranks " + ", ".join(map(str, others))
        return DistributedError(
            f"rank {self.rank} lost contact with {who}: it died, or stalled longer than "
            f"dist_timeout={self.timeout.total_seconds():g}s ({first}). The run is marked failed; "
            f"rerun to resume from the last checkpoint"
        )


def add_up(gathered: Sequence[dict[str, float]]) -> dict[str, float]:
    """The ranks' figures added up key by key (a key one rank alone reports keeps its value)."""
    out: dict[str, float] = {}
    for d in gathered:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + v
    return out


class DistributedExecutor(SerialExecutor):
    """The stages of this rank; messages to other ranks' stages go through torch.distributed."""

    def __init__(self, stages: Sequence[Stage], owner: list[int], device: torch.device, timeout_s: float = 300.0,
                 comm_device: torch.device | None = None, dtype: torch.dtype = torch.float32, *,
                 rank: int | None = None, world_size: int | None = None):
        self.rank = dist.get_rank() if rank is None else rank
        self.world_size = dist.get_world_size() if world_size is None else world_size
        self.is_main = self.rank == 0
        self.owner = owner
        self.device = device
        self.stages = [s for s in stages if owner[s.index] == self.rank]
        self.box = DistMailbox(owner, self.rank, device, timeout_s, comm_device, dtype)

    def drain(self) -> None:
        self.box.flush()
        super().drain()

    def take_wait(self) -> dict[str, float]:
        """``wait_s_r<rank>``: where parallel efficiency goes (imbalance and message latency)."""
        w, self.box.wait_s = self.box.wait_s, 0.0
        return {f"wait_s_r{self.rank}": w}

    def all_sum(self, values: dict[str, float]) -> dict[str, float]:
        return add_up(self._gather(values))

    def all_true(self, flag: bool) -> bool:
        return all(self._gather(bool(flag)))

    def _gather(self, obj: object) -> list:
        """Every rank's ``obj``, in rank order, on every rank (a collective)."""
        gathered: list = [None] * self.world_size
        try:
            dist.all_gather_object(gathered, obj)
        except Exception as e:
            raise self.box._lost(None, e) from None
        return gathered

    def close(self) -> None:
        try:
            self.box.flush()
        except DistributedError:
            pass


#: SLURM_STEP_ID values that are not an ``srun`` step: the batch script, the extern step,
#: the interactive step (a shell from ``salloc``) and the pending placeholder.
_NOT_A_STEP = {"4294967290", "4294967291", "4294967292", "4294967293", "4294967294", "4294967295",
               "batch", "extern", "interactive"}


def in_srun_step(env=None) -> bool:
    """Whether this process is a task of an ``srun`` step (not a plain command in the batch
    script or an ``salloc`` shell, where SLURM_PROCID/SLURM_NTASKS describe the allocation and
    no other task will ever start)."""
    env = os.environ if env is None else env
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID"))
    return "SLURM_PROCID" in env and step is not None and step not in _NOT_A_STEP


def slurm_to_torchrun_env() -> None:
    """Under ``srun`` without torchrun, take rank, world size and the ranks on this node from
    SLURM's variables (torchrun sets them itself); outside an ``srun`` step nothing is mapped,
    so ``python -m tssm train`` in a ``--ntasks=4`` batch script runs alone instead of waiting
    for three ranks that never start.

    LOCAL_WORLD_SIZE is this node's task count (what the GPUs are shared by). The count comes
    from the step's SLURM_STEP_TASKS_PER_NODE (else the job's SLURM_TASKS_PER_NODE), a list over
    the nodes in SLURM's compressed form ("2(x3),1": three nodes with 2 tasks, then one with 1),
    indexed by SLURM_NODEID; a plain SLURM_NTASKS_PER_NODE is used when neither is set.
    MASTER_PORT, when unset, comes from the job id (jobs sharing a node get different ports);
    MASTER_ADDR, when unset and the step is on one node, is this node.
    """
    env = os.environ
    if "RANK" in env or not in_srun_step(env):
        return
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = env.get("SLURM_STEP_NUM_TASKS") or env["SLURM_NTASKS"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    per_node: list[int] = []
    spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or ""
    for part in filter(None, spec.split(",")):
        count, _, repeat = part.partition("(x")
        try:
            per_node += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
        except ValueError:
            per_node = []
            break
    node = int(env.get("SLURM_NODEID", "0"))
    if node < len(per_node):
        env["LOCAL_WORLD_SIZE"] = str(per_node[node])
    elif env.get("SLURM_NTASKS_PER_NODE", "").isdigit():
        env["LOCAL_WORLD_SIZE"] = env["SLURM_NTASKS_PER_NODE"]
    env.setdefault("MASTER_PORT", str(port_of_job(env.get("SLURM_JOB_ID"))))
    if "MASTER_ADDR" not in env and (env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES")) == "1":
        env["MASTER_ADDR"] = "127.0.0.1"


def port_of_job(job_id: str | None) -> int:
    """A rendezvous port from the SLURM job id (20000-39999; 29500 without one)."""
    return 20000 + int(job_id) % 20000 if job_id and job_id.isdigit() else 29500


def local_threads(world: int) -> int:
    """CPU threads per rank: the cores this process may run on (SLURM's and taskset's CPU
    affinity, not the machine's count) divided by the ranks on this node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or world)
    return max(1, cores // max(1, local))


def init_distributed(device: str, timeout_s: float) -> tuple[int, int, torch.device, torch.device]:
    """Join the process group torchrun (or srun) set up.

    Returns (rank, world size, compute device, communication device). NCCL needs one GPU per
    rank; when the ranks of any node must share GPUs, every rank uses gloo via host memory
    instead: the ranks agree on the backend through the rendezvous store before the process
    group starts (each rank alone would pick NCCL on some nodes and gloo on others, and hang).
    """
    slurm_to_torchrun_env()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistributedError(f"rank {rank}: device cuda asked for, but no CUDA GPU is visible: "
                                   f"{cuda_unavailable_reason()}")
        gpus = torch.cuda.device_count()
        dev = torch.device("cuda", local_rank % gpus)
        torch.cuda.set_device(dev)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        wants_nccl = local_world <= gpus
    else:
        dev = torch.device("cpu")
        wants_nccl = False
    if not dist.is_initialized():
        # A lost peer under NCCL raises in wait() (recorded as a failed run) instead of the
        # watchdog aborting the process.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
        join_process_group(wants_nccl, rank, world, timeout_s)
    comm = dev if dist.get_backend() == "nccl" else torch.device("cpu")
    return rank, dist.get_world_size(), dev, comm


def agree_on_backend(store: dist.Store, rank: int, world: int, wants_nccl: bool) -> str:
    """NCCL if every rank can have a GPU of its own, else gloo: each rank posts its answer in
    the store and reads everyone's, so all compute the same backend."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")  # torchrun's store outlives a restart
    store.set(f"tssm/{attempt}/nccl_ok/{rank}", "1" if wants_nccl else "0")
    keys = [f"tssm/{attempt}/nccl_ok/{r}" for r in range(world)]
    store.wait(keys)
    return "nccl" if all(store.get(k) == b"1" for k in keys) else "gloo"


def close_distributed() -> None:
    """Destroy the process group (at the end of a run: NCCL's communicators are freed and
    torch warns no more about a group left behind)."""
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def cuda_unavailable_reason() -> str:
    """Why ``torch.cuda.is_available()`` is false, and what fixes it (docs/gpu.md)."""
    build = torch.version.cuda
    if build is None:
        return ("this torch is a CPU-only build (torch.version.cuda is None); install a CUDA build "
                "(docs/gpu.md)")
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "CUDA_VISIBLE_DEVICES is empty: no GPU is visible to this process"
    driver = driver_version()
    if driver is None:
        return ("no NVIDIA driver is loaded here (no /proc/driver/nvidia/version): not a GPU node, or the driver "
                "is not installed; run with --device cpu")
    return (f"torch {torch.__version__} is built for CUDA {build}, and the NVIDIA driver here ({driver}) does not "
            f"run it (nvidia-smi shows the newest CUDA version a driver supports); "
            f"install the torch build for that CUDA version, e.g. pip install torch=={torch.__version__.split('+')[0]} "
            f"--index-url https://download.pytorch.org/whl/cu126 (docs/gpu.md), or run with --device cpu")


def driver_version() -> str | None:
    """The NVIDIA kernel driver's version (Linux: /proc/driver/nvidia/version), else None."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    m = re.search(r"Kernel Module(?: for \w+)?\s+([\d.]+)", text)
    return m.group(1) if m else None


def cuda_record(device: torch.device) -> dict[str, object]:
    """What this rank's CUDA stack is (run.json, per rank): the driver, the CUDA, NCCL and cuDNN
    versions torch was built with, the visible devices and the one used."""
    rec: dict[str, object] = {"host": socket.gethostname(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                              "torch_cuda": torch.version.cuda, "driver": driver_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        rec.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), device=str(device),
                   gpus_visible=torch.cuda.device_count(), cudnn=torch.backends.cudnn.version(),
                   nccl=".".join(map(str, torch.cuda.nccl.version())) if dist.is_nccl_available() else None,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return rec


def comm_record(comm_device: torch.device) -> dict[str, object]:
    """What this rank's process group uses, for run.json's environment: the backend, where
    messages go through, and the ranks on this node that the NCCL/gloo choice compared with
    the GPUs (LOCAL_WORLD_SIZE)."""
    return {"backend": dist.get_backend(), "comm_device": str(comm_device),
            "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))}


#: Seconds past ``dist_timeout`` before a join that is still blocked is given up.
JOIN_GRACE_S = 5.0


def _join_error(rank: int, timeout_s: float, cause: str) -> str:
    """The one line for a rank that cannot join: where it looked and what to check."""
    addr, port = os.environ.get("MASTER_ADDR", "?"), os.environ.get("MASTER_PORT", "?")
    check = ("that every rank was started with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT" if rank == 0 else
             f"that rank 0 runs with the same MASTER_ADDR and MASTER_PORT and is reachable, and that no other "
             f"program holds port {port} (ss -ltnp | grep {port})")
    return (f"rank {rank} could not join the process group at MASTER_ADDR={addr} MASTER_PORT={port} within "
            f"dist_timeout={timeout_s:g}s ({cause}); check {check}")


def join_process_group(wants_nccl: bool, rank: int, world: int, timeout_s: float) -> None:
    """Rendezvous (torch's ``env://``: torchrun's store, or MASTER_ADDR/MASTER_PORT), agree on
    the backend, then ``init_process_group``; all of it ends within about ``timeout_s``.

    torch's own timeout does not cover every wait: a rank whose MASTER_PORT is held by a
    program that accepts connections but is not rank 0's store blocks in the store's handshake
    forever. A watchdog thread ends such a process with the one-line error (exit 2); nothing
    has been written yet, so there is nothing to record."""
    def give_up() -> None:
        print(f"error: {_join_error(rank, timeout_s, 'no answer from a torch.distributed store there')}",
              file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(timeout_s + JOIN_GRACE_S, give_up)
    watchdog.daemon = True
    watchdog.start()
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        store, rank, world = next(dist.rendezvous("env://", rank, world, timeout=timeout))
        store.set_timeout(timeout)
        backend = agree_on_backend(store, rank, world, wants_nccl)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedError(_join_error(rank, timeout_s, first)) from None
    finally:
        watchdog.cancel()


def gather_objects(obj: object, rank: int, world: int) -> list:
    """Every rank's ``obj`` in rank order (one process: ``[obj]``)."""
    if world == 1:
        return [obj]
    gathered: list = [None] * world
    try:
        dist.all_gather_object(gathered, obj)
    except Exception as e:
        raise DistributedError(f"rank {rank} could not exchange its environment with the other ranks ({e})") from None
    return gathered


def agree_on_config(settings: dict, rank: int, world: int) -> None:
    """Every rank must train the same config: gather each rank's settings and stop all of them,
    naming the differing fields, when any differs from rank 0's (a wrapper that passes one
    rank other arguments would otherwise give numbers that belong to no config)."""
    gathered: list[dict] = [{} for _ in range(world)]
    try:
        dist.all_gather_object(gathered, settings)
    except Exception as e:
        raise DistributedError(f"rank {rank} could not exchange its config with the other ranks ({e})") from None
    diffs = []
    for r, other in enumerate(gathered[1:], start=1):
        for key in sorted(set(gathered[0]) | set(other)):
            if gathered[0].get(key) != other.get(key):
                diffs.append(f"{key} (rank 0: {gathered[0].get(key)!r}, rank {r}: {other.get(key)!r})")
    if diffs:
        raise DistributedError("the ranks were started with different settings: " + "; ".join(diffs)
                               + "; start every rank with the same arguments")
