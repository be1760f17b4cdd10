"""The GPipe pipeline-parallel baseline (benchmarks/pipeline_parallel.py) is exact backprop.

Each test launches the script under torchrun (gloo, CPU, one rank per stage) on digits and
replays the same minibatches (``tssm.run.epoch_permutation``, batches of 120, the ragged
117-row last batch included) with plain single-process backprop, then compares the loss of
every step.

Why float64 for Adam: the pipeline's gradient is the sum of per-micro-batch gradients, the
reference's the full-batch one; both are the same number up to float rounding, but Adam
divides by sqrt(v) and so amplifies rounding in near-zero gradient components. In float32
the two Adam trajectories drift apart by a few percent within ~20 steps (as much as
float32 and float64 single-process runs drift from each other). In float64 they agree to
~1e-14, which checks the loss scaling, the gradient accumulation across micro-batches and
the padding of the ragged batch exactly. SGD (linear in the gradient) agrees in float32.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tssm.data import load_dataset
from tssm.models import build_model
from tssm.run import epoch_permutation
from tssm.solvers.base import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "pipeline_parallel.py"
WIDTH, DEPTH = 128, 6


def run_pipeline(out: Path, ranks: int, *extra: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
           str(SCRIPT), "--dataset", "digits", "--width", str(WIDTH), "--depth", str(DEPTH),
           "--threads", "1", "--log-steps", "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def reference_losses(optimizer: str, epochs: int, dtype: torch.dtype) -> list[float]:
    data = load_dataset("digits", str(ROOT / "data"))
    x, y = data.x_train.to(dtype), data.y_train
    model = build_model("mlp", data.input_shape, data.num_classes, width=WIDTH, depth=DEPTH, seed=0).to(dtype)
    opt = make_optimizer(optimizer, model.parameters(), 1e-3 if optimizer == "adam" else 1e-2)  # fused, as the script
    losses = []
    for epoch in range(1, epochs + 1):
        for rows in epoch_permutation(0, epoch, len(x), torch.device("cpu")).split(120):
            loss = F.cross_entropy(model(x[rows]), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_gpipe_adam_float64_matches_single_process_backprop(tmp_path):
    out = tmp_path / "pp2"
    run_pipeline(out, 2, "--epochs", "2", "--microbatches", "4", "--dtype", "float64", "--eval", "test")
    steps = [float(r["loss"]) for r in read_csv(out / "steps.csv")]
    ref = reference_losses("adam", 2, torch.float64)
    assert len(steps) == len(ref) == 2 * 12  # 1437 rows: 11 full batches + one of 117 (padded)
    assert steps == pytest.approx(ref, rel=1e-9, abs=1e-12)

    metrics = read_csv(out / "metrics.csv")
    assert [int(r["epoch"]) for r in metrics] == [1, 2]
    for r in metrics:
        assert float(r["epoch_time_s"]) > 0 and float(r["test_acc"]) > 0.5
        assert int(r["padded_rows"]) == 3
    assert float(metrics[1]["batch_loss_mean"]) < float(metrics[0]["batch_loss_mean"])
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["environment"]["world_size"] == 2 and info["environment"]["threads_per_rank"] == 1
    assert info["schedule"]["microbatches"] == 4 and sum(info["splits_blocks"]) == DEPTH


def test_gpipe_three_stages_sgd_float32(tmp_path):
    """A middle stage (receives activations, sends gradients both ways), 3 micro-batches."""
    out = tmp_path / "pp3"
    run_pipeline(out, 3, "--epochs", "1", "--microbatches", "3", "--optimizer", "sgd", "--eval", "all")
    steps = [float(r["loss"]) for r in read_csv(out / "steps.csv")]
    ref = reference_losses("sgd", 1, torch.float32)
    assert steps == pytest.approx(ref, rel=1e-4)
    assert steps[-1] < steps[0]
    m = read_csv(out / "metrics.csv")[0]
    assert 0 < float(m["train_acc"]) <= 1 and float(m["train_loss"]) < steps[0]
