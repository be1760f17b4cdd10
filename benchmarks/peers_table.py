"""What each method sends per step, in which direction, and what it holds: measured, not assumed.

For each method the suite's own solver runs its initialisation and ONE training step on a
synthetic problem of the paper's size (the same model, cut, batch and row count; random inputs
and labels: the sizes do not depend on the values) through the serial executor, with a mailbox
that counts every message's bytes by direction (forward: stage l -> l+1, backward: l+1 -> l).
Alongside:

- ``state``: the method's persistent variables over all M training rows, from the solver's
  ``state_dict`` after initialisation (gsADMM: p, q, u; gsAM: p; DGL: its heads' weights);
  dlADMM's from its own ``state_bytes`` (its full-batch z, a, u would not fit a laptop);
- ``saved``: the activations autograd keeps for one step's backward, largest over the stages
  (``torch.autograd.graph.saved_tensors_hooks``, weights excluded); GPipe's are those of every
  micro-batch of the minibatch, held until its backward (1F1B holds at most n - l of them);
- ``extra``: parameters the method adds to the network (DGL's auxiliary heads).

    python benchmarks/peers_table.py                    # the paper's MLP and ResNet at n = 2
    python benchmarks/peers_table.py --problems mlp --splits 3 --json out.json

Problems: ``mlp``: the paper's MLP 10 x 512 on Fashion-MNIST at 14 x 14 (1 x 14 x 14 inputs,
60,000 rows); ``resnet``: Figure 2's ResNet (64 channels, 24 residual blocks) on CIFAR-10 at
16 x 16 (3 x 16 x 16, 50,000 rows). Batch 120, float32, the suite's default settings and cuts.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tssm.config import RunConfig  # noqa: E402
from tssm.data import Dataset  # noqa: E402
from tssm.models import build_model  # noqa: E402
from tssm.parallel import LocalMailbox, SerialExecutor  # noqa: E402
from tssm.run import Problem, build_stages  # noqa: E402
from tssm.solvers import make_solver  # noqa: E402
from tssm.solvers.dladmm import state_bytes  # noqa: E402

#: The paper's problems: input shape, classes, training rows, model settings.
PROBLEMS = {
    "mlp": {"label": "MLP 10x512, Fashion-MNIST 14x14", "dataset": "fashion_mnist", "shape": (1, 14, 14),
            "classes": 10, "rows": 60000, "run": {"model": "mlp", "width": 512, "depth": 10}},
    "resnet": {"label": "ResNet (64 ch, 24 blocks), CIFAR-10 16x16", "dataset": "cifar10", "shape": (3, 16, 16),
               "classes": 10, "rows": 50000,
               "run": {"model": "resnet", "width": 512, "channels": 64, "residual_blocks": 24}},
}
METHODS = ("sgd", "adam", "gpipe", "gsadmm", "gsam", "frozen", "dgl", "dladmm")

#: What can overlap, by method (from each method's schedule; see its module docstring).
OVERLAP = {
    "sgd": "one process",
    "adam": "one process",
    "gpipe": "micro-batches across stages (fill-drain bubble (n-1)/(m+n-1))",
    "gsadmm": "all stages every step (q/u step deferred one step)",
    "gsam": "W-steps of all stages; the p sweep runs stage after stage",
    "frozen": "forward chain only (one stage trains)",
    "dgl": "all stages (forward messages only; lagged schedule by construction)",
    "dladmm": "one process (layerwise updates run in sequence)",
}


class CountingMailbox(LocalMailbox):
    """The serial executor's mailbox, counting bytes and messages by direction."""

    def __init__(self):
        super().__init__()
        self.bytes = collections.Counter()
        self.messages = collections.Counter()

    def send(self, src: int, dst: int, tensor: torch.Tensor) -> None:
        way = "forward" if dst > src else "backward"
        self.bytes[way] += tensor.numel() * tensor.element_size()
        self.messages[way] += 1
        super().send(src, dst, tensor)


