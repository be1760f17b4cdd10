"""Is what the upstream subnetworks learn signal or rounding? The float64 control.

Runs one config twice from the same seed, in float32 and in float64 (the same initial
weights: the model is initialised in float32 and cast), and compares the weight changes of
subnetwork 1 after epoch 1 and after the last epoch: the cosine between the two runs'
changes (1: the same direction, ~0: unrelated), their relative difference, and each run's
accuracies, after every epoch. (Subnetwork 1 does not move in epoch 1, under either schedule: each
row's target q is its own initial output until that row's first q-step, which comes after its
W-step, and every row is visited once per epoch; the cosine is then undefined, shown as 0.) If the float32 run's upstream change were arithmetic noise, float64 would move
elsewhere (cosine far from 1); if it is signal, both runs move alike.

    python benchmarks/float64_control.py                           # digits, gsadmm n = 2, paper preset
    python benchmarks/float64_control.py --dataset fashion_mnist --n-train 6000 --width 512

Prints a table and writes ``results/float64_control/<dataset>-<method>-n<n>.csv``. Uses the
training loop of ``tssm train`` (start, resume_or_initialise, train_epoch), not a copy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from tssm.config import RunConfig
from tssm.run import resume_or_initialise, start, train_epoch


def upstream(session) -> torch.Tensor:
    """Subnetwork 1's parameters, flattened, in float64."""
    return torch.cat([p.detach().flatten().double() for p in session.stages[0].net.parameters()])


def trajectory(cfg: RunConfig, checkpoints: list[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, dict]]:
    """(initial upstream weights, upstream weights after each epoch in ``checkpoints``, each
    epoch's metrics row)."""
    s = start(cfg)
    state = resume_or_initialise(s)
    w0, snaps, rows = upstream(s), {}, {}
    for epoch in range(1, max(checkpoints) + 1):
        rows[epoch] = train_epoch(s, state, epoch)
        if epoch in checkpoints:
            snaps[epoch] = upstream(s)
    s.executor.close()
    return w0, snaps, rows


def compare(base: dict, epochs: int, out_dir: Path) -> pd.DataFrame:
    checkpoints = list(range(1, epochs + 1))
    runs = {}
    for dtype in ("float32", "float64"):
        cfg = RunConfig.from_dict({**base, "dtype": dtype, "out": str(out_dir / dtype), "mlflow": False,
                                   "checkpoint": False, "epochs": epochs})
        runs[dtype] = trajectory(cfg, checkpoints)
    (w0_32, s32, r32), (w0_64, s64, r64) = runs["float32"], runs["float64"]
    assert torch.equal(w0_32, w0_64), "the two runs must start from the same weights"
    table = []
    for e in checkpoints:
        d32, d64 = s32[e] - w0_32, s64[e] - w0_64  # torch's cosine of two zero vectors is 0
        table.append({
            "epoch": e,
            "cos_change": float(torch.nn.functional.cosine_similarity(d32, d64, dim=0)),
            "rel_diff_change": float((d32 - d64).norm() / d64.norm().clamp_min(1e-300)),
            "change_norm_f32": float(d32.norm()), "change_norm_f64": float(d64.norm()),
            "rel_change_f64": float(d64.norm() / w0_64.norm()),
            "train_acc_f32": r32[e]["train_acc"], "train_acc_f64": r64[e]["train_acc"],
            "test_acc_f32": r32[e]["test_acc"], "test_acc_f64": r64[e]["test_acc"],
        })
    return pd.DataFrame(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--method", default="gsadmm")
    ap.add_argument("--splits", type=int, default=2)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--out", default="results/float64_control")
    a = ap.parse_args(argv)
    base = {"dataset": a.dataset, "n_train": a.n_train, "method": a.method, "splits": a.splits, "preset": a.preset,
            "width": a.width, "depth": a.depth, "seed": a.seed, "threads": a.threads, "data_root": a.data_root}
    with tempfile.TemporaryDirectory() as tmp:
        table = compare(base, a.epochs, Path(tmp))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{a.dataset}-{a.method}-n{a.splits}-{a.preset}.csv"
    table.to_csv(path, index=False)
    print(f"{a.method} n = {a.splits}, preset {a.preset}, {a.dataset}, seed {a.seed}: subnetwork 1 in float32 vs float64")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
