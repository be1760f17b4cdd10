"""The peers of TSSM as methods of the suite: DGL (local losses) and GPipe (pipeline backprop).

What must hold: with one subnetwork each is plain backprop, weight for weight; split over ranks
each gives the serial run's numbers; a checkpointed run resumes to the uninterrupted numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tssm.config import RunConfig
from tssm.run import epoch_permutation, resume_or_initialise, start, train, train_epoch


def _serial(cfg: RunConfig):
    """Stages, solver and serial executor of ``cfg``, built and initialised as ``train`` does."""
    s = start(cfg)
    s.executor.run(s.solver.init_phases(), torch.arange(s.solver.M))
    return s.stages, s.solver, s.executor


def _weights(stages, solver=None) -> list[torch.Tensor]:
    out = [p.detach().clone() for st in stages for p in st.net.parameters()]
    if solver is not None:
        out += [t.clone() for st in stages for t in solver.state_dict(st).values()]
    return out


def _trajectory(cfg: RunConfig, steps: int) -> list[list[torch.Tensor]]:
    """The weights after each of the first ``steps`` minibatch steps."""
    stages, solver, ex = _serial(cfg)
    out = []
    for rows in list(epoch_permutation(cfg.seed, 1, solver.M, torch.device("cpu")).split(cfg.batch_size))[:steps]:
        ex.run(solver.step_phases(), rows)
        out.append(_weights(stages))
    return out


def _epochs(cfg: RunConfig, epochs: int):
    """The weights (and head weights) after whole epochs, as ``train`` runs them."""
    stages, solver, ex = _serial(cfg)
    for epoch in range(1, epochs + 1):
        for rows in epoch_permutation(cfg.seed, epoch, solver.M, torch.device("cpu")).split(cfg.batch_size):
            ex.run(solver.step_phases(), rows)
        ex.run(solver.flush_phases(), torch.arange(0))
        ex.drain()
    return _weights(stages, solver)


def _assert_same_steps(ref, got, what):
    assert len(ref) == len(got)
    for k, (a, b) in enumerate(zip(ref, got)):
        for pa, pb in zip(a, b):
            assert torch.equal(pa, pb), f"{what} departs at step {k + 1}"
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(ref[0], ref[-1]))  # the weights moved


# ----------------------------------------------------------------------------- DGL
@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_dgl_n1_equals_backprop_step_for_step(opt, digits_cfg):
    ref = _trajectory(digits_cfg(method=opt, splits=1), 8)
    got = _trajectory(digits_cfg(method="dgl", splits=1, optimizer=opt), 8)
    _assert_same_steps(ref, got, f"dgl n=1 against {opt}")


def test_dgl_lagged_schedule_equals_same_batch(digits_cfg):
    """The pipelined schedule changes when a subnetwork trains on a minibatch, not on what:
    after whole epochs (the flush included) the weights and heads are the same, bit for bit."""
    a = _epochs(digits_cfg(method="dgl", splits=3), 2)
    b = _epochs(digits_cfg(method="dgl", splits=3, pipelining="lagged"), 2)
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_dgl_lagged_trains_minibatch_k_minus_l(digits_cfg):
    """In step k subnetwork l trains on minibatch k - l: the first steps leave the later
    subnetworks untouched, and the flush trains them on the last ones."""
    cfg = digits_cfg(method="dgl", splits=3, pipelining="lagged")
    stages, solver, ex = _serial(cfg)
    before = [_weights([st]) for st in stages]
    rows = list(epoch_permutation(cfg.seed, 1, solver.M, torch.device("cpu")).split(cfg.batch_size))
    ex.run(solver.step_phases(), rows[0])
    moved = [any(not torch.equal(a, b) for a, b in zip(w, _weights([st]))) for w, st in zip(before, stages)]
    assert moved == [True, False, False]
    ex.run(solver.step_phases(), rows[1])
    assert [len(st.scratch.get("lagged_rows", [])) for st in stages] == [0, 1, 2]
    ex.run(solver.flush_phases(), rows[0][:0])
    ex.drain()
    assert all(not st.scratch for st in stages)


def test_dgl_heads_are_trained_recorded_and_sized(digits_cfg, tmp_path):
    cfg = digits_cfg(method="dgl", splits=2, epochs=2)
    train(cfg, progress=False)
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    # the MLP's head: a linear classifier 64 -> 10 (650 parameters; 3 x 1280 FLOPs forward + backward)
    assert set(m.head_params_1) == {650.0} and set(m.head_flops_1) == {3 * 2 * 64 * 10}
    assert "head_params_2" not in m  # no head on the last subnetwork
    assert m.test_acc.iloc[-1] > 0.5
    from tssm.solvers.dgl import aux_head

    head = aux_head((64, 7, 7), 10)  # a CNN/ResNet block's output: pooled to 2 x 2, then linear
    assert head(torch.zeros(3, 64, 7, 7)).shape == (3, 10)
    assert sum(p.numel() for p in head.parameters()) == 4 * 64 * 10 + 10


def test_dgl_checkpoint_resume_equals_uninterrupted(digits_cfg, tmp_path):
    """Stop after epoch 1 (checkpointed), start again: epoch 2 ends with the uninterrupted
    run's weights and heads (the optimizer's state over the head included)."""
    kw = dict(method="dgl", splits=3, epochs=2, pipelining="lagged", checkpoint=True)
    ref = _epochs(digits_cfg(**kw), 2)
    cfg = digits_cfg(**kw)
    s = start(cfg)
    state = resume_or_initialise(s)
    train_epoch(s, state, 1)
    s = start(cfg)  # a new process: fresh weights, then the checkpoint
    state = resume_or_initialise(s)
    assert state.epoch == 1
    train_epoch(s, state, 2)
    got = _weights(s.stages, s.solver)
    assert len(got) == len(ref) and all(torch.equal(a, b) for a, b in zip(ref, got))


def _torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "-m", "tssm", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)


@pytest.mark.slow  # torchrun: ~10 s idle, 15-30 s on a loaded machine
@pytest.mark.parametrize("pipelining,n", [("same_batch", 2), ("lagged", 3)])
def test_dgl_distributed_matches_serial(pipelining, n, tmp_path):
    common = dict(dataset="digits", width=64, depth=6, epochs=2, mlflow=False, checkpoint=False, threads=1,
                  method="dgl", splits=n, pipelining=pipelining)
    train(RunConfig.from_dict({**common, "out": str(tmp_path / "serial")}), progress=False)
    p = _torchrun(2, ["--dataset", "digits", "--width", "64", "--depth", "6", "--epochs", "2", "--mlflow", "false",
                      "--checkpoint", "false", "--threads", "1", "--no-progress", "--method", "dgl", "--splits", str(n),
                      "--pipelining", pipelining, "--out", str(tmp_path / "dist")])
    assert p.returncode == 0, p.stderr[-3000:]
    s, d = pd.read_csv(tmp_path / "serial" / "metrics.csv"), pd.read_csv(tmp_path / "dist" / "metrics.csv")
    cols = ["train_loss", "train_acc", "test_loss", "test_acc"] + [c for c in s if c.startswith(("move_", "head_"))]
    assert len(s) == len(d) == 3
    rel = ((s[cols] - d[cols]).abs() / s[cols].abs().clip(lower=1e-8)).max().max()
    assert rel < 1e-5, (s[cols] - d[cols]).abs().max()
    assert (d.loc[d.epoch > 0, "wait_s_r1"] >= 0).all()



# ----------------------------------------------------------------------------- GPipe
def _close_steps(ref, got, what, rtol=1e-10):
    """float64: the micro-batch gradients add up to backprop's up to summation order."""
    assert len(ref) == len(got)
    for k, (a, b) in enumerate(zip(ref, got)):
        for pa, pb in zip(a, b):
            torch.testing.assert_close(pb, pa, rtol=rtol, atol=1e-13, msg=lambda m: f"{what}, step {k + 1}: {m}")
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(ref[0], ref[-1]))


