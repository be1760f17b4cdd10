"""Executors: where the stages of a solver run.

``SerialExecutor`` holds every stage in one process and is the reference.
``DistributedExecutor`` holds the stages of one ``torch.distributed`` rank (one stage per
rank, or a contiguous group when there are more stages than ranks) and carries messages
between ranks with point-to-point ``isend``/``irecv``. Both run a solver's phases the same
way: for each phase, for each stage held, in stage order; sends never block, receives do,
and a solver's phases are ordered so that every receive is matched by an earlier send.
"""

from __future__ import annotations

import collections
import datetime
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.distributed as dist

from .errors import DistributedError
from .solvers import Phase, Stage
from .split import group_sizes


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


class LocalMailbox:
    """Messages between stages of one process: a FIFO queue per (src, dst) pair."""

    def __init__(self):
        self._queues: dict[tuple[int, int], collections.deque] = collections.defaultdict(collections.deque)

    def send(self, src: int, dst: int, tensor: torch.Tensor) -> None:
        self._queues[(src, dst)].append(tensor)

    def recv(self, src: int, dst: int, shape: tuple[int, ...]) -> torch.Tensor:
        q = self._queues[(src, dst)]
        if not q:
            raise RuntimeError(f"stage {dst} expects a message from stage {src} that was never sent (phase order bug)")
        t = q.popleft()
        if tuple(t.shape) != tuple(shape):
            raise RuntimeError(f"message {src}->{dst} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        return t

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())


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
            self._inflight.append((dist.isend(t, peer), t, peer))
        except Exception as e:
            raise self._lost(peer, e) from None
        while self._inflight and self._inflight[0][0].is_completed():
            self._inflight.popleft()
        if len(self._inflight) > self.MAX_INFLIGHT:
            self._wait(*self._inflight.popleft())

    def _wait(self, work: dist.Work, tensor: torch.Tensor, peer: int) -> None:
        """Block on one exchange with ``peer`` (timed as waiting; a timeout means a lost rank)."""
        t0 = time.perf_counter()
        try:
            work.wait(self.timeout)
        except Exception as e:
            raise self._lost(peer, e) from None
        self.wait_s += time.perf_counter() - t0

    def recv(self, src: int, dst: int, shape: tuple[int, ...]) -> torch.Tensor:
        if self.owner[src] == self.rank:
            return super().recv(src, dst, shape)
        t = torch.empty(shape, device=self.comm_device, dtype=self.dtype)
        peer = self.owner[src]
        try:
            work = dist.irecv(t, peer)
        except Exception as e:
            raise self._lost(peer, e) from None
        self._wait(work, t, peer)
        return t.to(self.device)

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


class DistributedExecutor(SerialExecutor):
    """The stages of this rank; messages to other ranks' stages go through torch.distributed."""

    def __init__(self, stages: Sequence[Stage], owner: list[int], device: torch.device, timeout_s: float = 300.0,
                 comm_device: torch.device | None = None, dtype: torch.dtype = torch.float32):
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
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
        gathered: list[dict[str, float]] = [{} for _ in range(self.world_size)]
        try:
            dist.all_gather_object(gathered, values)
        except Exception as e:
            raise self.box._lost(None, e) from None
        out: dict[str, float] = {}
        for d in gathered:
            for k, v in d.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def all_true(self, flag: bool) -> bool:
        t = torch.tensor([0.0 if flag else 1.0], device=self.box.comm_device)
        try:
            dist.all_reduce(t)
        except Exception as e:
            raise self.box._lost(None, e) from None
        return t.item() == 0.0

    def close(self) -> None:
        try:
            self.box.flush()
        except DistributedError:
            pass


def slurm_to_torchrun_env() -> None:
    """Under ``srun`` without torchrun, take rank, world size and the ranks on this node from
    SLURM's variables (torchrun sets them itself).

    LOCAL_WORLD_SIZE is this node's task count: init_distributed compares it with the GPUs
    it sees to choose NCCL (a GPU per rank) or gloo (ranks sharing GPUs), so 2 nodes x 1 GPU
    must read 1, not the world size. The count comes from the step's SLURM_STEP_TASKS_PER_NODE
    (else the job's SLURM_TASKS_PER_NODE), a list over the nodes in SLURM's compressed form
    ("2(x3),1": three nodes with 2 tasks, then one with 1), indexed by SLURM_NODEID; a plain
    SLURM_NTASKS_PER_NODE is used when neither is set.
    """
    if "RANK" not in os.environ and "SLURM_PROCID" in os.environ:
        env = os.environ
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
        env.setdefault("MASTER_PORT", "29500")


def init_distributed(device: str, timeout_s: float) -> tuple[int, int, torch.device, torch.device]:
    """Join the process group torchrun (or srun) set up.

    Returns (rank, world size, compute device, communication device). NCCL needs one GPU per
    rank; when ranks must share GPUs, messages go through gloo via host memory instead.
    """
    slurm_to_torchrun_env()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DistributedError("device cuda asked for, but no CUDA GPU is visible; use --device cpu")
        gpus = torch.cuda.device_count()
        dev = torch.device("cuda", local_rank % gpus)
        torch.cuda.set_device(dev)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        backend, comm = ("nccl", dev) if local_world <= gpus else ("gloo", torch.device("cpu"))
    else:
        dev = comm = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        join_process_group(backend, rank, timeout_s)
    return rank, dist.get_world_size(), dev, comm


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


def join_process_group(backend: str, rank: int, timeout_s: float) -> None:
    """``init_process_group`` that ends within about ``timeout_s``.

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
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedError(_join_error(rank, timeout_s, first)) from None
    finally:
        watchdog.cancel()


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
