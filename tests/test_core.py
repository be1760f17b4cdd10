"""The method's mathematics and the shared machinery: splitting, the q-step, n = 1 reductions,
objective decrease, reproducibility, bad input."""

import math

import pandas as pd
import pytest
import torch

from tssm.config import RunConfig
from tssm.errors import ConfigError
from tssm.models import build_model
from tssm.parallel import SerialExecutor
from tssm.run import build_problem, build_stages, epoch_permutation, train
from tssm.solvers import GsADMM, make_solver
import itertools

from tssm.split import balanced_cuts, balanced_split, block_flops, compute_cuts, group_sizes, min_max_cuts, split_model


# ----------------------------------------------------------------------------- splitting
@pytest.mark.parametrize(
    "name,shape,kw",
    [("mlp", (1, 8, 8), {}), ("cnn", (3, 16, 16), {}), ("resnet", (3, 16, 16), {"channels": 8, "residual_blocks": 3})],
)
def test_split_composes_exactly(name, shape, kw):
    model = build_model(name, shape, 10, seed=1, **kw).eval()
    x = torch.rand(5, *shape)
    ref = model(x)
    for n in range(1, len(model) + 1):
        parts = split_model(model, n)
        assert len(parts) == n
        assert sum(len(p) for p in parts) == len(model)
        h = x
        for p in parts:
            h = p(h)
        assert torch.equal(h, ref), f"{name} n={n}"


def test_balanced_cuts_minimise_largest_part():
    sizes = [100, 1, 1, 1, 100, 1, 1, 1, 100, 1]
    cuts = balanced_cuts(sizes, 3)
    parts = [sum(sizes[a:b]) for a, b in zip([0, *cuts], [*cuts, len(sizes)])]
    assert max(parts) <= 103
    # the paper MLP: two parts of nearly equal parameter count
    model = build_model("mlp", (1, 14, 14), 10)
    a, b = split_model(model, 2)
    na, nb = (sum(p.numel() for p in part.parameters()) for part in (a, b))
    assert abs(na - nb) / (na + nb) < 0.15


def test_min_max_cuts_is_optimal_against_brute_force():
    gen = torch.Generator().manual_seed(3)
    for _ in range(40):
        k = int(torch.randint(2, 9, (1,), generator=gen))
        n = int(torch.randint(1, k + 1, (1,), generator=gen))
        w = torch.randint(1, 50, (k,), generator=gen).tolist()
        bonus = torch.randint(0, 50, (k,), generator=gen).tolist()  # cost only outside the last part

        def cost(a, b, j):
            return sum(w[a:b]) + (0 if j == n - 1 else sum(bonus[a:b]))

        def worst(cuts):
            bounds = [0, *cuts, k]
            return max(cost(a, b, i) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])))

        best = min(worst(list(c)) for c in itertools.combinations(range(1, k), n - 1))
        got = min_max_cuts(k, n, cost)
        assert len(got) == n - 1 and got == sorted(set(got)) and worst(got) == best


def test_balanced_split_over_workers_against_brute_force():
    """n subnetworks on fewer workers (contiguous groups): the largest worker load is the
    smallest possible, and with one worker per subnetwork it is the plain split."""
    gen = torch.Generator().manual_seed(5)
    for _ in range(30):
        k = int(torch.randint(3, 9, (1,), generator=gen))
        n = int(torch.randint(2, k + 1, (1,), generator=gen))
        workers = int(torch.randint(1, n + 1, (1,), generator=gen))
        base = torch.randint(1, 50, (k,), generator=gen).tolist()
        extra = torch.randint(0, 30, (k,), generator=gen).tolist()
        sizes = group_sizes(n, workers)
        owner = [r for r, m in enumerate(sizes) for _ in range(m)]

        def load(cuts):
            bounds = [0, *cuts, k]
            per = [0.0] * workers
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                per[owner[i]] += sum(base[a:b]) + (0 if i == n - 1 else sum(extra[a:b]))
            return max(per)

        best = min(load(list(c)) for c in itertools.combinations(range(1, k), n - 1))
        got = balanced_split(base, extra, n, workers)
        assert len(got) == n - 1 and got == sorted(set(got)) and 0 < got[0] and got[-1] < k
        assert load(got) == best
    assert balanced_split([5, 1, 1, 5], [0] * 4, 2, 2) == balanced_split([5, 1, 1, 5], [0] * 4, 2)