@pytest.mark.parametrize("opt", ["adam", "sgd"])
@pytest.mark.parametrize("n,mb", [(1, 1), (1, 4), (3, 4)])
def test_gpipe_equals_backprop_step_for_step_float64(opt, n, mb, digits_cfg):
    """n = 1 and n = 3 (serial executor: the mailbox schedule), whole epoch (the ragged last
    minibatch of 117 rows padded to 120 included), float64."""
    ref = _trajectory(digits_cfg(method=opt, splits=1, dtype="float64"), 12)
    got = _trajectory(digits_cfg(method="gpipe", splits=n, optimizer=opt, microbatches=mb, dtype="float64"), 12)
    _close_steps(ref, got, f"gpipe n={n} m={mb} against {opt}")


def test_gpipe_settings_are_checked():
    from tssm.errors import ConfigError

    with pytest.raises(ConfigError, match="microbatches=7 must divide batch_size=120"):
        RunConfig.from_dict(dict(method="gpipe", microbatches=7))
    with pytest.raises(ConfigError, match="1f1b needs microbatches >= splits"):
        RunConfig.from_dict(dict(method="gpipe", splits=3, microbatches=2, pipeline_schedule="1f1b"))


@pytest.mark.slow  # torchrun
@pytest.mark.parametrize("n,schedule", [(2, "gpipe"), (3, "1f1b")])
def test_gpipe_distributed_equals_serial_float64(n, schedule, tmp_path):
    """A rank per stage: the step is torch.distributed.pipelining's schedule (gloo); it gives the
    serial mailbox schedule's numbers and Adam's."""
    common = dict(dataset="digits", width=64, depth=6, epochs=2, mlflow=False, checkpoint=False, threads=1,
                  dtype="float64")
    train(RunConfig.from_dict({**common, "method": "adam", "out": str(tmp_path / "adam")}), progress=False)
    p = _torchrun(n, ["--dataset", "digits", "--width", "64", "--depth", "6", "--epochs", "2", "--mlflow", "false",
                      "--checkpoint", "false", "--threads", "1", "--no-progress", "--dtype", "float64",
                      "--method", "gpipe", "--splits", str(n), "--microbatches", "4", "--pipeline-schedule", schedule,
                      "--out", str(tmp_path / "dist")])
    assert p.returncode == 0, p.stderr[-3000:]
    a, d = pd.read_csv(tmp_path / "adam" / "metrics.csv"), pd.read_csv(tmp_path / "dist" / "metrics.csv")
    cols = ["train_loss", "train_acc", "test_loss", "test_acc"]
    assert len(a) == len(d) == 3
    assert ((a[cols] - d[cols]).abs() / a[cols].abs().clip(lower=1e-8)).max().max() < 1e-9
    assert d.train_loss.iloc[-1] < d.train_loss.iloc[0]


