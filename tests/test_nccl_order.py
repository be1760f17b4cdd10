"""Every method's exchanges are safe under NCCL's rules, for every schedule and n = 2, 3, 4.

Over gloo a send is buffered, so a wrong message order still runs; over NCCL it hangs. This
test runs the real training loop (initialisation, epochs with their steps, full-data phases
and flush, evaluation, the per-epoch collectives) with one simulated rank per stage (and, for
n = 4, also two ranks holding two stages each), each rank in its own thread, through the real
``DistMailbox`` whose transport is replaced by a model of NCCL's point-to-point rules, worst
case:

* between two ranks there is one ordered stream: each rank's sends to and receives from the
  other complete in the order it posted them;
* a send completes only when the peer's matching receive is posted and at the head of the
  peer's side of that stream (rendezvous: no message is ever buffered, whatever its size);
* ``work.wait()`` blocks the rank until its operation completed; collectives need every rank.

When every live rank is blocked and no operation can complete, the model prints the wait
cycle (who waits for whom, in which phase, behind which operation) and the test fails.
"""

from __future__ import annotations

import collections
import sys
import threading
from dataclasses import dataclass, fields

import pytest
import torch

from tssm.config import RunConfig
from tssm.data import Dataset
from tssm.errors import ConfigError
from tssm.models import build_model
from tssm.parallel import DistMailbox, DistributedExecutor, stage_owner
from tssm.run import Problem, Session, build_stages, initial_row, resume_or_initialise, train_epoch
from tssm.solvers import REGISTRY, SOLVERS, make_solver

TIMEOUT_S = 60.0  # a rank that never returns (a bug in the model itself) fails the test instead of hanging it


class Deadlock(BaseException):
    """The model's verdict (a BaseException, so the mailbox does not turn it into a lost-rank error)."""


def _where() -> str:
    """The solver or evaluation function that posted an operation (for the printed cycle)."""
    f = sys._getframe(2)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if mod.startswith(("tssm.solvers", "tssm.evaluate")):
            self = f.f_locals.get("self")
            return f"{type(self).__name__}.{f.f_code.co_name}" if self is not None else f.f_code.co_name
        f = f.f_back
    return "?"


@dataclass(eq=False)
class Op:
    """One point-to-point operation a rank posted on its stream with ``peer``."""

    kind: str  # "send" | "recv"
    rank: int
    peer: int
    tensor: torch.Tensor
    where: str
    done: bool = False

    def __str__(self) -> str:
        arrow = f"to rank {self.peer}" if self.kind == "send" else f"from rank {self.peer}"
        return f"{self.kind} {tuple(self.tensor.shape)} {arrow} (posted in {self.where})"


@dataclass
class Collective:
    generation: int