def test_block_flops_count_forward_and_backward():
    model = build_model("mlp", (1, 14, 14), 10)
    flops = block_flops(model, (1, 14, 14))
    assert flops[0] == (2 * 196 * 512, 2 * 196 * 512)  # first block: no input gradient
    assert flops[1] == (2 * 512 * 512, 4 * 512 * 512)  # weight and input gradients
    assert flops[-1] == (2 * 512 * 10, 4 * 512 * 10)
    assert all(p.grad is None for p in model.parameters())


def test_compute_balance_moves_the_cut_for_the_extra_forward():
    """Paper MLP, n=2: parameters give the demo's 5|5; gsADMM's second forward on the first
    subnetwork makes that side the heavier one in FLOPs, so ``compute`` cuts at 4|6 (and
    goes back to 5|5 when the W-step's output is reused)."""
    flops = block_flops(build_model("mlp", (1, 14, 14), 10), (1, 14, 14))
    assert balanced_cuts([sum(p.numel() for p in b.parameters()) for b in build_model("mlp", (1, 14, 14), 10)], 2) == [5]
    assert compute_cuts(flops, 2, extra_forward=True) == [4]
    assert compute_cuts(flops, 2, extra_forward=False) == [5]
    for balance, q_forward, blocks in (("params", "fresh", [5, 5]), ("compute", "fresh", [4, 6]),
                                       ("compute", "reuse", [5, 5])):
        cfg = RunConfig.from_dict(dict(dataset="digits", splits=2, balance=balance, q_forward=q_forward))
        problem = build_problem(cfg, torch.device("cpu"))
        # digits is 8x8: check the planner on it against the FLOP model directly
        want = compute_cuts(block_flops(problem.model, (1, 8, 8)), 2, q_forward == "fresh") if balance == "compute" else [5]
        assert [len(s.net) for s in build_stages(cfg, problem)] == [want[0], 10 - want[0]]
    with pytest.raises(ConfigError, match="out of range"):
        build_stages(RunConfig(dataset="digits", splits=11, balance="compute"), problem)