def test_pipeline_benchmark_is_a_thin_caller():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from benchmarks.pipeline_parallel import translate

    args = translate(["--dataset", "digits", "--splits", "2", "--eval", "test", "--microbatches", "4", "--log-steps"])
    assert args == ["train", "--method", "gpipe", "--mlflow", "false", "--checkpoint", "false", "--no-progress",
                    "--dataset", "digits", "--splits", "2", "--microbatches", "4"]


# ----------------------------------------------------------------------------- the comm/memory table
def test_peers_table_counts_what_each_method_sends():
    """At n = 2 with a cut of d features, batch B, float32: the counts the table prints are the
    messages the solvers actually send (direction included) and the state they keep over M rows."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from benchmarks.peers_table import measure

    problem = {"dataset": "digits", "shape": (1, 8, 8), "classes": 10, "rows": 240,
               "run": {"model": "mlp", "width": 32, "depth": 4}}
    B, d, M, f = 40, 32, 240, 4
    got = {m: measure(problem, m, splits=2, batch=B) for m in ("adam", "gpipe", "gsadmm", "gsam", "frozen", "dgl")}
    sends = {m: (r["forward_B"], r["backward_B"]) for m, r in got.items()}
    assert sends == {"adam": (0, 0), "gpipe": (B * d * f, B * d * f), "gsadmm": (2 * B * d * f, B * d * f),
                     "gsam": (B * d * f, B * d * f), "frozen": (B * d * f, 0), "dgl": (B * d * f, 0)}
    assert got["gpipe"]["messages"] == 2 * 4  # 4 micro-batches each way
    assert got["gsadmm"]["state_B"] == 3 * M * d * f and got["gsam"]["state_B"] == M * d * f
    assert got["dgl"]["extra_params"] == d * 10 + 10 and got["frozen"]["state_B"] == 0
    assert got["adam"]["saved_B"] > got["frozen"]["saved_B"] > 0  # frozen saves nothing for its fixed first stage