class NcclModel:
    """The world's streams, and what each blocked rank waits for."""

    def __init__(self, world: int):
        self.world = world
        self.cv = threading.Condition()
        self.streams: dict[tuple[int, int], collections.deque[Op]] = collections.defaultdict(collections.deque)
        self.waiting: dict[int, Op | Collective] = {}
        self.alive = set(range(world))
        self.failure: BaseException | None = None
        self.generation, self.arrived = 0, {}
        self.results: dict[int, list] = {}

    # -- posting and progress ------------------------------------------------------------
    def post(self, op: Op) -> "ModelWork":
        with self.cv:
            self.streams[(op.rank, op.peer)].append(op)
            self._progress()
            self.cv.notify_all()
        return ModelWork(self, op)

    def _progress(self) -> None:
        """Complete every pair of matching stream heads (a send meets its receive), repeatedly."""
        moved = True
        while moved:
            moved = False
            for (a, b), mine in list(self.streams.items()):
                theirs = self.streams.get((b, a))
                if a > b or not mine or not theirs or mine[0].kind == theirs[0].kind:
                    continue
                send, recv = (mine[0], theirs[0]) if mine[0].kind == "send" else (theirs[0], mine[0])
                if send.tensor.shape != recv.tensor.shape or send.tensor.dtype != recv.tensor.dtype:
                    self.failure = AssertionError(f"message mismatch: rank {send.rank}'s {send} meets rank {recv.rank}'s {recv}")
                    return
                recv.tensor.copy_(send.tensor)
                send.done = recv.done = True
                mine.popleft()
                theirs.popleft()
                moved = True

    # -- blocking --------------------------------------------------------------------------
    def _satisfied(self, what: Op | Collective) -> bool:
        return what.done if isinstance(what, Op) else self.generation > what.generation

    def block(self, rank: int, what: Op | Collective) -> None:
        """Block ``rank`` until ``what`` completed; a deadlock (or another rank's failure) raises."""
        with self.cv:
            self.waiting[rank] = what
            try:
                while not self._satisfied(what):
                    if self.failure is not None:
                        raise self.failure
                    if all(r in self.waiting and not self._satisfied(self.waiting[r]) for r in self.alive):
                        self.failure = Deadlock(self.cycle())
                        self.cv.notify_all()
                        raise self.failure
                    if not self.cv.wait(TIMEOUT_S):
                        raise TimeoutError(f"rank {rank} waited {TIMEOUT_S}s for {what}")
            finally:
                del self.waiting[rank]

    def gather(self, rank: int, obj: object) -> list:
        with self.cv:
            gen = self.generation
            self.arrived[rank] = obj
            if len(self.arrived) == self.world:
                self.results[gen] = [self.arrived[r] for r in range(self.world)]
                self.arrived, self.generation = {}, gen + 1
                self.cv.notify_all()
        self.block(rank, Collective(gen))
        return self.results[gen]

    def leave(self, rank: int, error: BaseException | None) -> None:
        with self.cv:
            self.alive.discard(rank)
            if error is not None and self.failure is None:
                self.failure = error
            self.cv.notify_all()

    # -- the report ----------------------------------------------------------------------------
    def _waits_for(self, rank: int) -> list[tuple[int, str]]:
        what = self.waiting[rank]
        if isinstance(what, Collective):
            return [(r, f"rank {rank} waits in a collective for rank {r}, which has not joined it")
                    for r in sorted(set(range(self.world)) - set(self.arrived))]
        head = self.streams[(rank, what.peer)][0]
        theirs = self.streams.get((what.peer, rank))
        other = f"rank {what.peer}'s next operation with rank {rank} is: {theirs[0]}" if theirs else \
            f"rank {what.peer} has posted nothing more for rank {rank}"
        behind = "" if head is what else f", queued behind its {head}"
        return [(what.peer, f"rank {rank} blocks on its {what}{behind}; {other}")]

    def cycle(self) -> str:
        edges = {r: self._waits_for(r) for r in self.waiting}
        for start in sorted(edges):
            path, seen, r = [], [], start
            while r in edges and r not in seen:
                seen.append(r)
                nxt, why = edges[r][0]
                path.append(why)
                r = nxt
            if r in seen:
                cyc = path[seen.index(r):]
                return "deadlock under NCCL's ordering rules, wait cycle:\n  " + "\n  ".join(cyc)
        return "deadlock under NCCL's ordering rules (no cycle: a rank waits for one that left):\n  " + \
            "\n  ".join(w for r in sorted(edges) for _, w in edges[r])


class ModelWork:
    """``dist.Work`` of one operation in the model."""

    def __init__(self, model: NcclModel, op: Op):
        self.model, self.op = model, op

    def is_completed(self) -> bool:
        with self.model.cv:
            return self.op.done

    def wait(self, timeout=None) -> bool:
        self.model.block(self.op.rank, self.op)
        return True


class ModelMailbox(DistMailbox):
    """The executor's real mailbox, with NCCL's model as its transport."""

    def __init__(self, model: NcclModel, owner: list[int], rank: int):
        super().__init__(owner, rank, torch.device("cpu"), 30.0)
        self.model = model

    def _isend(self, tensor, peer):
        return self.model.post(Op("send", self.rank, peer, tensor, _where()))

    def _irecv(self, tensor, peer):
        return self.model.post(Op("recv", self.rank, peer, tensor, _where()))

    def pipeline_group(self):
        """No process group here: a method that would hand its step to torch.distributed.pipelining
        (gpipe, whose library schedule posts its exchanges with batch_isend_irecv) runs the same
        fill-drain order as phases over this mailbox instead, which is what the model checks."""
        return None


class ModelExecutor(DistributedExecutor):
    """The real distributed executor of one simulated rank; collectives go through the model."""

    def __init__(self, model: NcclModel, stages, owner: list[int], rank: int):
        super().__init__(stages, owner, torch.device("cpu"), rank=rank, world_size=model.world)
        self.box = ModelMailbox(model, owner, rank)
        self.model = model

    def _gather(self, obj):
        return self.model.gather(self.rank, obj)


def tiny_problem(cfg: RunConfig) -> Problem:
    """A 4-block MLP on 8x8 random inputs (the same on every rank: fixed seeds)."""
    g = torch.Generator().manual_seed(1)
    data = Dataset("digits", torch.rand(48, 1, 8, 8, generator=g), torch.randint(0, 10, (48,), generator=g),
                   torch.rand(20, 1, 8, 8, generator=g), torch.randint(0, 10, (20,), generator=g), 10
                   ).with_validation(cfg.val_fraction)
    model = build_model(cfg.model, data.input_shape, data.num_classes, width=cfg.width, depth=cfg.depth,
                        channels=cfg.channels, residual_blocks=cfg.residual_blocks, init=cfg.init, seed=cfg.seed)
    return Problem(data, model)


def run_threads(rank_main, world: int) -> None:
    """``rank_main(rank)`` for every rank, each in its own thread, until all are done."""
    threads = [threading.Thread(target=rank_main, args=(r,), daemon=True) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 2)
        assert not t.is_alive(), "a simulated rank never finished"


