"""dlADMM (tssm.solvers.dladmm): every block update really minimises (or decreases) its block
of the augmented Lagrangian, checked against brute force or autograd on tiny float64 tensors;
the iteration's Lagrangian behaviour; memory estimate and refusal; model refusal; divergence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tssm.errors import ConfigError, DivergenceError
from tssm.models import build_model
from tssm.solvers import dladmm as D

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _problem(M=48, feats=(1, 4, 4), classes=3, width=8, depth=3, dtype=F64, seed=0, init="demo"):
    g = _gen(seed)
    x = torch.rand(M, *feats, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (M,), generator=g)
    model = build_model("mlp", feats, classes, width=width, depth=depth, init=init, seed=seed).to(dtype)
    return model, x, y


# ------------------------------------------------------------------------ z_l closed form


def test_z_hidden_closed_form_beats_a_fine_grid():
    g = _gen(1)
    M, n_in, n = 6, 3, 5
    a_prev = torch.randn(M, n_in, generator=g, dtype=F64)
    W = torch.randn(n, n_in, generator=g, dtype=F64)
    b = torch.randn(n, generator=g, dtype=F64)
    a = torch.randn(M, n, generator=g, dtype=F64)  # any sign: the a step can make it negative
    z = D.update_z_hidden(a_prev, W, b, a)
    m = a_prev @ W.T + b
    grid = torch.linspace(-8, 8, 160001, dtype=F64)  # step 1e-4
    f_grid = D.z_hidden_objective(grid.view(-1, 1, 1), m, a)  # [G, M, n]
    best, arg = f_grid.min(dim=0)
    f_z = D.z_hidden_objective(z, m, a)
    assert torch.all(f_z <= best + 1e-12)  # never worse than the grid
    assert torch.allclose(f_z, best, atol=1e-7)  # and the grid gets as close as its spacing allows
    assert torch.allclose(z, grid[arg], atol=2e-4)


def test_z_hidden_handles_both_branches():
    # m = -1, a = 0: best is z = -1 (cost 0); m = 2, a = 2: best is z = 2 (cost 0);
    # m = -1, a = 3: z <= 0 costs 0 + 9 at z = -1, z >= 0 costs 2 * 2^2 = 8 at z = 1.
    m = torch.tensor([[-1.0, 2.0, -1.0]], dtype=F64)
    a = torch.tensor([[0.0, 2.0, 3.0]], dtype=F64)
    z = D.update_z_hidden(torch.ones(1, 1, dtype=F64), torch.zeros(3, 1, dtype=F64), m[0], a)
    assert torch.allclose(z, torch.tensor([[-1.0, 2.0, 1.0]], dtype=F64))


# ------------------------------------------------------------------------------- b step


def test_b_step_is_the_exact_minimiser():
    g = _gen(2)
    a_prev = torch.randn(30, 4, generator=g, dtype=F64)
    W = torch.randn(3, 4, generator=g, dtype=F64)
    T = torch.randn(30, 3, generator=g, dtype=F64)
    b = D.update_b(W, a_prev, T)
    bb = b.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D.coupling(W, bb, a_prev, T, 0.7), bb)
    assert grad.abs().max() < 1e-12  # stationary, and phi is convex in b
    for _ in range(5):
        d = torch.randn(3, generator=g, dtype=F64) * 1e-2
        assert D.coupling(W, b + d, a_prev, T, 0.7) > D.coupling(W, b, a_prev, T, 0.7)
    # the authors' update b - mean_gradient / c from any b is the same point
    b_old = torch.randn(3, generator=g, dtype=F64)
    c = 1e-6
    mean_grad = c * (a_prev @ W.T + b_old - T).mean(0)
    assert torch.allclose(b_old - mean_grad / c, b, atol=1e-12)


# ---------------------------------------------------------------- W and a backtracking


def _direct_check(phi, x_old, x_new, grad, t):
    """The quadratic approximation test evaluated the naive way, in float64."""
    d = x_new - x_old
    return float(phi(x_new)), float(phi(x_old) + (grad * d).sum() + 0.5 * t * d.square().sum())


@pytest.mark.parametrize("c, t0", [(3.0, 1.0), (1e-6, 1.0), (3.0, 1e6), (50.0, 1e-3)])
def test_W_step_backtracking_ends_on_its_condition(c, t0):
    g = _gen(3)
    a_prev = torch.rand(40, 6, generator=g, dtype=F64)
    W = torch.randn(4, 6, generator=g, dtype=F64)
    b = torch.randn(4, generator=g, dtype=F64)
    T = torch.randn(40, 4, generator=g, dtype=F64)
    phi = lambda w: D.coupling(w, b, a_prev, T, c)  # noqa: E731
    Wg = W.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(phi(Wg), Wg)
    W_new, bt = D.update_W(W, b, a_prev, T, c, t0)
    assert torch.allclose(W_new, W - grad / bt.t, rtol=1e-10, atol=1e-14)  # a gradient step of 1/t
    new, approx = _direct_check(phi, W, W_new, grad, bt.t)
    assert new <= approx * (1 + 1e-12) + 1e-300
    assert phi(W_new) <= phi(W)  # hence a decrease
    assert math.isclose(bt.phi_new, new, rel_tol=1e-9, abs_tol=1e-15)
    if bt.growths:  # t is the first of t0 * 2^k that passes: the previous one failed
        t_prev = bt.t / 2
        new_p, approx_p = _direct_check(phi, W, W - grad / t_prev, grad, t_prev)
        assert new_p > approx_p
    else:
        assert bt.t == t0
    if (c, t0) == (50.0, 1e-3):
        assert bt.growths > 0  # the case is meant to exercise the loop


@pytest.mark.parametrize("nu, c, t0", [(0.5, 2.0, 1e-3), (1e-6, 1e-6, 1.0), (1.0, 1.0, 100.0)])
def test_a_step_backtracking_ends_on_its_condition(nu, c, t0):
    g = _gen(4)
    a = torch.randn(30, 5, generator=g, dtype=F64)
    z = torch.randn(30, 5, generator=g, dtype=F64)
    Wn = torch.randn(3, 5, generator=g, dtype=F64)
    bn = torch.randn(3, generator=g, dtype=F64)
    T = torch.randn(30, 3, generator=g, dtype=F64)
    phi = lambda v: D.a_objective(v, z, Wn, bn, T, nu, c)  # noqa: E731
    ag = a.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(phi(ag), ag)
    a_new, bt = D.update_a(a, z, Wn, bn, T, nu, c, t0)
    assert torch.allclose(a_new, a - grad / bt.t, rtol=1e-10, atol=1e-14)
    new, approx = _direct_check(phi, a, a_new, grad, bt.t)
    assert new <= approx * (1 + 1e-12)
    assert phi(a_new) <= phi(a)
    if bt.growths:
        t_prev = bt.t / 2
        new_p, approx_p = _direct_check(phi, a, a - grad / t_prev, grad, t_prev)
        assert new_p > approx_p
    if t0 == 1e-3:
        assert bt.growths > 0


def test_backtracking_does_not_stall_in_float32_with_tiny_rho():
    # The authors' loop compares two nearly equal float32 sums and can loop forever; the
    # cancellation-free test accepts a step (here at t0, the curvature being ~1e-6).
    g = _gen(5)
    a_prev = torch.rand(500, 64, generator=g)
    W = torch.randn(32, 64, generator=g)
    T = torch.randn(500, 32, generator=g) * 100
    W_new, bt = D.update_W(W, torch.zeros(32), a_prev, T, 1e-6, 1.0)
    assert bt.growths == 0 and bt.t == 1.0
    assert not torch.equal(W_new, W)


# ------------------------------------------------------------------------ z_L by FISTA


def _lbfgs_min(z0, y, target, rho, iters=300):
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=iters, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        f = D.z_last_objective(z, y, target, rho)
        f.backward()
        return f

    opt.step(closure)
    return z.detach()


@pytest.mark.parametrize("rho", [1.0, 0.05])
def test_fista_reaches_the_autograd_minimiser(rho):
    g = _gen(6)
    M, C = 20, 4
    y = torch.randint(0, C, (M,), generator=g)
    target = torch.randn(M, C, generator=g, dtype=F64) * 2
    z0 = torch.randn(M, C, generator=g, dtype=F64)
    z_ref = _lbfgs_min(z0, y, target, rho)
    z, k = D.update_z_last(z0, y, target, rho, step=2.0, iters=3000, tol=0.0)
    f_ref = float(D.z_last_objective(z_ref, y, target, rho))
    f = float(D.z_last_objective(z, y, target, rho))
    assert k == 3000
    assert f <= f_ref + 1e-8 * max(1.0, abs(f_ref))
    assert torch.allclose(z, z_ref, atol=1e-4)


def test_fista_with_the_default_stop_decreases_its_objective():
    g = _gen(7)
    M, C = 50, 10
    y = torch.randint(0, C, (M,), generator=g)
    target = torch.randn(M, C, generator=g, dtype=F64)
    z0 = target.clone()
    z, k = D.update_z_last(z0, y, target, 1e-6)  # paper's rho, code's tolerance
    assert 1 <= k <= 500
    assert D.z_last_objective(z, y, target, 1e-6) < D.z_last_objective(z0, y, target, 1e-6)


# ----------------------------------------------------------------- the whole iteration


def test_primal_sweep_never_raises_the_lagrangian_and_dual_adds_rho_r2():
    """With the paper's rho (and others) every block update is a descent step of L_rho, so
    the backward + forward sweep never raises it; the dual step then adds exactly
    rho ||r||^2 (L is linear in u)."""
    for rho in (1e-6, 1e-2, 1.0):
        model, x, y = _problem()
        st = D.init_state(model, x, y, D.DLADMMSettings(rho=rho, zl_tol=0.0, zl_iters=200))
        for _ in range(4):
            L0 = D.augmented_lagrangian(st, x, y)
            D.primal_sweep(st, x, y)
            L1 = D.augmented_lagrangian(st, x, y)
            r2 = D.residual(st) ** 2
            D.dual_step(st, x)
            L2 = D.augmented_lagrangian(st, x, y)
            assert L1 <= L0 + 1e-10 * abs(L0), (rho, L0, L1)
            assert math.isclose(L2 - L1, rho * r2, rel_tol=1e-6, abs_tol=1e-12), (rho, L2 - L1, rho * r2)


def test_lagrangian_rises_with_the_paper_rho_but_falls_with_a_large_one():
    """Observed: with rho = 1e-6, after the first iteration L_rho *rises* every iteration: the
    W and a steps start at t = 1 and move by ~rho * gradient (tiny), so the primal sweep
    barely lowers L while the dual step adds rho ||r||^2. The paper's descent lemma needs rho
    large against the loss's Lipschitz constant (the z_L optimality makes u = -grad R(z_L), so
    the dual increase |du|^2/rho is bounded by the z_L step's decrease only for large rho);
    with rho = 1 the Lagrangian is non-increasing from the second iteration on."""
    model, x, y = _problem()
    st = D.init_state(model, x, y, D.DLADMMSettings(rho=1e-6, zl_tol=0.0, zl_iters=200))
    Ls = []
    for _ in range(6):
        D.iterate(st, x, y)
        Ls.append(D.augmented_lagrangian(st, x, y))
    assert all(b > a for a, b in zip(Ls, Ls[1:])), Ls

    model, x, y = _problem()
    st = D.init_state(model, x, y, D.DLADMMSettings(rho=1.0, zl_tol=0.0, zl_iters=300))
    Ls = []
    for _ in range(6):
        D.iterate(st, x, y)
        Ls.append(D.augmented_lagrangian(st, x, y))
    assert all(b <= a * (1 + 1e-9) for a, b in zip(Ls, Ls[1:])), Ls
    # the identity behind it: after each iteration u = -grad R(z_L) (z_L solved accurately)
    gradR = torch.softmax(st.z[-1], 1) - F.one_hot(y, 3).to(F64)
    assert torch.allclose(st.u, -gradR, atol=1e-5)


def test_iteration_order_is_backward_then_forward():
    model, x, y = _problem(depth=3)
    st = D.init_state(model, x, y)
    calls = []
    sweep = D._Sweep(st, x.reshape(len(x), -1), y)
    for name in ("z", "b", "W", "a"):
        orig = getattr(sweep, name)

        def rec(l, where, _name=name, _orig=orig):
            calls.append(f"{_name}{l + 1}")
            _orig(l, where)

        setattr(sweep, name, rec)
    sweep.backward()
    sweep.forward()
    assert calls == ["z3", "b3", "W3", "a2", "z2", "b2", "W2", "a1", "z1", "b1", "W1",
                     "W1", "b1", "z1", "a1", "W2", "b2", "z2", "a2", "W3", "b3", "z3"]


def test_training_learns_a_teacher_and_write_back_matches():
    model, x, _ = _problem(M=90, width=16, depth=3, init="kaiming")
    teacher = torch.randn(16, 3, generator=_gen(9), dtype=F64)
    y = ((x.reshape(90, -1) - 0.5) @ teacher).argmax(1)  # learnable labels
    st = D.init_state(model, x, y, D.DLADMMSettings(backtrack_start="adaptive"))
    loss0, acc0 = D.network_loss(st, x, y)
    for _ in range(15):
        D.iterate(st, x, y)
    loss1, acc1 = D.network_loss(st, x, y)
    # dlADMM minimises L_rho, not the composed network's loss: accuracy rises, while the mean
    # cross-entropy may not (z_L is pushed to large margins, which W_L then copies)
    assert acc1 > acc0 + 0.1, (loss0, acc0, loss1, acc1)
    D.write_back(st, model)
    with torch.no_grad():
        logits = model(x)
    assert math.isclose(float(F.cross_entropy(logits, y)), loss1, rel_tol=1e-9)
    assert math.isclose(float((logits.argmax(1) == y).double().mean()), acc1, rel_tol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))])
def test_runs_in_each_dtype_and_device(dtype, device):
    model, x, y = _problem(dtype=dtype)
    model, x, y = model.to(device), x.to(device), y.to(device)
    st = D.init_state(model, x, y)
    assert all(t.dtype == dtype and t.device.type == device for t in st.tensors())
    for _ in range(2):
        D.iterate(st, x, y)
    assert math.isfinite(D.augmented_lagrangian(st, x, y))


def test_single_layer_network():
    model, x, y = _problem(depth=1)
    st = D.init_state(model, x, y, D.DLADMMSettings(rho=1.0))
    assert st.a == []
    D.iterate(st, x, y)
    assert math.isfinite(D.residual(st, x))
    with pytest.raises(ConfigError):
        D.residual(st)


def test_labels_init_of_z_L():
    model, x, y = _problem()
    st = D.init_state(model, x, y, D.DLADMMSettings(zl_init="labels"))
    expect = -torch.ones(len(y), 3, dtype=F64)
    expect[torch.arange(len(y)), y] = 1
    assert torch.equal(st.z[-1], expect)
    assert torch.equal(st.u, torch.zeros_like(expect))


def test_safeguard_grows_rho_after_three_rises(monkeypatch):
    model, x, y = _problem(width=128, depth=2, M=16)
    st = D.init_state(model, x, y, D.DLADMMSettings(loss_safeguard=True))
    losses = iter([1.0, 1.1, 1.2, 1.3, 1.4, 0.5, 0.6])
    monkeypatch.setattr(D, "network_loss", lambda *a: (next(losses), 0.0))
    rhos = [D.iterate(st, x, y)["rho"] for _ in range(7)]
    # three rises are complete after the 4th loss, and again after the 5th
    assert rhos == pytest.approx([1e-6, 1e-6, 1e-6, 1e-5, 1e-4, 1e-4, 1e-4])
    assert st.nu == st.rho and st.theta0 == 100.0 and st.tau0 == 100.0


def test_safeguard_is_off_by_default_and_capped(monkeypatch):
    assert D.DLADMMSettings().loss_safeguard is False
    model, x, y = _problem(M=16)
    st = D.init_state(model, x, y, D.DLADMMSettings(loss_safeguard=True, rho=0.05))
    st.loss_history[:] = [0.0, 1.0, 2.0]
    monkeypatch.setattr(D, "network_loss", lambda *a: (9.0, 0.0))
    D.iterate(st, x, y)
    assert st.rho == 0.1
    assert st.theta0 == 1.0  # hidden width 8 < 100: the code leaves t0 alone


# ------------------------------------------------------------------- memory estimate


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_memory_estimate_matches_the_state(dtype):
    model, x, y = _problem(M=37, width=12, depth=4, dtype=dtype)
    st = D.init_state(model, x, y)
    sizes = [16, 12, 12, 12, 3]
    assert st.layer_sizes == sizes
    assert D.state_bytes(sizes, 37, dtype) == D.state_nbytes(st)
    # the estimate is the state (exact) plus the counted peak temporaries
    est = D.estimate_memory_bytes(sizes, 37, dtype)
    assert est == D.state_nbytes(st) + D.temporary_bytes(sizes, 37, dtype)


def test_paper_mlp_memory_figure():
    sizes = [196] + [512] * 9 + [10]
    state = D.state_bytes(sizes, 60_000, torch.float32)
    assert 2.2e9 < state < 2.3e9  # z, a of 9 hidden layers of 512 and 60,000 samples: ~2.25 GB
    assert D.estimate_memory_bytes(sizes, 60_000, torch.float32) < 3.1e9


def test_refuses_a_run_that_does_not_fit_before_allocating(monkeypatch):
    model, x, y = _problem(M=40)
    monkeypatch.setattr(D, "available_memory_bytes", lambda device: 10_000)
    allocated = []
    with monkeypatch.context() as mp, pytest.raises(ConfigError) as e:
        mp.setattr(D.torch, "addmm", lambda *a, **k: allocated.append(1))
        D.init_state(model, x, y)
    msg = str(e.value)
    assert "GiB" in msg and "n_train" in msg and "width" in msg and "MemAvailable" in msg
    assert "40 samples" in msg and "available" in msg
    assert allocated == []
    D.init_state(model, x, y, D.DLADMMSettings(check_memory=False))  # the check can be waived


def test_refuses_a_huge_run_with_the_real_meminfo():
    model = build_model("mlp", (1, 8, 8), 10, width=4096, depth=10)
    x = torch.zeros(1, 1, 8, 8).expand(10**8, 1, 8, 8)  # no memory behind these rows
    y = torch.zeros(1, dtype=torch.long).expand(10**8)
    with pytest.raises(ConfigError, match="Reduce n_train"):
        D.init_state(model, x, y)


# --------------------------------------------------------------------- model refusal


@pytest.mark.parametrize("name, shape", [("cnn", (3, 16, 16)), ("resnet", (3, 16, 16))])
def test_refuses_conv_and_residual_models(name, shape):
    model = build_model(name, shape, 10, width=16, residual_blocks=1)
    with pytest.raises(ConfigError, match="plain MLP"):
        D.linear_layers(model)


def test_refuses_odd_mlps():
    with pytest.raises(ConfigError, match="pattern"):
        D.linear_layers(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))  # no ReLU between
    with pytest.raises(ConfigError, match="pattern"):
        D.linear_layers(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU()))
    with pytest.raises(ConfigError, match="Tanh"):
        D.linear_layers(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    with pytest.raises(ConfigError, match="bias"):
        D.linear_layers(nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2)))
    lins = D.linear_layers(build_model("mlp", (1, 8, 8), 10, width=16, depth=4))
    assert [m.out_features for m in lins] == [16, 16, 16, 10]


# ------------------------------------------------------------------------ divergence


def test_nan_raises_divergence_naming_variable_and_layer():
    model, x, y = _problem()
    st = D.init_state(model, x, y)
    st.W[0][0, 0] = float("nan")
    with pytest.raises(DivergenceError, match=r"z_1 \(layer 1 of 3\).*backward"):
        D.iterate(st, x, y)


def test_inf_in_the_dual_is_caught():
    model, x, y = _problem()
    st = D.init_state(model, x, y, D.DLADMMSettings(rho=1.0))
    st.u[0, 0] = float("inf")
    with pytest.raises(DivergenceError, match=r"layer 3"):
        D.iterate(st, x, y)


# -------------------------------------------------------------------------- settings


def test_every_setting_has_help_and_bad_values_are_refused():
    helps = D.DLADMMSettings.help()
    assert set(helps) >= {"rho", "nu", "zl_iters", "theta0", "tau0", "backtrack_factor", "loss_safeguard"}
    assert all(isinstance(h, str) and h for h in helps.values())
    assert D.DLADMMSettings().rho == 1e-6
    for bad in (dict(rho=0), dict(nu=-1.0), dict(backtrack_start="x"), dict(zl_init="x"), dict(backtrack_factor=1.0)):
        with pytest.raises(ConfigError):
            D.DLADMMSettings(**bad)


# ----------------------------------------------------------------------------- as a method of the suite
def test_dladmm_runs_records_and_resumes_like_every_method(tmp_path, monkeypatch):
    """`tssm train --method dladmm`: one full-batch iteration per epoch, the suite's metrics plus
    its Lagrangian, residual and memory; SIGTERM after epoch 2 and a rerun give the numbers of an
    uninterrupted run (its state is checkpointed)."""
    import pandas as pd

    import tssm.run as run
    from tssm.config import RunConfig
    from tssm.errors import Interrupted
    from tssm.interrupt import sigterm_after_epoch

    def cfg(out):
        return RunConfig.from_dict(dict(dataset="digits", method="dladmm", width=32, depth=4, epochs=4, rho=1.0,
                                        mlflow=False, checkpoint=True, threads=1, out=str(tmp_path / out)))

    ref = run.train(cfg("ref"), progress=False)
    assert ref["status"] == "finished" and ref["config"]["splits"] == 1 and ref["layerwise"] is True
    m = pd.read_csv(tmp_path / "ref" / "metrics.csv")
    assert list(m.epoch) == [0, 1, 2, 3, 4]
    assert m.loc[4, "train_acc"] > m.loc[0, "train_acc"]
    assert (m[["lagrangian", "residual", "aux_mb", "aux_estimate_mb"]].notna()).all().all()
    assert m.loc[0, "aux_mb"] <= m.loc[0, "aux_estimate_mb"]

    with sigterm_after_epoch(2), pytest.raises(Interrupted):
        run.train(cfg("cut"), progress=False)
    assert run.train(cfg("cut"), progress=False)["status"] == "finished"
    a, b = pd.read_csv(tmp_path / "ref" / "metrics.csv"), pd.read_csv(tmp_path / "cut" / "metrics.csv")
    cols = ["train_loss", "train_acc", "test_acc", "lagrangian", "residual"]
    pd.testing.assert_frame_equal(a[cols], b[cols], rtol=1e-6)


def test_dladmm_config_errors():
    from tssm.config import RunConfig

    with pytest.raises(ConfigError, match="use model 'mlp'"):
        RunConfig.from_dict({"method": "dladmm", "model": "cnn"})
    with pytest.raises(ConfigError, match="split level does not apply"):
        RunConfig.from_dict({"method": "dladmm", "splits": 2})
    with pytest.raises(ConfigError, match="'tau2' is a setting of gsadmm, gsam"):
        RunConfig.from_dict({"method": "dladmm", "tau2": 1})