def synthetic(problem: dict, rows: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(rows, *problem["shape"], generator=g)
    y = torch.randint(problem["classes"], (rows,), generator=g)
    return Dataset(problem["dataset"], x, y, x[:8], y[:8], problem["classes"])


def _tensor_bytes(values) -> int:
    out = 0
    for v in values:
        if isinstance(v, torch.Tensor):
            out += v.numel() * v.element_size()
        elif isinstance(v, (list, tuple)):
            out += _tensor_bytes(v)
    return out


def measure(problem: dict, method: str, splits: int = 2, batch: int = 120, rows: int | None = None,
            settings: dict | None = None) -> dict:
    """One method on one problem: bytes and messages of one step by direction, state, saved
    activations and added parameters (see the module docstring)."""
    rows = rows or problem["rows"]
    base = {"dataset": problem["dataset"], **problem["run"], "method": method, "batch_size": batch,
            "mlflow": False, "checkpoint": False, **(settings or {})}
    probe = RunConfig.from_dict(base)
    n = 1 if probe.method_class.end_to_end else splits
    cfg = probe.replace(splits=n)
    if method == "dladmm":  # full batch over M rows: its own count, not an allocation
        sizes = [int(torch.tensor(problem["shape"]).prod())] + [cfg.width] * (cfg.depth - 1) + [problem["classes"]]
        return {"method": method, "n": n, "forward_B": 0, "backward_B": 0, "messages": 0,
                "state_B": state_bytes(sizes, rows, torch.float32), "saved_B": None, "extra_params": 0}
    data = synthetic(problem, rows)
    model = build_model(cfg.model, problem["shape"], problem["classes"], width=cfg.width, depth=cfg.depth,
                        channels=cfg.channels, residual_blocks=cfg.residual_blocks, init=cfg.init, seed=0)
    stages = build_stages(cfg, Problem(data, model))
    solver = make_solver(cfg, data.x_train, data.y_train)
    ex = SerialExecutor(stages)
    ex.box = box = CountingMailbox()
    for st in stages:
        solver.setup(st)
    ex.run(solver.init_phases(), torch.arange(rows))
    state = sum(_tensor_bytes(solver.state_dict(st).values()) for st in stages)
    box.bytes.clear()
    box.messages.clear()

    weights = {p.untyped_storage().data_ptr() for st in stages for p in st.net.parameters()}
    saved = collections.Counter()
    where = [0]

    def pack(t: torch.Tensor):
        if t.untyped_storage().data_ptr() not in weights:
            saved[where[0]] += t.numel() * t.element_size()
        return t

    def tracked(phase, stage, r, b):
        where[0] = stage.index
        phase(stage, r, b)

    step_rows = torch.arange(rows) if solver.full_batch else torch.arange(batch)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ex.run([functools.partial(tracked, p) for p in solver.step_phases()], step_rows)
        ex.run(solver.flush_phases(), step_rows[:0])
    ex.drain()
    extra = sum(p.numel() for h in getattr(solver, "heads", {}).values() for p in h.parameters())
    return {"method": method, "n": n, "forward_B": box.bytes["forward"], "backward_B": box.bytes["backward"],
            "messages": box.messages["forward"] + box.messages["backward"], "state_B": state,
            "saved_B": max(saved.values(), default=0), "extra_params": extra}


def _size(b: int | None) -> str:
    if b is None:
        return "-"
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= k:
            return f"{b / k:.1f} {unit}"
    return f"{b} B"


def markdown(label: str, rows: list[dict]) -> str:
    out = [f"### {label}\n",
           "| method | n | sends forward / step | sends backward / step | messages / step | what overlaps | "
           "state over all M rows | activations saved for one step (largest stage) | added parameters |",
           "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['method']} | {r['n']} | {_size(r['forward_B'])} | {_size(r['backward_B'])} | {r['messages']} | "
                   f"{OVERLAP.get(r['method'], '')} | {_size(r['state_B'])} | {_size(r['saved_B'])} | "
                   f"{r['extra_params']:,} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", nargs="+", choices=tuple(PROBLEMS), default=list(PROBLEMS))
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--splits", type=int, default=2)
    ap.add_argument("--batch", type=int, default=120)
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    every = {}
    for name in a.problems:
        problem = PROBLEMS[name]
        rows = [measure(problem, m, a.splits, a.batch) for m in a.methods
                if not (m == "dladmm" and problem["run"]["model"] != "mlp")]
        every[name] = rows
        print(markdown(f"{problem['label']}, n = {a.splits}, batch {a.batch}, float32", rows))
    if a.json:
        Path(a.json).write_text(json.dumps(every, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