@pytest.mark.parametrize("impl", ["foreach", "forloop"])
def test_optimizer_implementations_agree(impl, digits_cfg):
    """fused (the default), foreach and for-loop are one update: trajectories agree to rounding."""
    ref = _param_trajectory(digits_cfg(method="gsadmm", splits=2), 8)
    got = _param_trajectory(digits_cfg(method="gsadmm", splits=2, optimizer_impl=impl), 8)
    for a, b in zip(ref[-1], got[-1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(ref[0], ref[-1]))
    with pytest.raises(ConfigError, match="optimizer_impl"):
        RunConfig(optimizer_impl="fast").validate()


def test_explicit_cuts_and_bad_splits():
    model = build_model("mlp", (1, 8, 8), 10)
    parts = split_model(model, 2, [5])
    assert [len(p) for p in parts] == [5, 5]
    for n in (0, 11, -1):
        with pytest.raises(ConfigError, match="out of range"):
            split_model(model, n)
    with pytest.raises(ConfigError, match="strictly increasing"):
        split_model(model, 3, [5, 5])
    with pytest.raises(ConfigError, match="cut points"):
        split_model(model, 3, [5])


# ----------------------------------------------------------------------------- the q-step
@pytest.mark.parametrize("scaling", ["paper", "sample"])
def test_q_step_zeroes_lagrangian_gradient(scaling, digits_cfg):
    """Eq. 5 is the minimiser of the augmented Lagrangian in q: its gradient there is 0."""
    cfg = digits_cfg(scaling=scaling, alpha=0.7, rho=2.5)
    g = torch.Generator().manual_seed(0)
    M = 50
    x, y = torch.rand(M, 1, 8, 8, generator=g), torch.randint(0, 10, (M,), generator=g)
    solver = GsADMM(cfg, x, y)
    f, p, u = (torch.randn(M, 16, generator=g, dtype=torch.float64) for _ in range(3))
    c = 1 / M if scaling == "paper" else 1.0

    def lagrangian_grad(q):
        q = q.detach().requires_grad_(True)
        lag = c * cfg.alpha / 2 * (q - f).pow(2).sum() + (u * (p - q)).sum() + cfg.rho / 2 * (p - q).pow(2).sum()
        return torch.autograd.grad(lag, q)[0]

    q = solver.q_closed_form(f, p, u)
    assert lagrangian_grad(q).abs().max() < 1e-12
    assert lagrangian_grad(q + 0.1).abs().max() > 1e-2  # elsewhere it is not zero: the test can fail
    if scaling == "paper":  # Eq. 5 as printed in the paper
        eq5 = (cfg.alpha * f + cfg.rho * M * p + M * u) / (cfg.rho * M + cfg.alpha)
        torch.testing.assert_close(q, eq5, rtol=1e-12, atol=1e-12)


def _serial(cfg: RunConfig):
    """Stages, solver and serial executor of ``cfg``, initialised as ``train`` does."""
    torch.manual_seed(cfg.seed)
    problem = build_problem(cfg, torch.device("cpu"))
    stages = build_stages(cfg, problem)
    solver = make_solver(cfg, problem.data.x_train, problem.data.y_train)
    ex = SerialExecutor(stages)
    for st in stages:
        solver.setup(st)
    ex.run(solver.init_phases(), torch.arange(solver.M))
    return stages, solver, ex


def test_p_step_scaling_differs_by_exactly_M(digits_cfg):
    """The 'paper' and 'sample' objective scalings give p-step data terms differing by M."""
    grads = {}
    for scaling in ("paper", "sample"):
        stages, solver, _ = _serial(digits_cfg(method="gsadmm", splits=2, scaling=scaling))
        rows = torch.arange(40)
        grads[scaling] = solver.data_grad(stages[1], stages[1].state["p"][rows], solver.y[rows])
    M = solver.M
    torch.testing.assert_close(grads["sample"], grads["paper"] * M, rtol=1e-5, atol=1e-9)
    assert grads["paper"].abs().max() > 0


# ----------------------------------------------------------------------------- n = 1
def _param_trajectory(cfg: RunConfig, steps: int) -> list[list[torch.Tensor]]:
    """Parameters after each of the first ``steps`` minibatch steps (serial executor)."""
    stages, solver, ex = _serial(cfg)
    out = []
    perm = epoch_permutation(cfg.seed, 1, solver.M, torch.device("cpu"))
    for rows in list(perm.split(cfg.batch_size))[:steps]:
        ex.run(solver.step_phases(), rows)
        out.append([p.detach().clone() for st in stages for p in st.net.parameters()])
    return out


@pytest.mark.parametrize("method", ["gsadmm", "gsam", "frozen"])
@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_n1_equals_backprop_step_for_step(method, opt, digits_cfg):
    ref = _param_trajectory(digits_cfg(method=opt, splits=1), 8)
    got = _param_trajectory(digits_cfg(method=method, splits=1, optimizer=opt), 8)
    for k, (a, b) in enumerate(zip(ref, got)):
        for pa, pb in zip(a, b):
            assert torch.equal(pa, pb), f"{method} n=1 departs from {opt} at step {k + 1}"
    # the weights moved, so the comparison means something
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(ref[0], ref[-1]))


def test_n1_equals_adam_metrics(digits_cfg, tmp_path):
    a = train(digits_cfg(method="adam", splits=1, epochs=3, out=str(tmp_path / "a")), progress=False)
    g = train(digits_cfg(method="gsadmm", splits=1, epochs=3, out=str(tmp_path / "g")), progress=False)
    ma = pd.read_csv(tmp_path / "a" / "metrics.csv")
    mg = pd.read_csv(tmp_path / "g" / "metrics.csv")
    for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert list(ma[col]) == list(mg[col]), col
    assert a["status"] == g["status"] == "finished"