def run_world(cfg: RunConfig, world: int, epochs: int = 2) -> list[list[dict]]:
    """The training loop of ``cfg`` on ``world`` simulated ranks (each holding a contiguous group
    of stages, as ``stage_owner`` assigns them); each rank's rows."""
    model = NcclModel(world)
    owner = stage_owner(cfg.splits, world)
    rows: list[list[dict]] = [[] for _ in range(world)]
    errors: list[BaseException | None] = [None] * world

    def rank_main(rank: int) -> None:
        error = None
        try:
            problem = tiny_problem(cfg)
            stages = build_stages(cfg, problem)
            solver = make_solver(cfg, problem.data.x_train, problem.data.y_train)
            ex = ModelExecutor(model, stages, owner, rank)
            for st in ex.stages:
                solver.setup(st)
            s = Session(cfg, torch.device("cpu"), problem, stages, solver, ex, None, None)
            state = resume_or_initialise(s)
            rows[rank].append(initial_row(s))
            for epoch in range(1, epochs + 1):
                rows[rank].append(train_epoch(s, state, epoch))
            ex.close()
        except BaseException as e:  # noqa: BLE001 -- reported by the main thread
            error = errors[rank] = e
        finally:
            model.leave(rank, error)

    run_threads(rank_main, world)
    deadlock = next((e for e in errors if isinstance(e, Deadlock)), None)
    if deadlock is not None:
        pytest.fail(f"{cfg.method} (schedule {getattr(cfg.settings, 'schedule', '-')}, n={cfg.splits}, {world} ranks): "
                    f"{deadlock}", pytrace=False)
    first = next((e for e in errors if e), None)
    if first is not None:
        raise first
    return rows


def cases():
    """Every registered method x its schedules x n in {2, 3, 4} that its config accepts."""
    out = []
    for method in REGISTRY:
        settings = {f.name: f for f in fields(SOLVERS[method].Settings)}
        schedules = settings["schedule"].metadata.get("choices") if "schedule" in settings else (None,)
        for schedule in schedules:
            for n in (2, 3, 4):
                out.append(pytest.param(method, schedule, n, n, id=f"{method}-{schedule or 'default'}-n{n}"))
            # stages grouped on fewer ranks (n > ranks: the executor runs a rank's stages in order)
            out.append(pytest.param(method, schedule, 4, 2, id=f"{method}-{schedule or 'default'}-n4-2ranks"))
    return out


def config(method: str, schedule: str | None, n: int) -> RunConfig:
    values = dict(method=method, splits=n, width=8, depth=4, batch_size=16, val_fraction=0.25, chunk_rows=20,
                  epochs=2, mlflow=False, checkpoint=False, threads=1, dist_timeout=30.0)
    if schedule is not None:
        values["schedule"] = schedule
    return RunConfig.from_dict(values)


@pytest.mark.parametrize("method,schedule,n,ranks", cases())
def test_exchanges_are_nccl_safe(method, schedule, n, ranks):
    try:
        cfg = config(method, schedule, n)
        cfg.validate()
    except ConfigError as e:  # e.g. end-to-end backprop or dlADMM: one stage, nothing exchanged
        pytest.skip(f"{method} does not run at n={n}: {e}")
    torch.set_num_threads(1)
    rows = run_world(cfg, ranks)
    # the ranks agree on every gathered figure, and the run trained
    assert all(len(r) == 3 for r in rows)
    for key in ("train_loss", "test_acc", "objective"):
        assert len({row[key] for r in rows for row in r if row["epoch"] == 2}) == 1, key
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in rows[0])


def test_model_finds_a_cycle():
    """The model itself: two ranks that each send before they receive (unbuffered) deadlock,
    and the printed cycle names both."""
    model = NcclModel(2)
    errors = []

    def rank_main(rank):
        try:
            box = ModelMailbox(model, [0, 1], rank)
            box.send(rank, 1 - rank, torch.zeros(3))
            box.recv(1 - rank, rank, (3,))
            box.flush()
        except Deadlock as e:
            errors.append(str(e))
        finally:
            model.leave(rank, None)

    run_threads(rank_main, 2)
    assert errors and "rank 0 blocks on its recv (3,) from rank 1" in errors[0] and "rank 1" in errors[0]
    assert "queued behind its send (3,) to rank 1" in errors[0]


def test_model_passes_a_matched_order():
    """...and the same exchange with one side receiving first completes, with the data."""
    model = NcclModel(2)
    got = {}

    def rank_main(rank):
        box = ModelMailbox(model, [0, 1], rank)
        if rank == 0:
            box.send(0, 1, torch.arange(3.0))
            got[0] = box.recv(1, 0, (3,))
        else:
            got[1] = box.recv(0, 1, (3,))
            box.send(1, 0, got[1] * 2)
        box.flush()
        model.leave(rank, None)

    run_threads(rank_main, 2)
    assert torch.equal(got[0], torch.arange(3.0) * 2)