def test_frozen_trains_only_last_subnetwork(digits_cfg):
    cfg = digits_cfg(method="frozen", splits=3)
    problem = build_problem(cfg, torch.device("cpu"))
    before = [[p.detach().clone() for p in st.net.parameters()] for st in build_stages(cfg, problem)]
    traj = _param_trajectory(cfg, 5)
    sizes = [len(b) for b in before]
    final = traj[-1]
    flat_before = [p for b in before for p in b]
    n_frozen = sum(sizes[:-1])
    for p0, p1 in zip(flat_before[:n_frozen], final[:n_frozen]):
        assert torch.equal(p0, p1)
    assert any(not torch.equal(p0, p1) for p0, p1 in zip(flat_before[n_frozen:], final[n_frozen:]))


# ----------------------------------------------------------------------------- objectives
@pytest.mark.parametrize("method,n", [("gsadmm", 2), ("gsadmm", 3), ("gsam", 2), ("gsam", 3)])
def test_tssm_decreases_objective(method, n, digits_cfg, tmp_path):
    info = train(digits_cfg(method=method, splits=n, epochs=6), progress=False)
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert info["status"] == "finished"
    assert m["objective"].iloc[-1] < 0.9 * m["objective"].iloc[0]
    assert m["train_loss"].iloc[-1] < m["train_loss"].iloc[0]
    assert m["train_acc"].iloc[-1] > 0.5  # chance is 0.1
    assert (m["residual"] >= 0).all()


def test_diagnostics_zero_where_they_must_be(digits_cfg, tmp_path):
    train(digits_cfg(method="frozen", splits=3, epochs=2), progress=False)
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert (m["move_1"] == 0).all() and (m["move_2"] == 0).all()
    assert (m["move_3"].iloc[1:] > 0).all()
    assert m["move_3"].iloc[0] == 0  # epoch 0 is the initial state


def test_epoch_schedule_and_exact_p_grad_run(digits_cfg, tmp_path):
    for kw in (dict(schedule="epoch", safeguard=0.1), dict(p_grad="exact"), dict(scaling="sample"), dict(q_forward="reuse")):
        for method in ("gsadmm", "gsam"):
            info = train(digits_cfg(method=method, splits=3, epochs=2, **kw), progress=False)
            assert info["status"] == "finished", (method, kw)
            assert math.isfinite(info["final"]["objective"])


# ----------------------------------------------------------------------------- reproducibility
def test_same_seed_same_numbers(digits_cfg, tmp_path):
    for d in ("a", "b"):
        train(digits_cfg(method="gsadmm", splits=2, epochs=2, out=str(tmp_path / d)), progress=False)
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("a", "b"))
    cols = ["train_loss", "test_acc", "objective", "residual", "move_1"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    train(digits_cfg(method="gsadmm", splits=2, epochs=2, seed=1, out=str(tmp_path / "c")), progress=False)
    c = pd.read_csv(tmp_path / "c" / "metrics.csv")
    assert not a["train_loss"].equals(c["train_loss"])


def test_eval_every_skips_evaluation_but_not_timing(digits_cfg, tmp_path):
    """``eval_every: 2`` evaluates epochs 2, 4 and the last; every epoch keeps its timing, and
    the evaluated epochs equal those of a run that evaluates every epoch (evaluation reads and
    never changes the state)."""
    train(digits_cfg(method="gsadmm", splits=2, epochs=5, eval_every=2, out=str(tmp_path / "k2")), progress=True)
    train(digits_cfg(method="gsadmm", splits=2, epochs=5, out=str(tmp_path / "k1")), progress=False)
    k2, k1 = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("k2", "k1"))
    assert list(k2["epoch"]) == [0, 1, 2, 3, 4, 5]
    assert list(k2["test_acc"].notna()) == [True, False, True, False, True, True]
    assert (k2["epoch_time_s"][1:] > 0).all() and k2["train_time_s"].is_monotonic_increasing
    assert (k2.loc[[1, 3], "eval_time_s"] == 0).all()
    for col in ("train_loss", "train_acc", "test_acc", "objective", "residual"):
        assert list(k2[col].dropna()) == list(k1.loc[[0, 2, 4, 5], col]), col
    # the demo's safeguard reads every epoch's training loss, so its runs evaluate every epoch
    train(digits_cfg(method="gsadmm", splits=2, epochs=3, schedule="epoch", safeguard=0.1, eval_every=2,
                     out=str(tmp_path / "sg")), progress=False)
    assert pd.read_csv(tmp_path / "sg" / "metrics.csv")["train_loss"].notna().all()
